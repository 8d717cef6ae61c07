// Level 2: the real `bosh` CLI drives the CPI release. It builds the CPI release and the
// small keeper release, installs the CPI from its release on this machine (compiling its
// packages, rendering its job with the CLI's own ERB renderer), and runs the worked
// example of docs/deploying.md — manifests/create-env-example.yml, unchanged — against
// qemu:///system with a stemcell holding the REAL BOSH agent: create-env with a
// persistent disk, create-env again with a changed property (the VM is recreated, the
// disk and its data kept), delete-env (nothing left). What the job saw comes from the
// guest itself, a line it writes on the serial console at each start.
//
// Without the real tools (the CLI, an agent and monit: BOSH_CLI_BIN, BOSH_AGENT_BIN,
// MONIT_BIN or ../shared/tools) the file is skipped and says why; tools that are there and
// fail fail it.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ROOT, requireBundle } from '../helpers/cpi.js';
import { bosh, buildCpiRelease, buildKeeperRelease } from '../helpers/bosh-cli.js';
import { cleanupPrefix, defineIsolatedNetwork, leftovers, removeNetwork } from '../helpers/driver-fixtures.js';
import { buildRealStemcell, resolveRealTools } from '../helpers/real-tools.js';
import { scratchDir } from '../helpers/scratch.js';
import { consoleLog, serialLog } from '../helpers/stemcell.js';

const PREFIX = 't-ce-';
const NET = 't-ce-net';
const POOL = `${PREFIX}pool`;
const POOL_PATH = `/var/tmp/${POOL}`;
const IP = '198.18.57.10';
// create-env under TCG: the stemcell import, the guest's boot, the agent compiling the
// keeper package and starting the job.
const DEPLOY_TIMEOUT_MS = 900_000;

const tools = resolveRealTools();
if (!tools.ok) console.warn(`[create-env] skipped: ${tools.reason}`);

interface State {
  current_vm_cid?: string;
  current_disk_id?: string;
  current_stemcell_id?: string;
  disks?: { id: string; cid: string; size: number }[];
  stemcells?: { id: string; cid: string }[];
}

interface KeeperReport {
  greeting: string;
  first: string;
  history: string[];
  store_device: string;
  boot_id: string;
}

/** The CPI methods the CLI called (besides info), in order, from its debug log. */
function cpiCalls(log: string): string[] {
  return [...readFileSync(log, 'utf8').matchAll(/^STDIN: '\{"method":"(\w+)"/gm)].map((m) => m[1]!).filter((m) => m !== 'info');
}

/** The actions the real agent received (besides ping and get_task), in order, from its log on the VM's console. */
function agentActions(vm: string): string[] {
  return [...readFileSync(serialLog(vm), 'utf8').matchAll(/Received request with action (\w+)/g)].map((m) => m[1]!).filter((a) => a !== 'ping' && a !== 'get_task');
}

/** Whether `want` occurs in `seen` in this order (other entries may come between). */
function inOrder(seen: string[], want: string[]): boolean {
  let i = 0;
  for (const s of seen) if (s === want[i]) i++;
  return i === want.length;
}

/** The keeper job's lines on a VM's serial console (fixtures/keeper-release/src/keeper/keeper.sh). */
function keeperReports(vm: string): KeeperReport[] {
  const file = serialLog(vm);
  if (!existsSync(file)) return [];
  return [...readFileSync(file, 'utf8').matchAll(/KEEPER-REPORT greeting=(\S+) first=(\S+) history=(\S+) store_device=(\S+) boot_id=([0-9a-f-]+)/g)].map((m) => ({
    greeting: m[1]!, first: m[2]!, history: m[3]!.split(','), store_device: m[4]!, boot_id: m[5]!,
  }));
}

/**
 * The keeper's last report with `greeting` on the VM's console. bin/ctl writes it before
 * monit can see the process, so it is there when create-env returns; the bounded wait
 * only covers virtlogd's copy of the console into the file.
 */
async function keeperReport(vm: string, greeting: string): Promise<KeeperReport> {
  for (let i = 0; i < 30; i++) {
    const found = keeperReports(vm).filter((r) => r.greeting === greeting).at(-1);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`no KEEPER-REPORT greeting=${greeting} on the console of ${vm} (reports: ${JSON.stringify(keeperReports(vm))})\n--- console ---\n${consoleLog(vm).slice(-8000)}`);
}

describe.skipIf(!tools.ok)('bosh create-env with the CPI release (manifests/create-env-example.yml)', () => {
  // The body is collected even when skipped: read the tools only when they are there.
  const found = tools.ok ? tools.tools : undefined;
  const bin = found?.cli ?? '';
  let home: string;
  let dir: string;
  let state: string;
  let creds: string;
  let vars: string[];
  let deployed = false;
  const vmsSeen: string[] = [];

  const readState = (): State => JSON.parse(readFileSync(state, 'utf8')) as State;
  let runs = 0;
  /** create-env or delete-env as docs/deploying.md runs it; the CLI's debug log (every CPI call) goes to the returned path. */
  const env = async (command: 'create-env' | 'delete-env', greeting: string, opts: { timeoutMs: number; allowFail?: boolean }) => {
    const log = join(dir, `bosh-${++runs}-${command}.log`);
    const args = ['--tty', command, join(ROOT, 'manifests/create-env-example.yml'), '--state', state, '--vars-store', creds, ...vars, '-v', `greeting=${greeting}`];
    const run = await bosh(bin, home, args, { ...opts, env: { BOSH_LOG_LEVEL: 'debug', BOSH_LOG_PATH: log } });
    return { ...run, log };
  };

  beforeAll(async () => {
    requireBundle();
    cleanupPrefix(PREFIX);
    defineIsolatedNetwork(NET, 't-ce-br0', 57);
    home = scratchDir('t-ce-home-');
    dir = scratchDir('t-ce-');
    state = join(dir, 'state.json');
    creds = join(dir, 'creds.yml');
    const cpiRelease = join(dir, 'cpi.tgz');
    const keeperRelease = join(dir, 'keeper.tgz');
    await buildCpiRelease(bin, home, cpiRelease);
    await buildKeeperRelease(bin, home, keeperRelease);
    // The newest agent build (stemcells ship recent agents).
    const stemcell = (await buildRealStemcell(found!.agents.at(-1)!.path, found!.monit)).openstackQcow2;
    vars = [
      '-v', `libvirt_cpi_release=${cpiRelease}`,
      '-v', `keeper_release=${keeperRelease}`,
      '-v', `stemcell=${stemcell}`,
      '-v', 'internal_cidr=198.18.57.0/24',
      '-v', 'internal_gw=198.18.57.1',
      '-v', `internal_ip=${IP}`,
      '-v', `libvirt_network=${NET}`,
      '-v', `name_prefix=${PREFIX}`,
      '-v', 'domain_type=qemu',
      '-v', `storage_pool=${POOL}`,
      '-v', `storage_path=${POOL_PATH}`,
    ];
  }, 1_800_000);

  afterAll(async () => {
    try {
      if (deployed && existsSync(state)) await env('delete-env', 'again', { timeoutMs: 600_000, allowFail: true });
    } finally {
      cleanupPrefix(PREFIX);
      removeNetwork(NET);
    }
  }, 900_000);

  it('create-env installs the CPI from its release and deploys the keeper with a persistent disk', async () => {
    deployed = true;
    const run = await env('create-env', 'hello', { timeoutMs: DEPLOY_TIMEOUT_MS });
    expect(cpiCalls(run.log)).toEqual(['create_stemcell', 'create_vm', 'set_vm_metadata', 'create_disk', 'attach_disk', 'set_disk_metadata']);
    // The CLI generated the agent's mbus certificate into the vars store.
    const generated = parseYaml(readFileSync(creds, 'utf8')) as Record<string, { certificate?: string; private_key?: string }>;
    expect(generated.mbus_bootstrap_ssl?.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const s = readState();
    expect(s.current_vm_cid).toMatch(new RegExp(`^${PREFIX}vm-`));
    expect(s.disks).toHaveLength(1);
    // a 20-character disk CID, its own virtio serial, so the agent finds the disk by ID
    expect(s.disks![0]!.cid).toMatch(new RegExp(`^${PREFIX}d-[a-z0-9]+$`));
    expect(s.disks![0]!.cid).toHaveLength(20);
    expect(s.stemcells?.[0]?.cid).toMatch(new RegExp(`^${PREFIX}sc-`));
    vmsSeen.push(s.current_vm_cid!);
    // The real agent mounted the disk, compiled the keeper package, applied the job and
    // started it; the CLI then waited until monit reported it running (get_state).
    const actions = agentActions(s.current_vm_cid!);
    expect(inOrder(actions, ['add_persistent_disk', 'mount_disk', 'apply', 'compile_package', 'apply', 'run_script', 'start', 'get_state']), actions.join(' ')).toBe(true);
    // libvirt holds what the state names: the running domain and the disk's volume.
    expect(execFileSync('virsh', ['-c', 'qemu:///system', 'domstate', s.current_vm_cid!], { encoding: 'utf8' }).trim()).toBe('running');
    expect(leftovers(PREFIX)).toEqual(expect.arrayContaining([s.current_vm_cid!, expect.stringMatching(new RegExp(`^${s.disks![0]!.cid}`))]));
    // The job ran on the VM with the persistent disk mounted at /var/vcap/store.
    const last = await keeperReport(s.current_vm_cid!, 'hello');
    expect(last).toMatchObject({ greeting: 'hello', first: 'hello' });
    expect(last.history.every((g) => g === 'hello')).toBe(true);
    expect(last.store_device).toMatch(/^\/dev\/vd[c-z]1$/);
  }, DEPLOY_TIMEOUT_MS + 60_000);

  it('a second create-env with a changed greeting recreates the VM and keeps the disk and its data', async () => {
    const before = readState();
    const run = await env('create-env', 'again', { timeoutMs: DEPLOY_TIMEOUT_MS });
    // The old VM goes (the agent unmounted the disk first), a new one gets the same disk.
    expect(cpiCalls(run.log)).toEqual(['has_vm', 'delete_vm', 'create_vm', 'set_vm_metadata', 'attach_disk', 'set_disk_metadata']);
    expect(inOrder(agentActions(before.current_vm_cid!), ['drain', 'stop', 'unmount_disk'])).toBe(true);
    const after = readState();
    expect(after.current_vm_cid).toMatch(new RegExp(`^${PREFIX}vm-`));
    expect(after.current_vm_cid).not.toBe(before.current_vm_cid);
    vmsSeen.push(after.current_vm_cid!);
    expect(after.disks!.map((d) => d.cid)).toEqual(before.disks!.map((d) => d.cid));
    expect(after.current_disk_id).toBe(before.current_disk_id);
    // The first VM is gone from libvirt.
    expect(leftovers(PREFIX)).not.toContain(before.current_vm_cid);
    const last = await keeperReport(after.current_vm_cid!, 'again');
    const old = await keeperReport(before.current_vm_cid!, 'hello');
    expect(last.boot_id).not.toBe(old.boot_id);
    // The first deploy's greeting is still on the disk, and this start added its own.
    expect(last.greeting).toBe('again');
    expect(last.first).toBe('hello');
    expect(last.history).toContain('hello');
    expect(last.history.at(-1)).toBe('again');
    expect(last.store_device).toMatch(/^\/dev\/vd[c-z]1$/);
  }, DEPLOY_TIMEOUT_MS + 60_000);

  it('delete-env removes the VM, the disk and the stemcell: no domain or volume with the prefix is left in libvirt', async () => {
    const vm = readState().current_vm_cid!;
    const run = await env('delete-env', 'again', { timeoutMs: 600_000 });
    deployed = false;
    expect(cpiCalls(run.log)).toEqual(['has_vm', 'delete_vm', 'delete_disk', 'delete_stemcell']);
    expect(inOrder(agentActions(vm), ['drain', 'stop', 'unmount_disk'])).toBe(true);
    // The CLI removes the state file once the environment is gone.
    expect(existsSync(state)).toBe(false);
    expect(leftovers(PREFIX)).toEqual([]);
    const domains = execFileSync('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' });
    for (const vm of vmsSeen) expect(domains).not.toContain(vm);
  }, 660_000);
});
