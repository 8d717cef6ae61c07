// Level 1: the REAL BOSH agent in guests the CPI made. A stemcell built around each
// agent binary (fixtures/real-stemcell/build.sh: Debian 12, systemd, runit, monit 5.2.5)
// goes through bin/cpi as openstack-qcow2 (qemu:///system, machine types pc and q35) and
// as warden-tar (lxc:///). The test then talks to the agent the way `bosh create-env`
// does, over its HTTPS mbus (port 6868, basic auth), and reads the agent's own log (the
// serial console's copy for qemu, the file in the container's root for lxc):
//   - the agent loaded the settings the CPI gave (agent_id over the mbus);
//   - a dual-homed VM (an IPv4 network and an IPv6 network, one NIC each) has both
//     addresses up and answering ping from the host over both families;
//   - the ephemeral disk is mounted (/var/vcap/data in the agent's vitals);
//   - a persistent disk: attach_disk → add_persistent_disk → mount_disk (mounted at
//     /var/vcap/store, in the vitals; on qemu the agent's log must say it found the disk
//     by its ID);
//   - reboot_vm with the disk attached, and the agent answering again with both disks
//     mounted again (it remounts the last mounted disk from the settings the CPI keeps);
//   - unmount_disk → detach_disk → remove_persistent_disk, as the director orders them.
// Every guest runs its steps at once, side by side with the others (the TCG boots and
// reboots overlap); each step is one test, reported in order per guest.
// Without the tools (../shared/tools or BOSH_CLI_BIN/BOSH_AGENT_BIN/MONIT_BIN) the tier
// prints why and skips; with them, anything that breaks fails.
import { execFile, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle, ROOT, writeConfig } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, removeNetwork, testConfig } from '../helpers/driver-fixtures.js';
import { AgentClient, AgentError, makeMbusCert, type MbusCert } from '../helpers/agent-mbus.js';
import { buildRealStemcell, resolveRealTools, unpackStemcellImage, type RealAgent } from '../helpers/real-tools.js';
import { scratchDir } from '../helpers/scratch.js';
import { consoleLog, serialLog } from '../helpers/stemcell.js';

const execFileAsync = promisify(execFile);
const PREFIX = 't-ra-';
const LXC_PREFIX = 't-ral-';
const LXC_POOL = `${LXC_PREFIX}pool`;
const LXC_POOL_PATH = `/var/tmp/${LXC_POOL}`;
const NET4 = 't-ra-net4';
const NET6 = 't-ra-net6';
/** TCG boots of a Debian guest take about 50 s alone; several at once on 2 busy cores, more */
const BOOT_TIMEOUT_MS = 600_000;

const resolution = resolveRealTools();
if (!resolution.ok) console.warn(`[real-agent] Level 1 tier SKIPPED: ${resolution.reason}`);
const agents: RealAgent[] = resolution.ok ? resolution.tools.agents : [];
/** for work on one backend: REAL_AGENT_KINDS=lxc (or qemu) runs only those guests */
const KINDS = (process.env.REAL_AGENT_KINDS ?? 'qemu,lxc').split(',');
if (process.env.REAL_AGENT_KINDS) console.warn(`[real-agent] REAL_AGENT_KINDS=${process.env.REAL_AGENT_KINDS}: the other guests are not run`);
const monit = resolution.ok ? resolution.tools.monit : '';

type Networks = Record<string, Record<string, unknown>>;
interface Guest {
  kind: 'qemu' | 'lxc';
  label: string;
  agent: RealAgent;
  agentId: string;
  host: number;
  machine?: 'pc' | 'q35';
  vm?: string;
  client: AgentClient;
  /** each step's outcome, settled as the guest's story (below) gets there */
  steps?: Record<Step, Promise<void>>;
}

const STEPS = ['boot', 'dualHomed', 'ephemeral', 'mount', 'byId', 'reboot', 'detach'] as const;
type Step = (typeof STEPS)[number];

// Two networks, one NIC each: IPv4 on the first, IPv6 on the second (each bridge has
// both families, the guest uses one of each).
const dualHomed = (host: number): Networks => ({
  v4: { type: 'manual', ip: `198.18.170.${host}`, netmask: '255.255.255.0', gateway: '198.18.170.1', dns: [], default: ['dns', 'gateway'], cloud_properties: { name: NET4 } },
  v6: { type: 'manual', ip: `fd00:171::${host}`, netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', gateway: 'fd00:171::1', dns: [], default: [], cloud_properties: { name: NET6 } },
});

let qemuConfig = '';
let lxcConfig = '';
let cert: MbusCert;
const stemcells = new Map<string, { qemu: string; lxc: string }>();
const guests: Guest[] = [];
const started = Date.now();
const timings: string[] = [];
const mark = (what: string, since: number) => timings.push(`${what}: ${Math.round((Date.now() - since) / 1000)} s`);

const virsh = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

function cleanupLxc(): void {
  for (const name of virsh('lxc:///', 'list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(LXC_PREFIX))) {
    virsh('lxc:///', 'destroy', name);
    virsh('lxc:///', 'undefine', name);
  }
  virsh('qemu:///system', 'pool-destroy', LXC_POOL);
  virsh('qemu:///system', 'pool-undefine', LXC_POOL);
  rmSync(LXC_POOL_PATH, { recursive: true, force: true });
}

/**
 * The agent's log as the guest wrote it: the serial console (qemu), or svlogd's files in
 * the container's root (lxc; svlogd rotates `current` into @<time>.s files at 1 MB).
 */
function agentLog(g: Guest): string {
  if (g.kind === 'qemu') return readFileSync(serialLog(g.vm!), 'latin1');
  const dir = join(LXC_POOL_PATH, `${g.vm}.root/upper/var/vcap/bosh/log`);
  try {
    const rotated = readdirSync(dir).filter((f) => f.startsWith('@')).sort();
    return [...rotated, 'current'].map((f) => readFileSync(join(dir, f), 'utf8')).join('');
  } catch (e) {
    return `(no agent log: ${(e as Error).message})`;
  }
}

/** A container's monit log and name-service files, as its root holds them (a failing step shows them). */
function containerFiles(g: Guest): string {
  const upper = join(LXC_POOL_PATH, `${g.vm}.root/upper`);
  return ['var/vcap/monit/monit.log', 'var/vcap/monit/svlog/current', 'etc/resolv.conf', 'etc/hosts', 'etc/hostname']
    .map((f) => {
      try {
        return `\n--- /${f} ---\n${readFileSync(join(upper, f), 'utf8').slice(-3000)}`;
      } catch (e) {
        return `\n--- /${f}: ${(e as Error).message}`;
      }
    })
    .join('');
}

/**
 * get_state after a container's reboot, asked again while the agent answers that monit
 * does not listen yet (bounded). A known gap of the lxc backend, seen with the 2025 agent
 * (docs/lxc.md, "What is not supported"): libvirt names a container's host after its
 * domain at every start, the 2025 agent sets the hostname only once (at the first boot),
 * and monit 5.2.5 does not listen until its lookup of that unknown name has given up
 * (8 s on an idle host, over 20 s under load: the agent's own retries run out).
 */
async function getStateOnceMonitListens(g: Guest): Promise<unknown> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      return await g.client.getState();
    } catch (e) {
      if (!(e instanceof AgentError) || !/Sending status request to monit: .*connection refused/.test(e.message) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
}

/** Runs a check; on failure the guest's log tail goes into the error. */
async function inGuest<T>(g: Guest, check: () => Promise<T> | T): Promise<T> {
  try {
    return await check();
  } catch (e) {
    const tail = g.vm ? (g.kind === 'qemu' ? consoleLog(g.vm) : agentLog(g).slice(-6000) + containerFiles(g)) : '(no VM)';
    (e as Error).message += `\n--- ${g.label} (${g.vm ?? 'not created'}) log tail ---\n${tail}`;
    throw e;
  }
}

/** ping from the host until one answer (async: the guests' stories run side by side). */
async function pingHost(address: string, timeoutMs: number): Promise<void> {
  const family = address.includes(':') ? '-6' : '-4';
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      await execFileAsync('ping', [family, '-c', '1', '-W', '2', address]);
      return;
    } catch (e) {
      const r = e as { stdout?: string; stderr?: string };
      last = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
  throw new Error(`${address} did not answer ping ${family} from the host in ${timeoutMs} ms: ${last.trim()}`);
}

interface Vitals { disk?: { system?: unknown; ephemeral?: unknown; persistent?: unknown } }
const vitals = async (g: Guest): Promise<Vitals> => ((await g.client.getState(['full'])) as { vitals?: Vitals }).vitals ?? {};

async function createGuest(g: Guest): Promise<void> {
  const t0 = Date.now();
  const sc = stemcells.get(g.agent.path)!;
  const env = { bosh: { mbus: { cert }, ipv6: { enable: true }, swap_size: 0 } };
  const props = g.kind === 'qemu' ? { machine: g.machine, ram: 512, ephemeral_disk: { size: 1024 } } : {};
  const [vm] = (await cpi(g.kind === 'qemu' ? qemuConfig : lxcConfig, 'create_vm', [g.agentId, g.kind === 'qemu' ? sc.qemu : sc.lxc, props, dualHomed(g.host), [], env], {
    context: { vm: { stemcell: { api_version: 3 } } },
  })) as [string, Networks];
  g.vm = vm;
  await g.client.waitForPing(BOOT_TIMEOUT_MS);
  mark(`${g.label}: create_vm to the agent's first pong`, t0);
}

/**
 * One guest's steps, run in order; returns each step's outcome. A step whose
 * precondition failed (the boot, or the mount for the steps on that disk) is reported
 * as not run, naming why.
 */
function story(g: Guest): Record<Step, Promise<void>> {
  const done = {} as Record<Step, { resolve: () => void; reject: (e: unknown) => void }>;
  const steps = {} as Record<Step, Promise<void>>;
  for (const s of STEPS) {
    steps[s] = new Promise<void>((resolve, reject) => (done[s] = { resolve, reject }));
    steps[s].catch(() => undefined); // reported by the step's own test
  }
  const config = (): string => (g.kind === 'qemu' ? qemuConfig : lxcConfig);
  const disk: { cid?: string; mountLog?: string } = {};
  const failed = new Map<Step, string>();
  const run = async (step: Step, needs: Step[], body: () => Promise<void> | void): Promise<void> => {
    const missing = needs.find((n) => failed.has(n));
    if (missing) {
      failed.set(step, `not run: ${missing} failed`);
      return done[step].reject(new Error(`${g.label}: not run, because "${titles[missing]}" failed: ${failed.get(missing)}`));
    }
    try {
      await inGuest(g, body);
      done[step].resolve();
    } catch (e) {
      failed.set(step, (e as Error).message.split('\n')[0]!);
      done[step].reject(e);
    }
  };
  const titles: Record<Step, string> = { boot: 'boot', dualHomed: 'dual-homed', ephemeral: 'ephemeral disk', mount: 'mount_disk', byId: 'by ID', reboot: 'reboot_vm', detach: 'detach' };
  void (async () => {
    await run('boot', [], async () => {
      await createGuest(g);
      const state = (await g.client.getState()) as { agent_id?: string };
      expect(state.agent_id).toBe(g.agentId);
    });
    await run('dualHomed', ['boot'], async () => {
      await pingHost(`198.18.170.${g.host}`, 60_000);
      await pingHost(`fd00:171::${g.host}`, 60_000);
    });
    await run('ephemeral', ['boot'], async () => {
      const v = await vitals(g);
      expect(v.disk?.ephemeral, `/var/vcap/data is not mounted; vitals: ${JSON.stringify(v)}`).toBeDefined();
    });
    await run('mount', ['boot'], async () => {
      const t0 = Date.now();
      disk.cid = (await cpi(config(), 'create_disk', [256, {}, g.vm])) as string;
      const hint = await cpi(config(), 'attach_disk', [g.vm, disk.cid]);
      await g.client.run('add_persistent_disk', [disk.cid, hint]);
      const before = agentLog(g).length;
      await g.client.run('mount_disk', [disk.cid]);
      disk.mountLog = agentLog(g).slice(before);
      const v = await vitals(g);
      expect(v.disk?.persistent, `/var/vcap/store is not mounted; vitals: ${JSON.stringify(v)}`).toBeDefined();
      mark(`${g.label}: create_disk to mounted`, t0);
    });
    if (g.kind === 'qemu') {
      await run('byId', ['mount'], () => {
        const cid = disk.cid!;
        const byId = new RegExp(`Resolved disk \\{ID:${cid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*by ID as '/dev/`);
        expect(
          byId.test(disk.mountLog ?? ''),
          `the agent did not find disk ${cid} by ID: it globs /dev/disk/by-id/*<the CID's first 20 characters> ` +
            `(2023 agent) or *<the whole CID> (later agents), and udev names a virtio disk virtio-<serial> with ` +
            `at most 20 characters, so only a 20-character CID that is its disk's serial is found. The agent's lines:\n` +
            (disk.mountLog ?? '').split('\n').filter((l) => /device real path|Resolved disk|mapped resolver/.test(l)).slice(0, 12).join('\n'),
        ).toBe(true);
      });
    } else {
      done.byId.resolve();
    }
    await run('reboot', ['boot'], async () => {
      const t0 = Date.now();
      const boots = (s: string) => (s.match(g.kind === 'qemu' ? /Linux version/g : /Starting agent/g) ?? []).length;
      const bootsBefore = boots(agentLog(g));
      await cpi(config(), 'reboot_vm', [g.vm]);
      await g.client.waitForPing(BOOT_TIMEOUT_MS);
      expect(boots(agentLog(g)), 'no new boot in the log').toBeGreaterThan(bootsBefore);
      const tState = Date.now();
      const state = (await (g.kind === 'lxc' ? getStateOnceMonitListens(g) : g.client.getState())) as { agent_id?: string };
      mark(`${g.label}: get_state right after the reboot's first pong`, tState);
      expect(state.agent_id).toBe(g.agentId);
      // A VM's agent mounts its last mounted disk at boot, from the settings the CPI
      // keeps. A container's disk is a directory, which the agent's boot check (sfdisk
      // finds no partition table) leaves alone: mount_disk again, as the director does
      // when it starts an instance; it finds the disk from the settings file the CPI kept.
      if (g.kind === 'lxc' && !failed.has('mount')) await g.client.run('mount_disk', [disk.cid]);
      const v = await vitals(g);
      expect(v.disk?.ephemeral, `/var/vcap/data is not mounted; vitals: ${JSON.stringify(v)}`).toBeDefined();
      if (!failed.has('mount')) expect(v.disk?.persistent, `/var/vcap/store is not mounted; vitals: ${JSON.stringify(v)}`).toBeDefined();
      mark(`${g.label}: reboot_vm to pong`, t0);
    });
    await run('detach', ['mount', 'reboot'], async () => {
      try {
        await g.client.run('unmount_disk', [disk.cid]);
        // in a container both agents answer unmount_disk without unmounting (they look
        // for the disk's directory among `mount`'s sources, where a bind mount shows the
        // underlying file system): only a VM's disk is checked gone
        if (g.kind === 'qemu') expect((await vitals(g)).disk?.persistent, '/var/vcap/store is still mounted').toBeUndefined();
        await cpi(config(), 'detach_disk', [g.vm, disk.cid]);
        await g.client.run('remove_persistent_disk', [disk.cid]);
        expect(await cpi(config(), 'get_disks', [g.vm])).toEqual([]);
        expect(await g.client.send('ping')).toBe('pong');
      } finally {
        await cpi(config(), 'delete_disk', [disk.cid]).catch(() => undefined);
      }
    });
  })();
  return steps;
}

const describeTier = resolution.ok ? describe : describe.skip;

describeTier('Level 1: the real BOSH agent (qemu pc and q35, lxc)', () => {
  beforeAll(async () => {
    requireBundle();
    cleanupPrefix(PREFIX);
    cleanupLxc();
    defineIsolatedNetwork(NET4, 't-ra-br4', 170);
    defineIsolatedNetwork(NET6, 't-ra-br6', 171);
    ({ path: qemuConfig } = testConfig({ prefix: PREFIX, overrides: { vm: { ram: 512, ephemeral_disk_size: 1024, reboot_timeout_seconds: 30 } } }));
    const lxcBase = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')) as Record<string, unknown>;
    lxcConfig = writeConfig({ ...lxcBase, name_prefix: LXC_PREFIX, storage: { pool: LXC_POOL, path: LXC_POOL_PATH, create_pool: true }, network: { name: NET4 } });
    cert = makeMbusCert(scratchDir('t-ra-cert-'));

    // one stemcell pair per agent, uploaded to both backends
    for (const agent of agents) {
      let t0 = Date.now();
      const built = await buildRealStemcell(agent.path, monit);
      mark(`build (or cache hit) of the stemcells around ${agent.label}`, t0);
      t0 = Date.now();
      const q = unpackStemcellImage(built.openstackQcow2, scratchDir('t-ra-sc-'));
      expect(q.manifest).toMatch(/stemcell_formats:\n- openstack-qcow2/);
      const qemu = (await cpi(qemuConfig, 'create_stemcell', [q.image, { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }])) as string;
      const w = unpackStemcellImage(built.wardenTar, scratchDir('t-ra-sc-'));
      expect(w.manifest).toMatch(/stemcell_formats:\n- warden-tar/);
      const lxc = (await cpi(lxcConfig, 'create_stemcell', [w.image, { name: built.info.name, version: built.info.version, infrastructure: 'warden', disk_format: 'files' }])) as string;
      stemcells.set(agent.path, { qemu, lxc });
      mark(`create_stemcell (qemu and lxc) for ${agent.label}`, t0);
    }

    let host = 10;
    for (const agent of agents) {
      for (const machine of ['pc', 'q35'] as const) {
        const h = host++;
        guests.push({ kind: 'qemu', label: `qemu ${machine}, agent ${agent.label}`, agent, machine, agentId: `agent-${machine}-${agent.label}`, host: h, client: new AgentClient(`198.18.170.${h}`, cert) });
      }
      const h = host++;
      guests.push({ kind: 'lxc', label: `lxc, agent ${agent.label}`, agent, agentId: `agent-lxc-${agent.label}`, host: h, client: new AgentClient(`198.18.170.${h}`, cert) });
    }
    // every guest's story runs at once (the TCG boots and reboots overlap); each block
    // below reports its guest's steps
    for (const g of guests) if (KINDS.includes(g.kind)) g.steps = story(g);
  }, 3_600_000);

  afterAll(() => {
    cleanupPrefix(PREFIX);
    cleanupLxc();
    removeNetwork(NET4);
    removeNetwork(NET6);
    console.log(`[real-agent] timings (the tier: ${Math.round((Date.now() - started) / 1000)} s):\n  ${timings.join('\n  ')}`);
  }, 300_000);

  // one block per guest, in the order the guests were listed
  const labels: [string, number][] = [];
  let i = 0;
  for (const agent of agents) {
    labels.push([`qemu pc, agent ${agent.label}`, i++], [`qemu q35, agent ${agent.label}`, i++], [`lxc, agent ${agent.label}`, i++]);
  }

  const titles: Record<Step, string> = {
    boot: "boots; the agent loaded the CPI's settings (agent_id over its mbus)",
    dualHomed: 'is dual-homed: the IPv4 and the IPv6 address both answer ping from the host',
    ephemeral: "has its ephemeral disk mounted (/var/vcap/data in the agent's vitals)",
    mount: 'mounts a persistent disk: create_disk, attach_disk, add_persistent_disk, mount_disk',
    byId: "mount_disk found the disk by its ID (/dev/disk/by-id), as the agent's log says",
    reboot: 'reboot_vm: the agent answers again, the ephemeral and the persistent disk mounted again (lxc: after mount_disk)',
    detach: 'unmount_disk, detach_disk, remove_persistent_disk: the disk is gone from the VM',
  };
  for (const [label, index] of labels) {
    if (!KINDS.includes(label.startsWith('lxc') ? 'lxc' : 'qemu')) continue;
    describe(label, () => {
      for (const step of STEPS) {
        if (step === 'byId' && label.startsWith('lxc')) continue; // directories, no IDs
        it(titles[step], () => guests[index]!.steps![step], 3_600_000);
      }
    });
  }
});

// Without the tools, one skipped test whose name says why (and the warning above).
if (!resolution.ok) it.skip(`Level 1 (real BOSH agent) skipped: ${resolution.reason}`, () => undefined);
