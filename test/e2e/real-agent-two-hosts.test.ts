// Level 1 over two libvirt hosts: the REAL BOSH agent mounts a persistent disk on one
// host, the director's order takes it off (unmount_disk, detach_disk,
// remove_persistent_disk), and attach_disk for a VM on the other host moves it there;
// that VM's agent finds it by ID and mounts it (add_persistent_disk, mount_disk), already
// partitioned and formatted: the bytes the first agent wrote came along. One agent (the
// newest found) to spare the CPU; the single-host tier (real-agent.test.ts) runs both.
// The hosts are this machine's libvirtd and the second one (scripts/second-libvirtd.sh).
// Skipped, with the reason printed, when the tools are absent.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { requireBundle, ROOT, writeConfig } from '../helpers/cpi.js';
import { cpi, defineIsolatedNetwork, removeNetwork } from '../helpers/driver-fixtures.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { requireSecondDaemon, SECOND_DIR, SECOND_URI } from '../helpers/second-daemon.js';
import { AgentClient, makeMbusCert } from '../helpers/agent-mbus.js';
import { buildRealStemcell, resolveRealTools, unpackStemcellImage } from '../helpers/real-tools.js';
import { scratchDir } from '../helpers/scratch.js';
import { serialLog } from '../helpers/stemcell.js';

const PREFIX = 't-rh-';
const POOL = `${PREFIX}pool`;
const PATH_A = `/var/tmp/${PREFIX}pool-a`;
const PATH_B = `/var/tmp/${PREFIX}pool-b`;
const NET = `${PREFIX}net`;
const FIRST = 'qemu:///system';
const BOOT_TIMEOUT_MS = 600_000;

const resolution = resolveRealTools();
if (!resolution.ok) console.warn(`[real-agent-two-hosts] SKIPPED: ${resolution.reason}`);

const virshOn = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
function cleanup(uri: string, path: string): void {
  for (const d of virshOn(uri, 'list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX))) {
    virshOn(uri, 'destroy', d);
    virshOn(uri, 'undefine', d, '--nvram');
  }
  for (const v of virshOn(uri, 'vol-list', POOL).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((n) => n.startsWith(PREFIX))) virshOn(uri, 'vol-delete', v, '--pool', POOL);
  virshOn(uri, 'pool-destroy', POOL);
  virshOn(uri, 'pool-undefine', POOL);
  rmSync(path, { recursive: true, force: true });
}

/** A VM's serial console log: the second daemon keeps its logs under its own directory. */
const consoleFile = (vm: string): string => {
  const [name, host] = vm.split('@') as [string, string];
  return host === 'host-b' ? join(SECOND_DIR, 'log/qemu', `${name}-console.log`) : serialLog(name);
};
const consoleTail = (vm: string): string => {
  try {
    return readFileSync(consoleFile(vm), 'latin1').slice(-5000);
  } catch (e) {
    return `(no console log: ${(e as Error).message})`;
  }
};

/** A failure message with both guests' console tails. */
async function inGuests<T>(vms: string[], check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (e) {
    for (const vm of vms) (e as Error).message += `\n--- console of ${vm} ---\n${consoleTail(vm)}`;
    throw e;
  }
}

if (!resolution.ok) it.skip(`Level 1 over two hosts skipped: ${resolution.reason}`, () => undefined);
else {
  let config = '';
  beforeAll(() => {
    requireBundle();
    requireDaemon();
    requireSecondDaemon();
    cleanup(FIRST, PATH_A);
    cleanup(SECOND_URI, PATH_B);
    defineIsolatedNetwork(NET, 't-rh-br0', 172);
    const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')) as Record<string, unknown>;
    config = writeConfig({
      ...base,
      name_prefix: PREFIX,
      storage: { pool: POOL, path: PATH_A, create_pool: true },
      network: { name: NET, model: 'virtio' },
      // host-b's own isolated network (scripts/second-libvirtd.sh): 198.18.231.0/24
      hosts: [{ name: 'host-a' }, { name: 'host-b', libvirt: { uri: SECOND_URI }, storage: { path: PATH_B }, network: { name: 'bosh-cpi' } }],
      vm: { ...(base.vm as object), ram: 512, ephemeral_disk_size: 1024, reboot_timeout_seconds: 30 },
    });
  });

  afterAll(() => {
    cleanup(FIRST, PATH_A);
    cleanup(SECOND_URI, PATH_B);
    removeNetwork(NET);
  }, 300_000);

  it('a disk the agent mounted on host-a is moved by attach_disk and mounted by the agent on host-b', async () => {
    const { tools } = resolution;
    const agent = tools.agents[tools.agents.length - 1]!;
    const built = await buildRealStemcell(agent.path, tools.monit);
    const sc = unpackStemcellImage(built.openstackQcow2, scratchDir('t-rh-sc-'));
    const stemcell = (await cpi(config, 'create_stemcell', [sc.image, { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }])) as string;
    const cert = makeMbusCert(scratchDir('t-rh-cert-'));
    const env = { bosh: { mbus: { cert }, swap_size: 0 } };
    const net = (subnet: number, host: number, name: string) => ({
      default: { type: 'manual', ip: `198.18.${subnet}.${host}`, netmask: '255.255.255.0', gateway: `198.18.${subnet}.1`, dns: [], default: ['dns', 'gateway'], cloud_properties: { name } },
    });
    const ctx = { context: { vm: { stemcell: { api_version: 3 } } } };
    // both boot at once
    const [[vmA], [vmB]] = (await Promise.all([
      cpi(config, 'create_vm', ['agent-rh-a', stemcell, { host: 'host-a' }, net(172, 10, NET), [], env], ctx),
      cpi(config, 'create_vm', ['agent-rh-b', stemcell, { host: 'host-b' }, net(231, 60, 'bosh-cpi'), [], env], ctx),
    ])) as [[string], [string]];
    expect(vmA).toMatch(/@host-a$/);
    expect(vmB).toMatch(/@host-b$/);
    const a = new AgentClient('198.18.172.10', cert);
    const b = new AgentClient('198.18.231.60', cert);

    await inGuests([vmA, vmB], async () => {
      await Promise.all([a.waitForPing(BOOT_TIMEOUT_MS), b.waitForPing(BOOT_TIMEOUT_MS)]);
      const disk = (await cpi(config, 'create_disk', [256, { host: 'host-a' }, vmA])) as string;
      // on host-a: the agent partitions, formats and mounts it
      const hintA = await cpi(config, 'attach_disk', [vmA, disk]);
      await a.run('add_persistent_disk', [disk, hintA]);
      await a.run('mount_disk', [disk]);
      expect(((await a.getState(['full'])) as { vitals: { disk: { persistent?: unknown } } }).vitals.disk.persistent).toBeDefined();
      await a.run('unmount_disk', [disk]);
      await cpi(config, 'detach_disk', [vmA, disk]);
      await a.run('remove_persistent_disk', [disk]);

      // on host-b: attach_disk moves it; the agent finds the partition and file system
      const logB = consoleFile(vmB);
      const hintB = await cpi(config, 'attach_disk', [vmB, disk]);
      expect(virshOn(SECOND_URI, 'vol-list', POOL).stdout).toContain(disk.split('@')[0]!);
      await b.run('add_persistent_disk', [disk, hintB]);
      const before = readFileSync(logB, 'latin1').length;
      await b.run('mount_disk', [disk]);
      const mountLog = readFileSync(logB, 'latin1').slice(before);
      expect(((await b.getState(['full'])) as { vitals: { disk: { persistent?: unknown } } }).vitals.disk.persistent).toBeDefined();
      // partitioned and formatted on host-a: host-b's agent does neither again (its log
      // shows `parted -s <dev> mklabel gpt` and `mke2fs` when it does)
      // the moved disk keeps its CID and serial: found by ID on host-b too
      expect(mountLog, `the agent on host-b did not find ${disk} by ID`).toMatch(new RegExp(`Resolved disk \\{ID:${disk} .*by ID as '/dev/`));
      expect(mountLog, 'the agent on host-b mounted the disk').toMatch(/Running command 'mount \/dev\/\S+ \/var\/vcap\/store'/);
      expect(mountLog, 'the agent on host-b partitioned or formatted the moved disk again').not.toMatch(/Running command '(mke2fs|mkfs|parted -s \S+ mklabel)/);
      await b.run('unmount_disk', [disk]);
      await cpi(config, 'detach_disk', [vmB, disk]);
      await b.run('remove_persistent_disk', [disk]);
      await cpi(config, 'delete_disk', [disk]);
    });
    await Promise.all([cpi(config, 'delete_vm', [vmA]), cpi(config, 'delete_vm', [vmB])]);
    await cpi(config, 'delete_stemcell', [stemcell]);
  }, 1_800_000);
}
