// `doctor`: is this host ready for the CPI as configured? Every check is read-only, so
// it is safe against a production host; each yields one line, OK / WARN / FAIL. FAIL
// means create_vm (or every call) would fail; WARN means it works but something
// surprising will happen (slow TCG guests, RAs, a pool created on first use, …).
import { existsSync, readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { isLibvirtError, ErrorCode, StoragePoolState, parseUri, type Connection } from '../libvirt/index.js';
import { parseNetwork, parsePool } from '../xml/index.js';
import { formatCidr, networkBase } from '../network/index.js';
import { formatBytes, isExecutableFile, isLocalUri, openConnection } from './common.js';
import { backendForUri } from '../driver/backends.js';
import { DISK_CID_LENGTH, SHORT_DISK_MARK, SHORT_DISK_PREFIX_MAX, shortDiskCids } from '../driver/cids.js';
import { lxcChecks, probeLxcHost } from './doctor-lxc.js';
import { probeReaper, reaperChecks } from './doctor-reaper.js';
import { vboxChecks } from './doctor-vbox.js';

export type Status = 'OK' | 'WARN' | 'FAIL';

export interface Check {
  name: string;
  status: Status;
  message: string;
}

/** Free space below this in the pool is a warning: one stemcell plus a few VMs. */
const LOW_FREE_BYTES = 5n * 1024n ** 3n;
export const HOOK_PATH = '/etc/libvirt/hooks/qemu';
/**
 * libvirt's network driver writes each network's MAC map (`<bridge>.macs`) here when a
 * VM's NIC joins the network, but creates the directory only when a network with DHCP or
 * DNS first starts. On a fresh host whose networks have neither (like the CPI's quiet,
 * RA-free networks), every VM start then fails with "Failed to create file
 * '/var/lib/libvirt/dnsmasq/<bridge>.macs.new'".
 */
export const DNSMASQ_STATE_DIR = '/var/lib/libvirt/dnsmasq';

export interface LocalHost {
  /** /proc/cpuinfo text, or null when unreadable */
  cpuinfo: string | null;
  devKvm: boolean;
  hookExecutable: boolean;
  hookExists: boolean;
  pathExists(path: string): boolean;
}

export function probeLocalHost(): LocalHost {
  let cpuinfo: string | null = null;
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    /* not Linux, or hidden: reported as unknown */
  }
  return { cpuinfo, devKvm: existsSync('/dev/kvm'), hookExists: existsSync(HOOK_PATH), hookExecutable: isExecutableFile(HOOK_PATH), pathExists: existsSync };
}

/** Whether the BOSH agent will find this config's new persistent disks by ID (cids.ts). */
function diskCids(config: Config, add: (name: string, status: Status, message: string) => void): void {
  const p = config.name_prefix;
  if (shortDiskCids(p)) {
    add('disk cids', 'OK', `new disk CIDs are ${DISK_CID_LENGTH} characters (${JSON.stringify(p)} + "${SHORT_DISK_MARK}" + random) and each disk's virtio serial: the BOSH agent finds persistent disks by ID`);
  } else {
    add('disk cids', 'WARN', `name_prefix ${JSON.stringify(p)} has ${p.length} characters, more than ${SHORT_DISK_PREFIX_MAX}: new disk CIDs take the long form ${p}disk-<uuid>, longer than any virtio serial, so the BOSH agent finds those disks by their hint's path only, after its ID lookup has timed out at each mount; a name_prefix of at most ${SHORT_DISK_PREFIX_MAX} characters gives ${DISK_CID_LENGTH}-character disk CIDs it finds by ID`);
  }
}

export async function runDoctor(config: Config, configFile: string, local: LocalHost | null): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (name: string, status: Status, message: string) => checks.push({ name, status, message });
  add('config', 'OK', `${configFile}: uri ${config.libvirt.uri}, pool ${config.storage.pool}, domain_type ${config.domain_type}, name_prefix ${JSON.stringify(config.name_prefix)}`);

  if (backendForUri(config.libvirt.uri).name === 'vbox') {
    // The vbox profile keeps its objects as files in storage.path, not in a libvirt pool,
    // and libvirt's vbox driver lacks most of what the checks below read.
    await vboxChecks(config, add);
    return checks;
  }
  let conn: Connection;
  try {
    conn = await openConnection(config);
  } catch (e) {
    add('connection', 'FAIL', (e as Error).message);
    return checks;
  }
  try {
    add('connection', 'OK', `connected to ${config.libvirt.uri}${local ? ' (local daemon)' : ' (remote daemon: host files are not checked)'}`);
    // Containers have no hardware to accelerate and no serial console log.
    const lxc = backendForUri(config.libvirt.uri).name === 'lxc';
    await versions(conn, config, add);
    if (!lxc) await kvm(conn, config, local, add);
    if (!lxc) diskCids(config, add);
    await pool(conn, config, add);
    await network(conn, config, local, add);
    networkStateDir(local, add);
    if (!lxc) serialLogDir(config, local, add);
    hook(local, add);
    if (lxc && local) lxcChecks(probeLxcHost(), add);
    if (!lxc && local) reaperChecks(probeReaper(), add);
  } finally {
    await conn.close().catch(() => undefined);
  }
  return checks;
}

type Add = (name: string, status: Status, message: string) => void;

/** libvirt packs versions as major * 1e6 + minor * 1e3 + micro. */
export function formatVersion(v: bigint): string {
  const n = Number(v);
  return `${Math.floor(n / 1e6)}.${Math.floor((n % 1e6) / 1e3)}.${n % 1e3}`;
}

async function versions(conn: Connection, config: Config, add: Add): Promise<void> {
  try {
    add('libvirt', 'OK', `libvirt ${formatVersion(await conn.libVersion())}`);
  } catch (e) {
    add('libvirt', 'WARN', `cannot read the libvirt version: ${(e as Error).message}`);
  }
  const driver = parseUri(config.libvirt.uri).driver;
  const name = driver === 'qemu' || driver === 'kvm' ? 'QEMU' : driver;
  try {
    add('hypervisor', 'OK', `${name} ${formatVersion(await conn.version())}`);
  } catch (e) {
    add('hypervisor', 'FAIL', `cannot read the ${name} version (is the hypervisor driver loaded?): ${(e as Error).message}`);
  }
}

/** vmx (Intel) or svm (AMD) among the CPU flags; null when unknown. */
export function cpuVirtFlags(cpuinfo: string | null): { virt: boolean; nested: boolean } | null {
  if (cpuinfo === null) return null;
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  return { virt: flags.has('vmx') || flags.has('svm'), nested: flags.has('hypervisor') };
}

async function kvm(conn: Connection, config: Config, local: LocalHost | null, add: Add): Promise<void> {
  let offered = false;
  let why = '';
  try {
    const caps = await conn.domainCapabilities(null, 'x86_64', config.vm.machine, 'kvm', 0);
    offered = /<domain>\s*kvm\s*<\/domain>/.test(caps);
  } catch (e) {
    why = (e as Error).message;
  }
  // libvirt offers kvm whenever /dev/kvm opens; inside a VM without nested
  // virtualisation passed through, it may open while KVM guests hang at boot.
  let suspect: string | null = null;
  const facts: string[] = [];
  if (local) {
    facts.push(local.devKvm ? '/dev/kvm present' : '/dev/kvm missing');
    const cpu = cpuVirtFlags(local.cpuinfo);
    if (cpu) {
      facts.push(cpu.virt ? 'CPU flags include vmx/svm' : 'CPU flags lack vmx/svm');
      if (cpu.nested) facts.push('running under a hypervisor');
      if (offered && !cpu.virt) {
        suspect = `${cpu.nested ? 'this machine is itself a VM whose CPU shows no vmx/svm flag (nested virtualisation is not passed through)' : 'the CPU shows no vmx/svm flag'}, so KVM guests may hang at boot although /dev/kvm opens`;
      }
    } else {
      facts.push('/proc/cpuinfo unreadable');
    }
  }
  const where = facts.length ? ` (${facts.join(', ')})` : '';
  if (!offered) add('kvm', 'WARN', `kvm is not offered by libvirt${where}${why ? `: ${why}` : ''}; guests run under TCG (software emulation), slowly`);
  else if (suspect) add('kvm', 'WARN', `kvm is offered by libvirt, but ${suspect}${where}`);
  else add('kvm', 'OK', `kvm is offered by libvirt${where}`);

  const fix = 'set domain_type: qemu (TCG) in cpi.json';
  switch (config.domain_type) {
    case 'qemu':
      add('domain_type', 'OK', `qemu: guests run under TCG, slower than KVM but independent of it${offered && !suspect ? '; kvm looks usable here, domain_type: auto would use it' : ''}`);
      break;
    case 'kvm':
      if (!offered) add('domain_type', 'FAIL', `kvm, but libvirt offers no kvm guests here: create_vm will fail; ${fix}`);
      else if (suspect) add('domain_type', 'WARN', `kvm, but ${suspect}; if VMs never boot, ${fix}`);
      else add('domain_type', 'OK', 'kvm');
      break;
    case 'auto':
      if (!offered) add('domain_type', 'OK', 'auto resolves to qemu (TCG) because libvirt offers no kvm');
      else if (suspect) add('domain_type', 'WARN', `auto will pick kvm because libvirt offers it, but ${suspect}; ${fix}`);
      else add('domain_type', 'OK', 'auto resolves to kvm');
      break;
  }
}

async function pool(conn: Connection, config: Config, add: Add): Promise<void> {
  const { pool: name, path, create_pool } = config.storage;
  let ref;
  try {
    ref = await conn.pools.lookupByName(name);
  } catch (e) {
    if (!isLibvirtError(e, ErrorCode.NO_STORAGE_POOL)) {
      add('pool', 'FAIL', `cannot look up storage pool "${name}": ${(e as Error).message}`);
      return;
    }
    if (create_pool) add('pool', 'WARN', `storage pool "${name}" does not exist; the first CPI call creates a directory pool at ${path} (storage.create_pool: true)`);
    else add('pool', 'FAIL', `storage pool "${name}" does not exist and storage.create_pool is false: every call that needs storage fails; create it or set create_pool: true`);
    return;
  }
  const info = await conn.pools.getInfo(ref);
  const xml = await conn.pools.getXMLDesc(ref, 0);
  const parsed = parsePool(xml);
  const poolPath = parsed.path.trim() || '(no path)';
  const type = parsed.type;
  const pathNote = type === 'dir' && poolPath !== path ? ` (storage.path says ${path}; it is used only when the CPI creates the pool)` : '';
  if (info.state === StoragePoolState.RUNNING) {
    const space = `${formatBytes(info.available)} free of ${formatBytes(info.capacity)}`;
    const low = info.available < LOW_FREE_BYTES;
    add('pool', low ? 'WARN' : 'OK', `storage pool "${name}" (${type}) active at ${poolPath}${pathNote}, ${space}${low ? ': low on space for stemcells and VM disks' : ''}`);
  } else if (info.state === StoragePoolState.INACTIVE) {
    add('pool', 'WARN', `storage pool "${name}" (${type}) at ${poolPath} is defined but inactive; the first CPI call starts it (virsh pool-autostart ${name} keeps it up across reboots)`);
  } else {
    add('pool', 'FAIL', `storage pool "${name}" at ${poolPath} is ${info.state === StoragePoolState.INACCESSIBLE ? 'inaccessible' : `in state ${info.state}`}`);
  }
}

/** The subnet an <ip address='198.18.61.1' prefix='24'> serves: 198.18.61.0/24. */
function subnet(ip: { address: string; prefix: number }): string {
  return formatCidr(networkBase(ip.address, ip.prefix), ip.prefix);
}

async function network(conn: Connection, config: Config, local: LocalHost | null, add: Add): Promise<void> {
  const { name, bridge } = config.network;
  if (!name) {
    if (!bridge) {
      add('network', 'WARN', 'no default network (network.name or network.bridge): every BOSH network needs cloud_properties.name');
    } else if (!local) {
      add('network', 'WARN', `default bridge ${bridge}: not checked on a remote host`);
    } else if (local.pathExists(`/sys/class/net/${bridge}`)) {
      add('network', 'OK', `default bridge ${bridge} exists (DHCP and RAs on it are the LAN's business, not libvirt's)`);
    } else {
      add('network', 'FAIL', `default bridge ${bridge} (network.bridge) does not exist on this host`);
    }
    return;
  }
  let ref;
  try {
    ref = await conn.networks.lookupByName(name);
  } catch (e) {
    if (!isLibvirtError(e, ErrorCode.NO_NETWORK)) throw e;
    const known = (await conn.networks.listAll(0).catch(() => [])).map((n) => n.name);
    add('network', 'FAIL', `libvirt network "${name}" (network.name) does not exist: create_vm fails for every network without cloud_properties.name (defined networks: ${known.join(', ') || 'none'})`);
    return;
  }
  const xml = await conn.networks.getXMLDesc(ref, 0);
  const net = parseNetwork(xml);
  const active = await conn.networks.isActive(ref);
  const subnets = net.ips.map(subnet);
  const forward = net.forwardMode ?? 'none (isolated)';
  const what = `libvirt network "${name}": bridge ${net.bridge ?? '?'}, forward ${forward}, subnets ${subnets.join(', ') || 'none'}`;
  if (!active) add('network', 'FAIL', `${what}; it is inactive, so VMs on it cannot start: virsh net-start ${name} (and net-autostart ${name})`);
  else add('network', 'OK', `${what}, active`);

  const dhcp = net.ips.filter((ip) => ip.hasDhcp).map(subnet);
  add('dhcp', 'OK', dhcp.length ? `DHCP on ${dhcp.join(', ')} (the CPI reserves static addresses there)` : 'no DHCP: manual networks only (dynamic networks get no address)');

  // libvirt's dnsmasq sends router advertisements for every IPv6 <ip> whenever it runs
  // at all, and it runs when any <ip> has DHCP or DNS is left enabled (the default).
  const v6 = net.ips.filter((ip) => ip.family === 'ipv6').map(subnet);
  const dnsEnabled = !/<dns\b[^>]*\benable=['"]no['"]/.test(xml);
  const dnsmasq = dhcp.length > 0 || dnsEnabled;
  if (v6.length === 0) add('ra', 'OK', 'IPv4 only: no router advertisements');
  else if (!dnsmasq) add('ra', 'OK', `no router advertisements for ${v6.join(', ')} (no DHCP and <dns enable='no'/>: dnsmasq does not run)`);
  else {
    const cause = [dhcp.length ? 'DHCP' : '', dnsEnabled ? 'DNS enabled' : ''].filter(Boolean).join(' and ');
    add('ra', 'WARN', `router advertisements are sent for ${v6.join(', ')} (dnsmasq runs for ${cause}): guests may autoconfigure SLAAC addresses and routes beside the ones BOSH assigns; see docs/networking.md "Router advertisement hardening"`);
  }
}

function networkStateDir(local: LocalHost | null, add: Add): void {
  if (!local) return;
  if (local.pathExists(DNSMASQ_STATE_DIR)) add('network_state_dir', 'OK', `${DNSMASQ_STATE_DIR} exists`);
  else {
    add('network_state_dir', 'FAIL', `${DNSMASQ_STATE_DIR} does not exist: libvirt creates it only when a network with DHCP or DNS first starts, and until then every VM on a libvirt network fails to start ("Failed to create file …macs.new"); create it (mkdir -p ${DNSMASQ_STATE_DIR}; scripts/setup-host.sh does)`);
  }
}

function serialLogDir(config: Config, local: LocalHost | null, add: Add): void {
  if (!local) return;
  const dir = config.vm.serial_log_dir;
  if (local.pathExists(dir)) add('serial_log_dir', 'OK', `${dir} exists`);
  else add('serial_log_dir', 'FAIL', `${dir} (vm.serial_log_dir) does not exist: QEMU cannot open the console log and VMs fail to start`);
}

function hook(local: LocalHost | null, add: Add): void {
  const docs = 'delegated prefixes outside the bridge subnets get no host route; install scripts/libvirt-hook-qemu there (scripts/setup-host.sh does) and restart libvirtd; see docs/networking.md "Delegated prefix routes"';
  if (!local) add('prefix_hook', 'WARN', `${HOOK_PATH} not checked on a remote host; without it ${docs}`);
  else if (local.hookExecutable) add('prefix_hook', 'OK', `${HOOK_PATH} is installed and executable`);
  else if (local.hookExists) add('prefix_hook', 'WARN', `${HOOK_PATH} exists but is not executable (chmod 755 it and restart libvirtd); until then ${docs}`);
  else add('prefix_hook', 'WARN', `${HOOK_PATH} is missing: ${docs}`);
}

export function printChecks(checks: Check[], out: NodeJS.WritableStream = process.stdout): void {
  const width = Math.max(...checks.map((c) => c.name.length));
  for (const c of checks) out.write(`${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.message}\n`);
}

/** The checks of every host of a multi-host config, each named after its host. */
async function runDoctorEveryHost(config: Config, configFile: string): Promise<Check[]> {
  const { resolveHosts } = await import('../config/hosts.js');
  const { hostScopedConfig } = await import('../hosts/driver.js');
  const checks: Check[] = [];
  for (const h of resolveHosts(config)) {
    const scoped = hostScopedConfig(config, h);
    const local = isLocalUri(scoped.libvirt.uri) ? probeLocalHost() : null;
    for (const c of await runDoctor(scoped, configFile, local)) checks.push({ ...c, name: `${h.name}: ${c.name}` });
  }
  return checks;
}

export async function doctor(config: Config, configFile: string, json: boolean): Promise<number> {
  const local = isLocalUri(config.libvirt.uri) ? probeLocalHost() : null;
  const checks = config.hosts === undefined ? await runDoctor(config, configFile, local) : await runDoctorEveryHost(config, configFile);
  const failed = checks.filter((c) => c.status === 'FAIL').length;
  const warned = checks.filter((c) => c.status === 'WARN').length;
  if (json) process.stdout.write(`${JSON.stringify({ ok: failed === 0, checks }, null, 2)}\n`);
  else {
    printChecks(checks);
    process.stdout.write(`\n${failed ? `${failed} check(s) failed` : 'no failures'}${warned ? `, ${warned} warning(s)` : ''}\n`);
  }
  return failed ? 1 : 0;
}
