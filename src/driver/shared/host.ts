// One CPI call's view of the libvirt host: the connection, the storage pool (created
// on first use when allowed) and the volume operations every noun shares. Volumes are
// found by name: the CID is the index.
import { Readable } from 'node:stream';
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../log/logger.js';
import { connect, isLibvirtError, ErrorCode, type Connection, type ConnectOptions, type PoolRef, type VolRef, type DomainRef } from '../../libvirt/index.js';
import { renderDirPool, renderVolume, parsePool, parseVolume, type VolumeSpec } from '../../xml/index.js';
import { CloudError } from '../../errors.js';

export interface Host {
  conn: Connection;
  config: Config;
  log: Logger;
  pool: PoolRef;
  poolPath: string;
  /** what the driver's close runs after closing the connection (a profile's openStorage) */
  release?: () => Promise<void>;
  /**
   * A profile's own domain lookup (openStorage), for a driver whose lookup of a missing
   * name is no NO_DOMAIN error (libvirt 9.0's vbox driver reports none: "An error
   * occurred, but the cause is unknown"); findDomain uses it when set.
   */
  lookupDomain?: (host: Host, name: string) => Promise<DomainRef | null>;
}

/** A profile's own storage set-up in place of the pool (profile.ts: openStorage). */
export type OpenStorage = (conn: Connection, config: Config, log: Logger) => Promise<Pick<Host, 'pool' | 'poolPath' | 'release' | 'lookupDomain'>>;

/** The client's connection options from the config's libvirt section (one mapping, shared with the CLI). */
export function connectOptions(config: Config): ConnectOptions {
  const { libvirt } = config;
  return {
    callTimeoutMs: libvirt.call_timeout_seconds * 1000,
    ssh: {
      ...(libvirt.ssh.private_key ? { privateKey: libvirt.ssh.private_key } : {}),
      ...(libvirt.ssh.known_hosts ? { knownHosts: libvirt.ssh.known_hosts } : {}),
      strictHostKeyChecking: libvirt.ssh.strict_host_key_checking,
      extraArgs: libvirt.ssh.extra_args,
    },
    tls: {
      ...(libvirt.tls.ca_cert ? { caCert: libvirt.tls.ca_cert } : {}),
      ...(libvirt.tls.client_cert ? { clientCert: libvirt.tls.client_cert } : {}),
      ...(libvirt.tls.client_key ? { clientKey: libvirt.tls.client_key } : {}),
      verify: libvirt.tls.verify,
    },
  };
}

export async function openHost(config: Config, log: Logger, openStorage?: OpenStorage): Promise<Host> {
  const { libvirt } = config;
  const conn = await connect(libvirt.uri, connectOptions(config)).catch((e: unknown) => {
    throw new CloudError(`Cannot connect to libvirt at ${libvirt.uri}: ${(e as Error).message}`, { okToRetry: true, cause: e });
  });
  try {
    if (openStorage) {
      const own = await openStorage(conn, config, log);
      return { conn, config, log, ...own };
    }
    const pool = await ensurePool(conn, config, log);
    const poolPath = parsePoolPath(await conn.pools.getXMLDesc(pool));
    return { conn, config, log, pool, poolPath };
  } catch (e) {
    await conn.close().catch(() => undefined);
    throw e;
  }
}

function parsePoolPath(xml: string): string {
  return parsePool(xml).path.trim();
}

/** Looks the pool up; defines, builds and starts a directory pool when it is missing and allowed. */
async function ensurePool(conn: Connection, config: Config, log: Logger): Promise<PoolRef> {
  const { pool: name, path, create_pool } = config.storage;
  let pool: PoolRef;
  try {
    pool = await conn.pools.lookupByName(name);
  } catch (e) {
    if (!isLibvirtError(e, ErrorCode.NO_STORAGE_POOL)) throw e;
    if (!create_pool) {
      throw new CloudError(`Storage pool "${name}" does not exist on ${config.libvirt.uri} (storage.pool); create it or set storage.create_pool: true`);
    }
    log.info({ pool: name, path }, 'creating directory storage pool');
    try {
      pool = await conn.pools.defineXML(renderDirPool({ name, path }));
    } catch (defineErr) {
      // Another CPI process may have defined it at the same moment.
      if (!isLibvirtError(defineErr, ErrorCode.OPERATION_FAILED, ErrorCode.STORAGE_VOL_EXIST, ErrorCode.INTERNAL_ERROR)) throw defineErr;
      pool = await conn.pools.lookupByName(name);
    }
    await conn.pools.build(pool, 0).catch((b: unknown) => log.debug({ err: String(b) }, 'pool build (directory may exist)'));
    await conn.pools.setAutostart(pool, true).catch(() => undefined);
  }
  const info = await conn.pools.getInfo(pool);
  if (info.state !== 2 /* RUNNING */) {
    await conn.pools.create(pool, 0).catch(async (e: unknown) => {
      // Lost a race with another process starting it: fine if it runs now.
      if ((await conn.pools.getInfo(pool)).state !== 2) throw e;
    });
  }
  return pool;
}

export async function findVolume(host: Host, name: string): Promise<VolRef | null> {
  try {
    return await host.conn.volumes.lookupByName(host.pool, name);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return null;
    throw e;
  }
}

export async function createVolume(host: Host, spec: VolumeSpec): Promise<VolRef> {
  return host.conn.volumes.createXML(host.pool, renderVolume(spec), 0);
}

/** Deletes a volume if it exists; true when something was deleted. */
export async function deleteVolumeIfExists(host: Host, name: string): Promise<boolean> {
  const vol = await findVolume(host, name);
  if (!vol) return false;
  try {
    await host.conn.volumes.delete(vol, 0);
    return true;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return false;
    throw e;
  }
}

export async function volumeDetails(host: Host, vol: VolRef) {
  return parseVolume(await host.conn.volumes.getXMLDesc(vol, 0));
}

/** Writes a small buffer into a new raw volume of exactly its size. */
export async function writeBufferVolume(host: Host, name: string, data: Buffer): Promise<VolRef> {
  const vol = await createVolume(host, { name, capacityBytes: BigInt(data.length), allocationBytes: 0n, format: 'raw' });
  try {
    await host.conn.volumes.upload(vol, Readable.from([data]), { offset: 0n, length: BigInt(data.length) });
    return vol;
  } catch (e) {
    await host.conn.volumes.delete(vol, 0).catch(() => undefined);
    throw e;
  }
}

/**
 * Replaces a small text document held in a volume without a moment in which it is
 * missing: an existing volume is overwritten in place (grown first if the document got
 * longer; a shorter one is padded with spaces, which JSON ignores), a missing one is
 * created. Deleting and re-creating instead would lose the document to a crash between
 * the two steps.
 */
export async function rewriteTextVolume(host: Host, name: string, text: string): Promise<void> {
  const data = Buffer.from(text);
  const vol = await findVolume(host, name);
  if (!vol) {
    await writeBufferVolume(host, name, data);
    return;
  }
  const { capacity, allocation } = await host.conn.volumes.getInfo(vol);
  let size = Number(capacity);
  if (data.length > size) {
    // libvirt refuses a capacity below what the file already occupies (a filesystem
    // block): grow to whole 4 KiB blocks, which also leaves room for later rewrites.
    const want = BigInt(Math.max(data.length, Number(allocation)));
    const grown = (want + 4095n) / 4096n * 4096n;
    await host.conn.volumes.resize(vol, grown, 0);
    size = Number(grown);
  }
  const padded = Buffer.alloc(size, ' ');
  data.copy(padded);
  await host.conn.volumes.upload(vol, Readable.from([padded]), { offset: 0n, length: BigInt(size) });
}

/** A small volume's content (or its first `length` bytes; 0n: all of it), refused past `limit`. */
export async function readBufferVolume(host: Host, vol: VolRef, limit = 1 << 20, length = 0n): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of host.conn.volumes.download(vol, { offset: 0n, length })) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new CloudError(`Volume ${vol.name} is larger than the ${limit} bytes expected of a metadata volume`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function findDomain(host: Host, name: string): Promise<DomainRef | null> {
  if (host.lookupDomain) return host.lookupDomain(host, name);
  try {
    return await host.conn.domains.lookupByName(name);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return null;
    throw e;
  }
}

/** Names of the volumes in the pool (fresh listing: the pool is refreshed first). */
export async function listVolumeNames(host: Host): Promise<string[]> {
  await host.conn.pools.refresh(host.pool, 0).catch(() => undefined);
  return (await host.conn.pools.listAllVolumes(host.pool, 0)).map((v) => v.name);
}
