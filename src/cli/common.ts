// What every operator command shares: where cpi.json comes from, a quiet logger, a
// libvirt connection that changes nothing on the host (unlike openHost, which creates
// the storage pool), and the error a person sees instead of a stack trace.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { CONFIG_ENV, loadConfig } from '../config/load.js';
import { createLogger, type Logger } from '../log/logger.js';
import { connect, parseUri, isLibvirtError, ErrorCode, type Connection, type PoolRef } from '../libvirt/index.js';
import { connectOptions, type Host } from '../driver/shared/host.js';
import { parsePool } from '../xml/index.js';

/** An error meant for the operator: printed as one line, exit status 1 (or `exitCode`). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface GlobalArgs {
  config?: string | undefined;
  json: boolean;
  'log-level': string;
}

/** --config wins over $BOSH_LIBVIRT_CPI_CONFIG; there is no implicit default (a wrong host is worse than an error). */
export function configPath(args: GlobalArgs, env: NodeJS.ProcessEnv = process.env): string {
  const path = args.config ?? env[CONFIG_ENV];
  if (!path) {
    throw new CliError(`No configuration: pass --config <cpi.json> or set ${CONFIG_ENV} to the path of the CPI's cpi.json (on a director VM: /var/vcap/jobs/libvirt_cpi/config/cpi.json)`, 2);
  }
  if (!existsSync(path)) throw new CliError(`Configuration file ${path} does not exist (from ${args.config ? '--config' : CONFIG_ENV})`, 2);
  return path;
}

export function readConfig(args: GlobalArgs, context: Record<string, unknown> = {}): { path: string; config: Config } {
  const path = configPath(args);
  return { path, config: loadConfig(path, context) };
}

/** pino JSON lines on stderr, like bin/cpi, but quiet by default: the command's output is for people. */
export function cliLogger(args: GlobalArgs): Logger {
  return createLogger(args['log-level']);
}

/** The same connection options openHost uses, without its side effects. */
export async function openConnection(config: Config): Promise<Connection> {
  const { libvirt } = config;
  try {
    return await connect(libvirt.uri, connectOptions(config));
  } catch (e) {
    throw new CliError(`Cannot connect to libvirt at ${libvirt.uri}: ${(e as Error).message}`);
  }
}

/** The configured pool if it exists (never created here), as a driver Host for the driver's helpers. */
export async function existingPoolHost(conn: Connection, config: Config, log: Logger): Promise<Host | null> {
  let pool: PoolRef;
  try {
    pool = await conn.pools.lookupByName(config.storage.pool);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_POOL)) return null;
    throw e;
  }
  const xml = await conn.pools.getXMLDesc(pool, 0);
  const poolPath = parsePool(xml).path.trim();
  return { conn, config, log, pool, poolPath };
}

/**
 * True when libvirtd runs on this machine (a unix-socket URI without a host), so files
 * like /dev/kvm and /etc/libvirt/hooks/qemu can be checked here.
 */
export function isLocalUri(uri: string): boolean {
  try {
    const u = parseUri(uri);
    return u.transport === 'unix' && (u.host === undefined || u.host === 'localhost');
  } catch {
    return false;
  }
}

export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function formatBytes(n: bigint | number): string {
  const v = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}

/** JSON for people: bigints (libvirt sizes) as numbers. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 2);
}
