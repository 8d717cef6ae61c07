// The conformance suite's only way into the CPI: run bin/cpi (or CONFORMANCE_CPI) once
// per call with one JSON request on stdin, exactly as the director does, and hold the
// answer to the wire contract. Plus the environment the suite runs against, and
// libvirt snapshots (virsh) to prove that calls leave nothing behind.
//
// Two modes:
// - self-prepared (CONFORMANCE_CONFIG unset): qemu:///system with fixtures/config/qemu.json,
//   name prefix `t-conf-`, pool `t-conf-pool`, an isolated network `t-conf-net`
//   (198.18.81.0/24, fd00:81::/64, DHCP .100–.200) and a tiny qcow2 stemcell; all removed
//   in teardown();
// - two hosts (CONFORMANCE_TARGET=two-hosts): the same, self-prepared, through one CPI
//   driving two independent libvirt daemons (fixtures/config/two-hosts.json; the second
//   daemon from scripts/second-libvirtd.sh): prefix `t-conf2-`, a pool on each, a network
//   `t-conf2-net` on each with its own subnet (198.18.83.0/24 on host-a, .84 on host-b),
//   so static addresses land on host-a and everything else wherever placement puts it;
//   virsh checks follow a CID's `@host` to its daemon, and snapshots cover both;
// - the SIMULATED VirtualBox (CONFORMANCE_TARGET=vbox): libvirt's real vbox driver in a
//   libvirtd of its own over the simulated VirtualBox 6.1 (scripts/vbox-host.sh, started
//   if needed; never a real VirtualBox), through fixtures/config/vbox.json with prefix
//   `t-confvb-` and a storage directory of its own, the simulation's host-only network
//   vboxnet0 (198.18.240.0/24, no DHCP: static addresses .10–.12) and the tiny qcow2
//   stemcell; snapshots also list the storage directory's files (the vbox profile keeps
//   stemcells, disks and its state there, not in libvirt);
// - external (CONFORMANCE_CONFIG=/path/cpi.json): any libvirt host or backend the config
//   names; CONFORMANCE_STEMCELL (image tarball), CONFORMANCE_NETWORK (libvirt network) and
//   CONFORMANCE_IPV4 (first of three consecutive free static IPv4 addresses in that
//   network) are required. Only what the suite created through the CPI is deleted again.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { cleanupPrefix, defineIsolatedNetwork, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { writeConfig } from '../helpers/cpi.js';
import { requireSecondDaemon, SECOND_URI } from '../helpers/second-daemon.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CPI_BIN = process.env.CONFORMANCE_CPI ?? join(ROOT, 'bin/cpi');

/** Every error type the director and the CLI know; anything else would be UnknownError. */
export const BOSH_ERROR_TYPES = [
  'Bosh::Clouds::CpiError',
  'Bosh::Clouds::NotSupported',
  'Bosh::Clouds::NotImplemented',
  'Bosh::Clouds::CloudError',
  'Bosh::Clouds::VMNotFound',
  'Bosh::Clouds::NetworkNotFound',
  'Bosh::Clouds::NoDiskSpace',
  'Bosh::Clouds::DiskNotAttached',
  'Bosh::Clouds::DiskNotFound',
  'Bosh::Clouds::VMCreationFailed',
  'Bosh::Clouds::StemcellNotFound',
] as const;

/** The 22 methods of the CPI contract (docs-bosh content/cpi-api-v2-method/*). */
export const CONTRACT_METHODS = [
  'info',
  'create_stemcell',
  'delete_stemcell',
  'create_vm',
  'delete_vm',
  'has_vm',
  'reboot_vm',
  'set_vm_metadata',
  'calculate_vm_cloud_properties',
  'create_disk',
  'delete_disk',
  'resize_disk',
  'update_disk',
  'has_disk',
  'attach_disk',
  'detach_disk',
  'set_disk_metadata',
  'get_disks',
  'snapshot_disk',
  'delete_snapshot',
  'create_network',
  'delete_network',
] as const;

export interface CpiErrorBody {
  type: string;
  message: string;
  ok_to_retry: boolean;
}

export interface CpiResponse {
  result: unknown;
  error: CpiErrorBody | null;
  log: string;
}

export interface CpiCall {
  method: string;
  request: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** problems with the wire format (empty when the answer is one well-formed response) */
  wireProblems: string[];
  response: CpiResponse | null;
}

/** Checks what the director checks: one JSON line, exit 0, {result, error, log} and a known error type. */
function wireProblems(code: number | null, signal: NodeJS.Signals | null, stdout: string): { problems: string[]; response: CpiResponse | null } {
  const problems: string[] = [];
  if (signal) problems.push(`killed by ${signal}`);
  if (code !== 0) problems.push(`exit code ${code}`);
  const lines = stdout.split('\n').filter((l) => l !== '');
  if (lines.length !== 1) problems.push(`${lines.length} lines on stdout`);
  if (!stdout.endsWith('\n')) problems.push('stdout does not end with a newline');
  let response: CpiResponse | null = null;
  try {
    const parsed = JSON.parse(lines[0] ?? '') as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    const keys = Object.keys(parsed).sort().join(',');
    if (keys !== 'error,log,result') problems.push(`response keys are ${keys}, expected error,log,result`);
    response = parsed as CpiResponse;
    if (typeof response.log !== 'string') problems.push('log is not a string');
    const e = response.error;
    if (e !== null) {
      if (typeof e !== 'object') problems.push('error is neither null nor an object');
      else {
        if (!(BOSH_ERROR_TYPES as readonly string[]).includes(e.type)) problems.push(`unknown error type ${JSON.stringify(e.type)}`);
        if (typeof e.message !== 'string' || e.message === '') problems.push('error.message is empty');
        if (typeof e.ok_to_retry !== 'boolean') problems.push('error.ok_to_retry is not a boolean');
        if (response.result !== null) problems.push('result is not null although error is set');
      }
    }
  } catch (err) {
    problems.push(`stdout is not one JSON object (${(err as Error).message})`);
  }
  return { problems, response };
}

export interface CallOptions {
  /** config path; default the suite's */
  config?: string;
  env?: NodeJS.ProcessEnv;
  /** omit api_version (the director's first info) */
  noApiVersion?: boolean;
  apiVersion?: number;
  context?: Record<string, unknown>;
  /** written verbatim instead of a request built from method and args */
  raw?: string;
}

/** One call of bin/cpi. Never throws for CPI errors; the caller asserts. */
export async function callCpi(method: string, args: unknown[], opts: CallOptions = {}): Promise<CpiCall> {
  const body =
    opts.raw ??
    JSON.stringify({
      method,
      arguments: args,
      context: { director_uuid: 'conformance', request_id: `conf-${randomUUID().slice(0, 8)}`, ...opts.context },
      ...(opts.noApiVersion ? {} : { api_version: opts.apiVersion ?? 2 }),
    });
  const child = spawn(CPI_BIN, [opts.config ?? env().config], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.stdin.on('error', () => undefined); // a CPI that exits before reading all input
  child.stdin.end(body);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('close', (c, s) => res([c, s])));
  const stdout = Buffer.concat(out).toString('utf8');
  const { problems, response } = wireProblems(code, signal, stdout);
  return { method, request: body, code, signal, stdout, stderr: Buffer.concat(err).toString('utf8'), wireProblems: problems, response };
}

export class CpiCallError extends Error {
  constructor(
    readonly call: CpiCall,
    readonly error: CpiErrorBody | null,
  ) {
    super(
      `${call.method} failed: ${error ? `${error.type}: ${error.message}` : call.wireProblems.join('; ')}\n--- request ---\n${call.request.slice(0, 2000)}\n--- stderr (tail) ---\n${call.stderr.slice(-3000)}`,
    );
  }
}

/** A call that must succeed: returns the result, throws with the CPI's error (and the request) otherwise. */
export async function ok(method: string, args: unknown[], opts: CallOptions = {}): Promise<unknown> {
  const call = await callCpi(method, args, opts);
  if (call.wireProblems.length > 0 || !call.response || call.response.error) throw new CpiCallError(call, call.response?.error ?? null);
  track(method, args, call.response.result);
  return call.response.result;
}

/** A call that must fail with a well-formed error: returns it (with the log). */
export async function fails(method: string, args: unknown[], opts: CallOptions = {}): Promise<CpiErrorBody & { log: string; call: CpiCall }> {
  const call = await callCpi(method, args, opts);
  if (call.wireProblems.length > 0 || !call.response) throw new CpiCallError(call, null);
  if (!call.response.error) {
    track(method, args, call.response.result);
    throw new Error(`${method} was expected to fail but returned ${JSON.stringify(call.response.result)}\n--- request ---\n${call.request.slice(0, 2000)}`);
  }
  return { ...call.response.error, log: call.response.log, call };
}

// ---------------------------------------------------------------------------------------
// What the suite created, so teardown can remove it in external mode too.

const created = { vms: new Set<string>(), disks: new Set<string>(), snapshots: new Set<string>(), stemcells: new Set<string>() };

function track(method: string, args: unknown[], result: unknown): void {
  if (method === 'create_vm' && Array.isArray(result) && typeof result[0] === 'string') created.vms.add(result[0]);
  if (method === 'create_disk' && typeof result === 'string') created.disks.add(result);
  if (method === 'snapshot_disk' && typeof result === 'string') created.snapshots.add(result);
  if (method === 'create_stemcell' && typeof result === 'string') created.stemcells.add(result);
  if (method === 'delete_vm') created.vms.delete(String(args[0]));
  if (method === 'delete_disk') created.disks.delete(String(args[0]));
  if (method === 'delete_snapshot') created.snapshots.delete(String(args[0]));
  if (method === 'delete_stemcell') created.stemcells.delete(String(args[0]));
}

/** Records CIDs of resources a test created through a call it ran with callCpi. */
export function trackCall(call: CpiCall, args: unknown[]): void {
  if (call.response && !call.response.error) track(call.method, args, call.response.result);
}

// ---------------------------------------------------------------------------------------
// The environment under test.

export interface ConformanceEnv {
  external: boolean;
  config: string;
  uri: string;
  pool: string;
  /** names of domains/volumes/networks owned by other concurrent test runs are ignored in snapshots */
  foreign: (name: string) => boolean;
  stemcellImage: string;
  network: string;
  ipv4: [string, string, string];
  netmask: string;
  gateway: string;
  /** the shared stemcell, imported once */
  stemcell: string;
  /** with several libvirt hosts behind the CPI: each host's URI, by the name CIDs carry after `@` */
  hosts?: Record<string, string>;
  /** a directory whose files the backend keeps its objects in (vbox: storage.path), listed in snapshots */
  files?: string;
}

let current: ConformanceEnv | undefined;
let selfPrepared: { prefix: string; pool: string; network: string; tmp: string[]; second?: { uri: string; poolPath: string }; vbox?: boolean } | undefined;

export function env(): ConformanceEnv {
  if (!current) throw new Error('conformance environment not prepared: call prepare() in beforeAll');
  return current;
}

export const SELF = { prefix: 't-conf-', network: 't-conf-net', bridge: 't-conf-br0', third: 81 };
export const VBOX = {
  prefix: 't-confvb-',
  network: 'vboxnet0',
  third: 240,
  uri: 'vbox:///session?socket=/var/lib/bosh-cpi-vbox-libvirtd/run/libvirt-sock',
  store: '/var/lib/bosh-cpi-vbox-libvirtd/t-confvb-store',
};
export const TWO = { prefix: 't-conf2-', network: 't-conf2-net', bridges: ['t-cf2-br0', 't-cf2-br1'], thirds: [83, 84] as const };

function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`CONFORMANCE_CONFIG is set, so ${name} must be set too (see README "Conformance suite")`);
  return v;
}

function nextIps(first: string): [string, string, string] {
  const parts = first.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`CONFORMANCE_IPV4 ${first} is not an IPv4 address`);
  const n = ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
  const fmt = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join('.');
  return [fmt(n), fmt(n + 1), fmt(n + 2)];
}

function prefixToNetmask(prefix: number): string {
  const m = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join('.');
}

/** The IPv4 <ip> of a libvirt network: gateway and netmask for manual networks. */
function ipv4Of(uri: string, network: string): { gateway: string; netmask: string } {
  const xml = virshAt(uri, 'net-dumpxml', network);
  if (xml.status !== 0) throw new Error(`virsh net-dumpxml ${network} failed: ${xml.stderr}`);
  for (const tag of xml.stdout.match(/<ip\b[^>]*>/g) ?? []) {
    const attr = (n: string) => new RegExp(`\\b${n}=['"]([^'"]+)['"]`).exec(tag)?.[1];
    if ((attr('family') ?? 'ipv4') !== 'ipv4') continue;
    const gateway = attr('address');
    const netmask = attr('netmask') ?? (attr('prefix') ? prefixToNetmask(Number(attr('prefix'))) : undefined);
    if (gateway && netmask) return { gateway, netmask };
  }
  throw new Error(`libvirt network ${network} has no IPv4 <ip> element; set CONFORMANCE_GATEWAY and CONFORMANCE_NETMASK`);
}

/** Prepares the environment (self-prepared or external) and imports the shared stemcell. */
export async function prepare(): Promise<ConformanceEnv> {
  if (current) return current;
  const externalConfig = process.env.CONFORMANCE_CONFIG;
  if (externalConfig) {
    const cfg = JSON.parse(readFileSync(externalConfig, 'utf8')) as { libvirt?: { uri?: string }; storage?: { pool?: string }; name_prefix?: string };
    const uri = cfg.libvirt?.uri ?? 'qemu:///system';
    const network = requireEnv('CONFORMANCE_NETWORK');
    const derived = process.env.CONFORMANCE_GATEWAY && process.env.CONFORMANCE_NETMASK ? undefined : ipv4Of(uri, network);
    const own = cfg.name_prefix ?? '';
    current = {
      external: true,
      config: resolve(externalConfig),
      uri,
      pool: cfg.storage?.pool ?? 'bosh',
      // With a name prefix of its own, everything else on a shared host (other test runs,
      // other directors) is someone else's and may change while the suite runs; the
      // suite's own domains and volumes carry the prefix (and the CPI creates no networks).
      foreign: (name) => (own !== '' ? !name.startsWith(own) : /^t-[a-z0-9]+-/.test(name)),
      stemcellImage: requireEnv('CONFORMANCE_STEMCELL'),
      network,
      ipv4: nextIps(requireEnv('CONFORMANCE_IPV4')),
      gateway: process.env.CONFORMANCE_GATEWAY ?? derived!.gateway,
      netmask: process.env.CONFORMANCE_NETMASK ?? derived!.netmask,
      stemcell: '',
    };
  } else if (process.env.CONFORMANCE_TARGET === 'two-hosts') {
    current = prepareTwoHosts();
  } else if (process.env.CONFORMANCE_TARGET === 'vbox') {
    current = prepareVbox();
  } else {
    // A previous run killed halfway may have left things: start clean.
    cleanupPrefix(SELF.prefix);
    removeNetwork(SELF.network);
    const net = defineIsolatedNetwork(SELF.network, SELF.bridge, SELF.third, { dhcp: true });
    // The tiny stemcell's guest never answers ACPI: 6b need not wait the default 60 s for an unplug,
    // nor reboot_vm long before it forces the guest off.
    const { path, pool } = testConfig({ prefix: SELF.prefix, network: SELF.network, overrides: { vm: { detach_timeout_seconds: 5, reboot_timeout_seconds: 2 } } });
    const image = tinyStemcell();
    selfPrepared = { prefix: SELF.prefix, pool, network: SELF.network, tmp: [dirname(path), dirname(image)] };
    current = {
      external: false,
      config: path,
      uri: 'qemu:///system',
      pool,
      foreign: (name) => /^t-[a-z0-9]+-/.test(name) && !name.startsWith(SELF.prefix),
      stemcellImage: image,
      network: net.name,
      ipv4: [`198.18.${SELF.third}.10`, `198.18.${SELF.third}.11`, `198.18.${SELF.third}.12`],
      gateway: net.v4.gateway,
      netmask: '255.255.255.0',
      stemcell: '',
    };
  }
  current.stemcell = String(await ok('create_stemcell', [current.stemcellImage, { name: 'conformance', version: '1', infrastructure: 'libvirt' }]));
  return current;
}

/** Two daemons behind one CPI: a pool and a same-named network on each, with different subnets. */
function prepareTwoHosts(): ConformanceEnv {
  requireSecondDaemon();
  const pool = `${TWO.prefix}pool`;
  const paths = [`/var/tmp/${pool}-a`, `/var/tmp/${pool}-b`];
  const uris = ['qemu:///system', SECOND_URI];
  uris.forEach((uri, i) => {
    cleanupPrefix(TWO.prefix, pool, uri, paths[i]);
    removeNetwork(TWO.network, uri);
  });
  const nets = uris.map((uri, i) => defineIsolatedNetwork(TWO.network, TWO.bridges[i]!, TWO.thirds[i]!, { dhcp: true, uri }));
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  const config = writeConfig({
    ...base,
    name_prefix: TWO.prefix,
    storage: { pool, path: paths[0], create_pool: true },
    network: { ...base.network, name: TWO.network },
    hosts: [{ name: 'host-a' }, { name: 'host-b', libvirt: { uri: SECOND_URI }, storage: { path: paths[1] } }],
    vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 2, detach_timeout_seconds: 5 },
  });
  const image = tinyStemcell();
  selfPrepared = { prefix: TWO.prefix, pool, network: TWO.network, tmp: [dirname(config), dirname(image)], second: { uri: SECOND_URI, poolPath: paths[1]! } };
  const third = TWO.thirds[0];
  return {
    external: false,
    config,
    uri: 'qemu:///system',
    pool,
    foreign: (name) => /^t-[a-z0-9]+-/.test(name) && !name.startsWith(TWO.prefix),
    stemcellImage: image,
    network: TWO.network,
    ipv4: [`198.18.${third}.10`, `198.18.${third}.11`, `198.18.${third}.12`],
    gateway: nets[0]!.v4.gateway,
    netmask: '255.255.255.0',
    stemcell: '',
    hosts: { 'host-a': uris[0]!, 'host-b': uris[1]! },
  };
}

/** The simulated VirtualBox's daemon (started if needed), its vboxnet0 and a storage directory of the suite's own. */
function prepareVbox(): ConformanceEnv {
  const started = spawnSync(join(ROOT, 'scripts/vbox-host.sh'), ['start'], { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`scripts/vbox-host.sh start failed: ${started.stderr}`);
  cleanupVbox();
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/vbox.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  if (base.libvirt?.uri !== VBOX.uri) throw new Error(`fixtures/config/vbox.json names ${String(base.libvirt?.uri)}, not the simulated daemon ${VBOX.uri}`);
  const config = writeConfig({
    ...base,
    name_prefix: VBOX.prefix,
    storage: { ...base.storage, path: VBOX.store },
    vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 2, detach_timeout_seconds: 5 },
  });
  const image = tinyStemcell();
  selfPrepared = { prefix: VBOX.prefix, pool: 'default-pool', network: VBOX.network, tmp: [dirname(config), dirname(image)], vbox: true };
  return {
    external: false,
    config,
    uri: VBOX.uri,
    pool: 'default-pool',
    foreign: (name) => /^t-[a-z0-9]+-/.test(name) && !name.startsWith(VBOX.prefix),
    stemcellImage: image,
    network: VBOX.network,
    ipv4: [`198.18.${VBOX.third}.10`, `198.18.${VBOX.third}.11`, `198.18.${VBOX.third}.12`],
    gateway: `198.18.${VBOX.third}.1`,
    netmask: '255.255.255.0',
    stemcell: '',
    files: VBOX.store,
  };
}

/** Every machine of the suite's prefix off and undefined, and its storage directory gone. */
function cleanupVbox(): void {
  for (const name of lines(virshAt(VBOX.uri, 'list', '--all', '--name').stdout)) {
    if (!name.startsWith(VBOX.prefix)) continue;
    virshAt(VBOX.uri, 'destroy', name);
    virshAt(VBOX.uri, 'undefine', name);
  }
  rmSync(VBOX.store, { recursive: true, force: true });
}

/** The files under a directory, relative, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Removes everything the suite made; safe to call after any failure (and twice). */
export async function teardown(): Promise<void> {
  if (current) {
    const opts = { config: current.config };
    // Best effort through the CPI first (the only way in external mode): VMs before the
    // disks they may hold, the stemcell last.
    for (const vm of created.vms) await callCpi('delete_vm', [vm], opts);
    for (const snap of created.snapshots) await callCpi('delete_snapshot', [snap], opts);
    for (const disk of created.disks) await callCpi('delete_disk', [disk], opts);
    for (const sc of created.stemcells) await callCpi('delete_stemcell', [sc], opts);
    created.vms.clear();
    created.disks.clear();
    created.snapshots.clear();
    created.stemcells.clear();
  }
  if (selfPrepared?.vbox) {
    cleanupVbox();
    for (const dir of selfPrepared.tmp) rmSync(dir, { recursive: true, force: true });
    selfPrepared = undefined;
  }
  if (selfPrepared) {
    const { second } = selfPrepared;
    cleanupPrefix(selfPrepared.prefix, selfPrepared.pool, 'qemu:///system', second ? `/var/tmp/${selfPrepared.pool}-a` : undefined);
    removeNetwork(selfPrepared.network);
    if (second) {
      cleanupPrefix(selfPrepared.prefix, selfPrepared.pool, second.uri, second.poolPath);
      removeNetwork(selfPrepared.network, second.uri);
    }
    for (const dir of selfPrepared.tmp) rmSync(dir, { recursive: true, force: true });
    selfPrepared = undefined;
  }
  current = undefined;
}

// ---------------------------------------------------------------------------------------
// libvirt, seen from outside (virsh), to prove calls change nothing they should not.

function virshAt(uri: string, ...args: string[]) {
  return spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
}

/**
 * Which backend the suite runs against, from the config's URI before prepare() (tests
 * are selected at collection time): where a backend answers NotSupported by design,
 * the suite checks that answer instead.
 */
export function backendIs(name: 'qemu' | 'lxc' | 'vbox'): boolean {
  if (!process.env.CONFORMANCE_CONFIG && process.env.CONFORMANCE_TARGET === 'vbox') return name === 'vbox';
  const file = process.env.CONFORMANCE_CONFIG;
  const uri = file ? ((JSON.parse(readFileSync(file, 'utf8')) as { libvirt?: { uri?: string } }).libvirt?.uri ?? 'qemu:///system') : 'qemu:///system';
  return (/^([a-z]+)/.exec(uri)?.[1] ?? 'qemu') === name;
}

/**
 * virsh on the daemon the arguments are about: a CID `<name>@<host>` (several hosts
 * behind the CPI) is looked up by its name on that host's daemon.
 */
export function virsh(...args: string[]) {
  const { uri, hosts } = env();
  if (hosts) {
    for (const [i, a] of args.entries()) {
      const m = /^(.+)@([^@]+)$/.exec(a);
      if (m && hosts[m[2]!]) return virshAt(hosts[m[2]!]!, ...args.slice(0, i), m[1]!, ...args.slice(i + 1));
    }
  }
  return virshAt(uri, ...args);
}

export interface LibvirtState {
  domains: string[];
  volumes: string[];
  networks: string[];
  dhcpHosts: string[];
  /** the files of a backend that keeps its objects in a directory (vbox), else empty */
  files: string[];
}

const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter((l) => l !== '');

/** Domains, the pool's volumes, networks and the test network's DHCP hosts (other test runs' names left out). */
export function libvirtState(): LibvirtState {
  const e = env();
  const keep = (name: string) => !e.foreign(name);
  const firstWord = (l: string) => l.split(/\s+/)[0] ?? '';
  // With several hosts, every daemon's view, each line marked with its host.
  const daemons = e.hosts ? Object.entries(e.hosts) : [['', e.uri] as const];
  const state: LibvirtState = { domains: [], volumes: [], networks: [], dhcpHosts: [], files: e.files ? filesUnder(e.files) : [] };
  for (const [host, uri] of daemons) {
    const at = (l: string) => (host ? `${host}: ${l}` : l);
    state.domains.push(...lines(virshAt(uri, 'list', '--all', '--name').stdout).filter(keep).map(at));
    state.volumes.push(...lines(virshAt(uri, 'vol-list', e.pool).stdout).filter((l) => keep(firstWord(l))).map(at));
    state.networks.push(...lines(virshAt(uri, 'net-list', '--all', '--name').stdout).filter(keep).map(at));
    state.dhcpHosts.push(...(virshAt(uri, 'net-dumpxml', e.network).stdout.match(/<host\b[^>]*>/g) ?? []).map(at));
  }
  for (const list of Object.values(state)) list.sort();
  return state;
}

/** Manual network settings in the test network. */
export function manualNetwork(ip: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const e = env();
  return { type: 'manual', ip, netmask: e.netmask, gateway: e.gateway, default: ['dns', 'gateway'], dns: [e.gateway], cloud_properties: { name: e.network }, ...extra };
}

export function dynamicNetwork(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'dynamic', default: ['dns', 'gateway'], cloud_properties: { name: env().network }, ...extra };
}

/** A syntactically valid CID this CPI could have made but never did. */
export function neverCid(kind: 'vm' | 'disk' | 'snap' | 'sc'): string {
  return `t-conf-${kind}-${randomUUID()}`;
}

/** The env create_vm gets from the director (bosh section passed through to the agent). */
export function agentEnv(): Record<string, unknown> {
  return { bosh: { group: 'conformance', groups: ['conformance'], tags: { suite: 'conformance' }, password: 'not-a-real-hash' } };
}

/** Runs `fn` over `items`, `width` at a time. */
export async function inBatches<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}
