// The test stemcell (fixtures/stemcell) and its agent's report, for tests that boot a
// guest: build (cached) the stemcell, unpack its root.img, and read what the agent saw,
// from the serial console log or over its HTTP endpoint. See docs/test-stemcell.md.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const STEMCELL_BUILD_SCRIPT = join(REPO_ROOT, 'fixtures/stemcell/build.sh');
export const REPORT_BEGIN = 'BOSH-TEST-AGENT-REPORT-BEGIN';
export const REPORT_END = 'BOSH-TEST-AGENT-REPORT-END';
/** Port of the agent's HTTP endpoint, on every guest address. */
export const AGENT_HTTP_PORT = 8080;

/** How one disk hint of the settings was resolved inside the guest. */
export interface GuestDisk {
  /** the hint exactly as the settings carry it: a path string or {id, path, …} */
  hint: unknown;
  /** e.g. "/dev/vdb"; null when no device matches */
  device: string | null;
  /** "id" (serial), "path" (mapped path), or null */
  resolved_by: 'id' | 'path' | null;
}

export interface GuestNetwork {
  type?: string;
  /** static | dhcp | prefix | vip | preconfigured | unmapped */
  mode: string;
  mac?: string;
  iface: string | null;
  ip?: string;
  /** global addresses on the NIC now, "addr/len" (shared by networks on the same NIC) */
  addresses: string[];
  gateway?: string;
  default: string[];
}

/** The test agent's report (one JSON object; keys as in docs/test-stemcell.md). */
export interface GuestReport {
  agent_id: string | null;
  'instance-id': string | null;
  boot_id: string;
  uptime_seconds: number;
  settings_source: 'boot' | 'config-drive';
  config_drive: string | null;
  networks: Record<string, GuestNetwork>;
  nics: { name: string; mac: string; addresses: string[] }[];
  routes: { ipv4: string[]; ipv6: string[] };
  dns: string[];
  disks: {
    system: GuestDisk;
    ephemeral: GuestDisk | null;
    persistent: Record<string, GuestDisk>;
  };
  block_devices: { name: string; serial: string | null; size_bytes: number }[];
  prefix_addresses: { network: string; iface: string; prefix: string; address: string }[];
  errors: string[];
}

export interface ResolvedGuestDisk {
  device: string;
  size_bytes: number;
  resolved_by: 'id' | 'path';
}

export interface StemcellInfo {
  name: string;
  version: string;
  hash: string;
  operating_system: string;
  tarball: string;
  image_sha1: string;
  disk_mib: number;
  root_img: { format: 'qcow2'; compat: string; virtual_size_bytes: number };
  kernel: { package: string; version: string; release: string };
}

/** `generic`: linux-image-amd64 (every driver); `cloud`: linux-image-cloud-amd64 (virtio and IDE, no AHCI). */
export type StemcellKernel = 'generic' | 'cloud';

const building = new Map<StemcellKernel, Promise<string>>();

/**
 * Builds the test stemcell on the given kernel flavour (a no-op when the cached one
 * exists) and returns the tarball's path. One build per flavour and process; concurrent
 * processes wait on the cache lock.
 */
export function buildTestStemcell(kernel: StemcellKernel = 'generic'): Promise<string> {
  let pending = building.get(kernel);
  if (!pending) {
    pending = run(STEMCELL_BUILD_SCRIPT, [], { maxBuffer: 16 * 1024 * 1024, timeout: 600_000, env: { ...process.env, STEMCELL_KERNEL: kernel } })
      .then(({ stdout }) => {
        const path = stdout.trim().split('\n').pop();
        if (!path) throw new Error(`${STEMCELL_BUILD_SCRIPT} printed no tarball path`);
        return path;
      })
      .catch((err: unknown) => {
        building.delete(kernel);
        const e = err as { stderr?: string; message?: string };
        throw new Error(`building the test stemcell (${kernel} kernel) failed: ${e.message ?? err}\n${e.stderr ?? ''}`);
      });
    building.set(kernel, pending);
  }
  return pending;
}

/** info.json written next to the tarball by build.sh (root.img virtual size, kernel, …). */
export async function readStemcellInfo(tarball: string): Promise<StemcellInfo> {
  return JSON.parse(await readFile(join(tarball, '..', 'info.json'), 'utf8')) as StemcellInfo;
}

/** Unpacks the tarball's `image` (a tgz of root.img) into dir; returns root.img's path. */
export async function unpackRootImage(tarball: string, dir: string): Promise<string> {
  await run('tar', ['-xzf', tarball, '-C', dir, 'image']);
  await run('tar', ['-xzf', join(dir, 'image'), '-C', dir, 'root.img']);
  return join(dir, 'root.img');
}

/** Every complete report in a serial console log, oldest first (one per boot). */
export function parseGuestReports(log: string): GuestReport[] {
  const reports: GuestReport[] = [];
  const lines = log.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== REPORT_BEGIN) continue;
    const end = lines.findIndex((l, j) => j > i && l.trim() === REPORT_END);
    if (end < 0) break; // still being written
    const json = lines.slice(i + 1, end).find((l) => l.trim().startsWith('{'));
    if (json) reports.push(JSON.parse(json.trim()) as GuestReport);
    i = end;
  }
  return reports;
}

/**
 * Polls a guest's serial log until it holds at least `minReports` reports (default 1:
 * the first boot; 2 after one reboot, …) and returns the newest. The timeout error
 * carries the log's tail, which is what tells why a guest did not come up.
 */
export async function readGuestReport(
  serialLogPath: string,
  timeoutMs: number,
  minReports = 1,
): Promise<GuestReport> {
  const deadline = Date.now() + timeoutMs;
  let log = '';
  for (;;) {
    log = await readFile(serialLogPath, 'latin1').catch(() => '');
    const reports = parseGuestReports(log);
    if (reports.length >= minReports) return reports[reports.length - 1]!;
    if (Date.now() > deadline) {
      throw new Error(
        `no test agent report #${minReports} in ${serialLogPath} after ${timeoutMs} ms; console tail:\n` +
          log.slice(-4000),
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Base URL of a guest's agent endpoint for an IPv4 or IPv6 address. */
export function agentUrl(address: string): string {
  return address.includes(':')
    ? `http://[${address}]:${AGENT_HTTP_PORT}`
    : `http://${address}:${AGENT_HTTP_PORT}`;
}

/**
 * GET the agent's report as of now (config drive re-read, disks re-scanned). `url` is
 * either the endpoint's base (agentUrl(ip)) or the full /cgi-bin/report URL.
 */
export async function fetchGuestReport(url: string, timeoutMs = 15_000): Promise<GuestReport> {
  const u = new URL(url);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/cgi-bin/report';
  const res = await fetch(u, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${u} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as GuestReport;
}

/** The ID rule of one BOSH agent generation: the CID's first 20 characters (before April 2023) or all of it. */
export type AgentIdRule = 'first20' | 'whole';
export const AGENT_ID_RULES: readonly AgentIdRule[] = ['first20', 'whole'];

/**
 * Asks the guest to resolve a disk like the agent would: by its CID (the director's,
 * never the hint's id) under `rule`, then by the hint's path; null when nothing matches (404).
 */
export async function resolveGuestDisk(
  baseUrl: string,
  disk: { cid?: string; path?: string; rule?: AgentIdRule },
  timeoutMs = 15_000,
): Promise<ResolvedGuestDisk | null> {
  const u = new URL('/cgi-bin/resolve', baseUrl);
  if (disk.cid !== undefined) u.searchParams.set('cid', disk.cid);
  if (disk.path !== undefined) u.searchParams.set('path', disk.path);
  if (disk.rule !== undefined) u.searchParams.set('rule', disk.rule);
  const res = await fetch(u, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`GET ${u} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as ResolvedGuestDisk;
}

/**
 * Waits (bounded) until the guest has a block device with this serial: a hot-plugged
 * disk appears a moment after attach_disk returns. Asking the resolver before that
 * races it (its ID lookup can miss a disk its path lookup then finds).
 */
export async function waitForGuestSerial(baseUrl: string, serial: string, tries = 60): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await fetchGuestReport(baseUrl).catch(() => null);
    if (r?.block_devices.some((b) => b.serial === serial)) return true;
    await new Promise((res) => setTimeout(res, 500));
  }
  return false;
}

/** Where the CPI's ready config has libvirt write each VM's serial console (vm.serial_log_dir). */
export const SERIAL_DIR = '/var/log/libvirt/qemu';

export const serialLog = (vm: string): string => `${SERIAL_DIR}/${vm}-console.log`;

/** The tail of a VM's serial console log, for failure messages. */
export function consoleLog(vm: string): string {
  try {
    return readFileSync(serialLog(vm), 'latin1').slice(-6000);
  } catch (e) {
    return `(no console log: ${(e as Error).message})`;
  }
}

/** Runs a guest check; on failure, the guest's console log goes into the error. */
export async function inGuest<T>(vm: string, check: () => Promise<T> | T): Promise<T> {
  try {
    return await check();
  } catch (e) {
    (e as Error).message += `\n--- console of ${vm} ---\n${consoleLog(vm)}`;
    throw e;
  }
}

// --- the container test stemcell (fixtures/stemcell/build-container.sh), for lxc:/// ---

export const CONTAINER_STEMCELL_BUILD_SCRIPT = join(REPO_ROOT, 'fixtures/stemcell/build-container.sh');
/** Inside the container: the settings file the CPI writes, and the agent's report. */
export const CONTAINER_SETTINGS_FILE = '/var/vcap/bosh/warden-cpi-agent-env.json';
export const CONTAINER_REPORT_FILE = '/var/vcap/bosh/test-agent-report.json';

/** The container agent's report: the VM agent's, with directory disks and their files. */
export interface ContainerReport extends Omit<GuestReport, 'settings_source' | 'disks'> {
  settings_source: 'boot' | 'settings-file';
  disks: {
    system: GuestDisk;
    ephemeral: GuestDisk | null;
    persistent: Record<string, { hint: unknown; device: string | null; resolved_by: 'directory' | null }>;
  };
  /** disk cid → {file name → its first line} for directory disks found */
  disk_files: Record<string, Record<string, string>>;
}

export interface ContainerStemcellInfo {
  name: string;
  version: string;
  tarball: string;
  /** the root filesystem as a directory, and as the tgz the stemcell's `image` is */
  rootfs: string;
  rootfs_tgz: string;
  init: string;
}

let buildingContainer: Promise<ContainerStemcellInfo> | undefined;

/** Builds (cached) the warden-tar container test stemcell; returns its info.json. */
export function buildContainerStemcell(): Promise<ContainerStemcellInfo> {
  buildingContainer ??= run(CONTAINER_STEMCELL_BUILD_SCRIPT, [], { maxBuffer: 16 * 1024 * 1024, timeout: 600_000 })
    .then(async ({ stdout }) => {
      const path = stdout.trim().split('\n').pop();
      if (!path) throw new Error(`${CONTAINER_STEMCELL_BUILD_SCRIPT} printed no tarball path`);
      return JSON.parse(await readFile(join(path, '..', 'info.json'), 'utf8')) as ContainerStemcellInfo;
    })
    .catch((err: unknown) => {
      buildingContainer = undefined;
      const e = err as { stderr?: string; message?: string };
      throw new Error(`building the container test stemcell failed: ${e.message ?? err}\n${e.stderr ?? ''}`);
    });
  return buildingContainer;
}

/**
 * Polls a container's report (a file the agent keeps in the root filesystem, read on
 * the host through the VM's overlay upper directory) until `ready` accepts it; the
 * timeout error carries the last report seen.
 */
export async function readContainerReport(
  reportPath: string,
  timeoutMs: number,
  ready: (r: ContainerReport) => boolean = () => true,
): Promise<ContainerReport> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    last = await readFile(reportPath, 'utf8').catch(() => '');
    if (last) {
      try {
        const r = JSON.parse(last) as ContainerReport;
        if (ready(r)) return r;
      } catch {
        // being replaced: read again
      }
    }
    if (Date.now() > deadline) throw new Error(`no matching container report in ${reportPath} after ${timeoutMs} ms; last:\n${last || '(none)'}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
