// Fixtures for tests that drive the CPI against qemu:///system: a tiny stemcell (a
// qcow2 that need not boot), an isolated libvirt network (no <forward>, 198.18.0.0/15
// and fd00::/8 only), a config with a per-test name prefix and pool, and a cleanup that
// removes everything carrying that prefix — also after a failed test.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCpi, writeConfig } from './cpi.js';
import { scratchDir } from './scratch.js';

const URI = 'qemu:///system';
const virsh = (...args: string[]) => virshOn(URI, ...args);
const virshOn = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

/** A stemcell image tarball (tgz holding a qcow2 root.img of `virtualMiB`); returns its path. */
export function tinyStemcell(virtualMiB = 64, format: 'qcow2' | 'raw' = 'qcow2'): string {
  const dir = scratchDir('t-stemcell-');
  if (format === 'qcow2') execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', join(dir, 'root.img'), `${virtualMiB}M`]);
  else execFileSync('truncate', ['-s', `${virtualMiB}M`, join(dir, 'root.img')]);
  execFileSync('tar', ['-C', dir, '-czf', join(dir, 'image'), 'root.img']);
  return join(dir, 'image');
}

export interface IsolatedNetwork {
  name: string;
  bridge: string;
  v4: { gateway: string; prefix: number; base: string };
  v6: { gateway: string; prefix: number; base: string };
}

/**
 * Defines and starts an isolated dual-stack network. `third` picks 198.18.<third>.0/24
 * and fd00:<third>::/64 so concurrent test files never share a subnet. DHCP (IPv4 only)
 * when asked; without it no dnsmasq runs, so no router advertisements are sent.
 */
/** An isolated dual-stack network on 198.18.<third>.0/24 and fd00:<third>::/64 (on `opts.uri`, default qemu:///system). */
export function defineIsolatedNetwork(name: string, bridge: string, third: number, opts: { dhcp?: boolean; uri?: string } = {}): IsolatedNetwork {
  const uri = opts.uri ?? URI;
  const dhcp = opts.dhcp ? `<dhcp><range start='198.18.${third}.100' end='198.18.${third}.200'/></dhcp>` : '';
  const xml = `<network><name>${name}</name><bridge name='${bridge}' stp='on' delay='0'/>${opts.dhcp ? '' : "<dns enable='no'/>"}
    <ip address='198.18.${third}.1' prefix='24'>${dhcp}</ip><ip family='ipv6' address='fd00:${third}::1' prefix='64'/></network>`;
  removeNetwork(name, uri);
  const dir = scratchDir('t-net-');
  const file = join(dir, 'net.xml');
  writeFileSync(file, xml);
  try {
    execFileSync('virsh', ['-q', '-c', uri, 'net-define', file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  try {
    execFileSync('virsh', ['-q', '-c', uri, 'net-start', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    removeNetwork(name, uri); // a definition that cannot start would outlive the test
    throw e;
  }
  return { name, bridge, v4: { gateway: `198.18.${third}.1`, prefix: 24, base: `198.18.${third}.0` }, v6: { gateway: `fd00:${third}::1`, prefix: 64, base: `fd00:${third}::` } };
}

export function removeNetwork(name: string, uri = URI): void {
  virshOn(uri, 'net-destroy', name);
  virshOn(uri, 'net-undefine', name);
}

export interface TestConfigOptions {
  prefix: string;
  network?: string;
  /** top-level keys replace the fixture's; `vm` keys are merged into the test defaults */
  overrides?: Record<string, unknown> & { vm?: Record<string, unknown> };
}

/** fixtures/config/qemu.json with a per-test name prefix and storage pool under /var/tmp. */
export function testConfig({ prefix, network, overrides = {} }: TestConfigOptions): { path: string; pool: string; poolPath: string } {
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/qemu.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  const pool = `${prefix}pool`;
  const poolPath = `/var/tmp/${pool}`;
  const config = {
    ...base,
    name_prefix: prefix,
    storage: { pool, path: poolPath, create_pool: true },
    network: { ...base.network, ...(network ? { name: network } : {}) },
    ...overrides,
    vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 5, ...(overrides.vm ?? {}) },
  };
  return { path: writeConfig(config), pool, poolPath };
}

/** Removes every domain and volume named with `prefix`, and the prefix's pool (on `uri`, default qemu:///system). */
export function cleanupPrefix(prefix: string, pool = `${prefix}pool`, uri = URI, poolPath = `/var/tmp/${pool}`): void {
  const virsh = (...args: string[]) => virshOn(uri, ...args);
  for (const name of virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix))) {
    virsh('destroy', name);
    virsh('undefine', name, '--nvram', '--snapshots-metadata');
  }
  const vols = virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s);
  for (const v of vols) virsh('vol-delete', v, '--pool', pool);
  virsh('pool-destroy', pool);
  virsh('pool-undefine', pool);
  rmSync(poolPath, { recursive: true, force: true });
}

/** Names of domains and volumes (in `pool`) that carry `prefix`: what a test must leave empty. */
export function leftovers(prefix: string, pool = `${prefix}pool`): string[] {
  const doms = virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix));
  const vols = virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s && s.startsWith(prefix));
  return [...doms, ...vols];
}

/** One CPI call through bin/cpi; returns the result or throws with the CPI's error. */
export async function cpi(config: string, method: string, args: unknown[], opts: { env?: NodeJS.ProcessEnv; context?: Record<string, unknown> } = {}): Promise<unknown> {
  const run = await runCpi(
    { method, arguments: args, context: { director_uuid: 'test', request_id: `t-${method}`, ...opts.context }, api_version: 2 },
    { config, ...(opts.env ? { env: opts.env } : {}) },
  );
  if (run.response.error) {
    const e = new Error(`${method}: ${run.response.error.type}: ${run.response.error.message}`) as Error & { cpiError: unknown; stderr: string };
    e.cpiError = run.response.error;
    e.stderr = run.stderr;
    throw e;
  }
  return run.response.result;
}

/** The CPI's error for a call that must fail. */
export async function cpiError(config: string, method: string, args: unknown[], opts: { env?: NodeJS.ProcessEnv; context?: Record<string, unknown> } = {}) {
  const run = await runCpi({ method, arguments: args, context: { director_uuid: 'test', ...opts.context }, api_version: 2 }, { config, ...(opts.env ? { env: opts.env } : {}) });
  if (!run.response.error) throw new Error(`${method} was expected to fail but returned ${JSON.stringify(run.response.result)}`);
  return { ...run.response.error, stderr: run.stderr };
}

export function domainXml(name: string): string {
  return execFileSync('virsh', ['-q', '-c', URI, 'dumpxml', name], { encoding: 'utf8' });
}
