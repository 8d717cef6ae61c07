// Proof in real containers (lxc:///): the container test stemcell (a busybox root
// filesystem with the project's test agent, fixtures/stemcell/build-container.sh) goes
// through bin/cpi as a warden-tar stemcell, and the agent inside each container reports
// what it found: its settings file, the addresses and default routes libvirt set, the
// delegated prefix the host routes to it, and the files of its persistent disk, which
// must survive detach and attach to a second container, and delete_vm.
// The report is a file the agent keeps in its root filesystem, read on the host from
// the VM's overlay upper directory (and once over HTTP through the delegated prefix).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle, ROOT, writeConfig } from '../helpers/cpi.js';
import { cpi, cpiError, defineIsolatedNetwork, removeNetwork } from '../helpers/driver-fixtures.js';
import { orphansCli } from '../helpers/crash.js';
import { agentUrl, buildContainerStemcell, CONTAINER_REPORT_FILE, CONTAINER_SETTINGS_FILE, fetchGuestReport, readContainerReport, type ContainerReport } from '../helpers/stemcell.js';

const PREFIX = 'lxcr-e2e-';
const POOL = `${PREFIX}pool`;
const POOL_PATH = `/var/tmp/${POOL}`;
const NET = 'lxcr-net';
const REPORT_TIMEOUT_MS = 60_000;

type Networks = Record<string, Record<string, unknown>>;

const virsh = (uri: string, ...args: string[]): string => {
  try {
    return execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', stdio: 'pipe' });
  } catch {
    return '';
  }
};
const containers = (): string[] =>
  virsh('lxc:///', 'list', '--all', '--name')
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s.startsWith(PREFIX));

/** Every container, the pool and its directory of this test. */
function cleanup(): void {
  for (const name of containers()) {
    virsh('lxc:///', 'destroy', name);
    virsh('lxc:///', 'undefine', name);
  }
  virsh('qemu:///system', 'pool-destroy', POOL);
  virsh('qemu:///system', 'pool-undefine', POOL);
  rmSync(POOL_PATH, { recursive: true, force: true });
}

let config = '';
let stemcell = '';

const v4 = (host: number, extra: Record<string, unknown> = {}) => ({
  type: 'manual', ip: `198.18.210.${host}`, netmask: '255.255.255.0', gateway: '198.18.210.1', dns: ['198.18.210.1'], default: ['dns', 'gateway'], cloud_properties: {}, ...extra,
});
const v6 = (host: number, extra: Record<string, unknown> = {}) => ({
  type: 'manual', ip: `fd00:0210:0000:0000:0000:0000:0000:00${host}`, netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', gateway: 'fd00:210::1', default: ['gateway'], cloud_properties: {}, ...extra,
});
// Outside the bridge's /64: delivered by a host route via the container's address,
// which the lxc hook (through the qemu hook's logic) installs when it starts.
const prefixNet = { type: 'manual', ip: 'fd00:211::', prefix: '64', netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', nic_group: 'pd', cloud_properties: {} };

const reportPath = (vm: string): string => join(POOL_PATH, `${vm}.root/upper`, CONTAINER_REPORT_FILE);
const report = (vm: string, ready?: (r: ContainerReport) => boolean) => readContainerReport(reportPath(vm), REPORT_TIMEOUT_MS, ready);

async function createVM(agent: string, networks: Networks): Promise<[string, Networks]> {
  return (await cpi(config, 'create_vm', [agent, stemcell, {}, networks, [], { bosh: { ipv6: { enable: true } } }], { context: { vm: { stemcell: { api_version: 3 } } } })) as [string, Networks];
}

beforeAll(async () => {
  requireBundle();
  cleanup();
  defineIsolatedNetwork(NET, 'lxcr0', 210);
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')) as Record<string, unknown>;
  config = writeConfig({ ...base, name_prefix: PREFIX, storage: { pool: POOL, path: POOL_PATH, create_pool: true }, network: { name: NET }, vm: { ...(base.vm as object), reboot_timeout_seconds: 10 } });
  const built = await buildContainerStemcell();
  const manifest = execFileSync('tar', ['-xzOf', built.tarball, 'stemcell.MF'], { encoding: 'utf8' });
  expect(manifest).toMatch(/stemcell_formats:\n- warden-tar/);
  stemcell = (await cpi(config, 'create_stemcell', [built.rootfs_tgz, { name: built.name, version: built.version, infrastructure: 'warden', disk_format: 'files' }, { tags: { e2e: 'lxc' } }])) as string;
}, 600_000);

afterAll(() => {
  cleanup();
  removeNetwork(NET);
});

describe('what a failed or abandoned create_vm leaves', () => {
  const volumes = (): string[] => {
    virsh('qemu:///system', 'pool-refresh', POOL);
    return virsh('qemu:///system', 'vol-list', POOL)
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0] ?? '')
      .filter((n) => n.startsWith(`${PREFIX}vm-`));
  };

  it('a failure after the container started is undone: domain, root overlay, directories', async () => {
    const run = await cpiError(config, 'create_vm', ['agent-fail', stemcell, {}, { ipv4: v4(20) }, [], {}], { env: { BOSH_LIBVIRT_CPI_FAULTS: 'create_vm:after-start' } });
    expect(run).toMatchObject({ type: 'Bosh::Clouds::VMCreationFailed', message: expect.stringMatching(/removed .*\.root/) });
    expect(containers()).toEqual([]);
    expect(volumes()).toEqual([]);
  });

  it('a VM whose domain is gone (a killed create_vm): orphans --delete removes its non-empty directories, keeping an attached disk\'s data', async () => {
    const [vm] = await createVM('agent-orphan', { ipv4: v4(21) });
    await report(vm);
    const disk = (await cpi(config, 'create_disk', [16, {}, null])) as string;
    await cpi(config, 'attach_disk', [vm, disk]);
    writeFileSync(join(POOL_PATH, `${vm}.disks`, disk, 'data'), 'persistent');
    virsh('lxc:///', 'destroy', vm);
    virsh('lxc:///', 'undefine', vm);
    expect(volumes()).toEqual([`${vm}.disks`, `${vm}.ephemeral`, `${vm}.root`]);
    const { report: found } = await orphansCli(config, ['--delete', '--min-age', '0']);
    expect(found.failed ?? []).toEqual([]);
    expect(volumes()).toEqual([]);
    // Its define might still be queued in libvirtd, so the sweep fenced the VM's name and
    // says it is not complete; the next sweep removes the fence and is (docs/crash-safety.md).
    expect((found as { complete?: boolean }).complete).toBe(false);
    expect(containers()).toEqual([vm]);
    const { report: second } = await orphansCli(config, ['--delete', '--min-age', '0']);
    expect((second as { complete?: boolean }).complete, JSON.stringify(second)).toBe(true);
    expect(containers()).toEqual([]);
    // the disk that was inside the VM's disk directory is back in the pool, data and all
    expect(readFileSync(join(POOL_PATH, disk, 'data'), 'utf8')).toBe('persistent');
    await cpi(config, 'delete_disk', [disk]);
    // the stemcell, linked from the VM's root, is untouched
    expect(existsSync(join(POOL_PATH, stemcell, 'sbin/init'))).toBe(true);
  }, REPORT_TIMEOUT_MS + 30_000);
});

describe('a dual-stack container with a delegated IPv6 prefix', () => {
  let vm = '';
  let nets: Networks;
  let r: ContainerReport;

  beforeAll(async () => {
    [vm, nets] = await createVM('agent-a', { ipv4: v4(10, { nic_group: 'pd' }), ipv6: v6(10, { nic_group: 'pd' }), delegated: prefixNet });
    r = await report(vm);
  }, REPORT_TIMEOUT_MS + 60_000);

  it('the agent reads the full settings from the warden settings file, every network preconfigured', () => {
    expect(r.errors).toEqual([]);
    expect(r.agent_id).toBe('agent-a');
    expect(r.settings_source).toBe('settings-file');
    const settings = JSON.parse(readFileSync(join(POOL_PATH, `${vm}.root/upper`, CONTAINER_SETTINGS_FILE), 'utf8'));
    expect(settings).toMatchObject({ agent_id: 'agent-a', vm: { name: vm }, disks: { system: '', persistent: {} }, env: { bosh: { ipv6: { enable: true } } } });
    expect(Object.values(settings.networks).map((n) => (n as { preconfigured?: boolean }).preconfigured)).toEqual([true, true, true]);
    expect(r.networks.ipv4!.mode).toBe('preconfigured');
    expect(r.networks.ipv6!.mode).toBe('preconfigured');
  });

  it('libvirt set both addresses and both default routes on the NIC with the planned MAC', () => {
    expect(nets.ipv4!.mac).toBe(nets.ipv6!.mac);
    expect(r.nics).toEqual([{ name: 'eth0', mac: nets.ipv4!.mac, addresses: expect.arrayContaining(['198.18.210.10/24', 'fd00:210::10/64']) }]);
    expect(r.routes.ipv4).toContain('default via 198.18.210.1 dev eth0 metric 1');
    expect(r.routes.ipv6).toContain('default via fd00:210::1 dev eth0 metric 1');
  });

  it('the host routes the delegated prefix to the container, which answers on an address from it', async () => {
    expect(r.prefix_addresses).toEqual([{ network: 'delegated', iface: 'eth0', prefix: 'fd00:211::/64', address: 'fd00:211::1/128' }]);
    expect(execFileSync('ip', ['-6', 'route', 'show', 'fd00:211::/64'], { encoding: 'utf8' })).toContain('via fd00:210::10 dev lxcr0');
    // Right after the network starts, the bridge's own IPv6 address is tentative (DAD)
    // and the route has no carrier yet; a connection tried then fails its neighbour
    // discovery and the kernel keeps answering EHOSTUNREACH for a while. Wait for both.
    const ready = () =>
      execFileSync('ip', ['-6', 'addr', 'show', 'dev', 'lxcr0', 'tentative'], { encoding: 'utf8' }).trim() === '' &&
      !execFileSync('ip', ['-6', 'route', 'show', 'fd00:211::/64'], { encoding: 'utf8' }).includes('linkdown');
    const deadline = Date.now() + 30_000;
    while (!ready() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    for (;;) {
      try {
        expect((await fetchGuestReport(agentUrl('fd00:211::1'), 5_000)).agent_id).toBe('agent-a');
        break;
      } catch (e) {
        if (Date.now() > deadline) {
          throw new Error(`${String(e)}; neighbours: ${execFileSync('ip', ['-6', 'neigh', 'show', 'dev', 'lxcr0'], { encoding: 'utf8' })}`);
        }
        await new Promise((res) => setTimeout(res, 500));
      }
    }
  }, 60_000);

  it('reboot_vm stops the container (SIGTERM to init) and starts it again on the same root', async () => {
    rmSync(reportPath(vm));
    await cpi(config, 'reboot_vm', [vm]);
    const again = await report(vm);
    expect(again.agent_id).toBe('agent-a');
    expect(again.errors).toEqual([]);
  }, REPORT_TIMEOUT_MS + 30_000);

  describe('a persistent disk (a directory) through detach and attach to a second container', () => {
    let disk = '';
    let vmB = '';

    it('attach_disk to the running container: the agent finds it at the hint path and writes into it', async () => {
      disk = (await cpi(config, 'create_disk', [64, {}, vm])) as string;
      const hint = await cpi(config, 'attach_disk', [vm, disk]);
      expect(hint).toEqual({ path: `/warden-cpi-dev/${disk}` });
      const seen = await report(vm, (x) => (x.disk_files[disk]?.['written-by'] ?? '') !== '');
      expect(seen.disks.persistent[disk]).toEqual({ hint: `/warden-cpi-dev/${disk}`, device: `/warden-cpi-dev/${disk}`, resolved_by: 'directory' });
      expect(seen.disk_files[disk]).toEqual({ 'written-by': 'agent-a' });
      expect(await cpi(config, 'get_disks', [vm])).toEqual([disk]);
      expect(await cpi(config, 'has_disk', [disk])).toBe(true);
      await cpi(config, 'set_disk_metadata', [disk, { attached: 'yes' }]);
      const err = await cpiError(config, 'delete_disk', [disk]);
      expect(err).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining(`attached to VM ${vm}`) });
    }, REPORT_TIMEOUT_MS + 30_000);

    it('detach_disk from the running container: gone from its view and its settings, still a disk', async () => {
      await cpi(config, 'detach_disk', [vm, disk]);
      const seen = await report(vm, (x) => Object.keys(x.disks.persistent).length === 0);
      expect(seen.disk_files).toEqual({});
      expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      expect(await cpi(config, 'has_disk', [disk])).toBe(true);
      expect((await cpiError(config, 'detach_disk', [vm, disk])).type).toBe('Bosh::Clouds::DiskNotAttached');
    }, REPORT_TIMEOUT_MS + 30_000);

    it('attached to a second container, the data the first one wrote is there', async () => {
      [vmB] = await createVM('agent-b', { ipv4: v4(11), ipv6: v6(11, { default: [] }) });
      await report(vmB);
      await cpi(config, 'attach_disk', [vmB, disk]);
      const seen = await report(vmB, (x) => x.disk_files[disk] !== undefined);
      expect(seen.agent_id).toBe('agent-b');
      expect(seen.disk_files[disk]).toEqual({ 'written-by': 'agent-a' });
      const err = await cpiError(config, 'attach_disk', [vm, disk]);
      expect(err.message).toContain(`attached to VM ${vmB}`);
    }, REPORT_TIMEOUT_MS + 60_000);

    it('two attach_disk calls for one disk at once (two VMs): one wins, the other names the winner', async () => {
      await cpi(config, 'detach_disk', [vmB, disk]);
      const results = await Promise.allSettled([cpi(config, 'attach_disk', [vm, disk]), cpi(config, 'attach_disk', [vmB, disk])]);
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [[vm, vmB][i]!] : []));
      expect(won).toHaveLength(1);
      const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
      expect(String(lost.reason)).toContain(`Bosh::Clouds::CloudError: Disk ${disk} is attached to VM ${won[0]}`);
      expect(await cpi(config, 'get_disks', [won[0]])).toEqual([disk]);
      if (won[0] !== vmB) {
        await cpi(config, 'detach_disk', [vm, disk]);
        await cpi(config, 'attach_disk', [vmB, disk]);
      }
    });

    it('delete_vm of the container holding it keeps the disk and its data', async () => {
      await cpi(config, 'delete_vm', [vmB]);
      expect(await cpi(config, 'has_vm', [vmB])).toBe(false);
      expect(await cpi(config, 'has_disk', [disk])).toBe(true);
      expect(readFileSync(join(POOL_PATH, disk, 'written-by'), 'utf8')).toBe('agent-a\n');
      expect(existsSync(join(POOL_PATH, `${vmB}.root`))).toBe(false);
    });

    it('everything goes: VMs, their routes, the disk, the stemcell; nothing is left', async () => {
      await cpi(config, 'delete_vm', [vm]);
      expect(execFileSync('ip', ['-6', 'route', 'show', 'fd00:211::/64'], { encoding: 'utf8' }).trim()).toBe('');
      await cpi(config, 'delete_disk', [disk]);
      expect(await cpi(config, 'has_disk', [disk])).toBe(false);
      await cpi(config, 'delete_stemcell', [stemcell]);
      expect(containers()).toEqual([]);
      virsh('qemu:///system', 'pool-refresh', POOL);
      expect(virsh('qemu:///system', 'vol-list', POOL).trim()).toBe('');
    });
  });
});
