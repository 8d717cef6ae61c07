// Proof in a real guest: the project's test stemcell boots under TCG and its test agent
// (behaving like the BOSH agent where a CPI is concerned) reports what it found. Every
// assertion here is about what the guest saw, not what libvirt holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, leftovers, removeNetwork, testConfig } from '../helpers/driver-fixtures.js';
import { AGENT_ID_RULES, agentUrl, buildTestStemcell, fetchGuestReport, inGuest, readGuestReport, resolveGuestDisk, serialLog, waitForGuestSerial, type GuestReport } from '../helpers/stemcell.js';
import { randomUUID } from 'node:crypto';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-e2e-';
const NET = 't-e2e-net';
const BOOT_TIMEOUT_MS = 180_000;

let config: string;
let pool: string;
let stemcell: string;
const vms: string[] = [];

type Networks = Record<string, Record<string, unknown>>;

const v4 = (host: number, extra: Record<string, unknown> = {}) => ({
  type: 'manual', ip: `198.18.52.${host}`, netmask: '255.255.255.0', gateway: '198.18.52.1', dns: ['198.18.52.1'], default: ['dns', 'gateway'], cloud_properties: { name: NET }, ...extra,
});
// The director's expanded spelling on purpose: the CPI must not depend on it.
const v6 = (host: number, extra: Record<string, unknown> = {}) => ({
  type: 'manual', ip: `fd00:0052:0000:0000:0000:0000:0000:00${host}`, netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', gateway: 'fd00:52::1', default: ['gateway'], cloud_properties: { name: NET }, ...extra,
});


async function createVM(agent: string, networks: Networks, props: Record<string, unknown> = {}): Promise<[string, Networks]> {
  const res = (await cpi(config, 'create_vm', [agent, stemcell, props, networks, [], { bosh: { ipv6: { enable: true } } }], { context: { vm: { stemcell: { api_version: 3 } } } })) as [string, Networks];
  vms.push(res[0]);
  return res;
}

/**
 * Runs a disk check; whatever happens, the disk ends detached and deleted, so a failed
 * check leaves nothing behind for the later tests (and delete_vm's) to trip over.
 */
async function withDisk(vm: string, disk: string, check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } finally {
    if (((await cpi(config, 'get_disks', [vm]).catch(() => [])) as string[]).includes(disk)) await cpi(config, 'detach_disk', [vm, disk]).catch(() => undefined);
    await cpi(config, 'delete_disk', [disk]).catch(() => undefined);
  }
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-e2e-br0', 52);
  ({ path: config, pool } = testConfig({ prefix: PREFIX, network: NET, overrides: {} }));
  const tarball = await buildTestStemcell();
  const dir = scratchDir('t-e2e-sc-');
  execFileSync('tar', ['-xzf', tarball, '-C', dir, 'image', 'stemcell.MF']);
  const manifest = readFileSync(join(dir, 'stemcell.MF'), 'utf8');
  expect(manifest).toMatch(/api_version: 3/);
  stemcell = (await cpi(config, 'create_stemcell', [join(dir, 'image'), { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }, { tags: { e2e: 'true' } }])) as string;
}, 900_000);

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
});

describe('a dual-homed guest: an IPv4 and an IPv6 network without nic_group, one NIC each', () => {
  let vm: string;
  let nets: Networks;
  let report: GuestReport;

  beforeAll(async () => {
    [vm, nets] = await createVM('agent-v4', { private: v4(10), private6: v6(10) });
    report = await inGuest(vm, () => readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS));
  }, BOOT_TIMEOUT_MS + 60_000);

  it('reads the config drive: agent id, instance id, no errors', () =>
    inGuest(vm, () => {
      expect(report.errors).toEqual([]);
      expect(report.agent_id).toBe('agent-v4');
      expect(report['instance-id']).toBe(vm);
      expect(report.config_drive).toBeTruthy();
    }));

  it('gives each network its own NIC (the agents take one network per NIC) and configures it', () =>
    inGuest(vm, () => {
      expect(nets.private!.mac).not.toBe(nets.private6!.mac);
      expect(report.nics).toHaveLength(2);
      const n = report.networks.private!;
      const n6 = report.networks.private6!;
      expect(n.mode).toBe('static');
      expect(n.mac).toBe(nets.private!.mac);
      expect(report.nics.find((i) => i.name === n.iface)?.mac).toBe(nets.private!.mac);
      expect(report.nics.find((i) => i.name === n6.iface)?.mac).toBe(nets.private6!.mac);
      expect(n6.iface).not.toBe(n.iface);
      expect(n.addresses).toEqual(['198.18.52.10/24']);
      expect(n6.addresses).toEqual(['fd00:52::10/64']);
      expect(report.routes.ipv4.some((r) => r.startsWith('default via 198.18.52.1'))).toBe(true);
      expect(report.dns).toContain('198.18.52.1');
    }));

  it('finds the ephemeral disk by its path hint (it has no CID, so the agent\'s ID lookup fails at once)', () =>
    inGuest(vm, () => {
      expect(report.disks.system.device).toBe('/dev/vda');
      expect(report.disks.ephemeral).toMatchObject({ resolved_by: 'path', device: '/dev/vdb' });
    }));

  it('is reachable from the host over the isolated bridge, on both NICs', () =>
    inGuest(vm, async () => {
      expect((await fetchGuestReport(agentUrl('198.18.52.10'))).agent_id).toBe('agent-v4');
      expect((await fetchGuestReport(agentUrl('fd00:52::10'))).agent_id).toBe('agent-v4');
    }));
});

describe('a dual-stack guest (one NIC group) with a persistent disk and a reboot', () => {
  let vm: string;
  let nets: Networks;
  let report: GuestReport;

  beforeAll(async () => {
    [vm, nets] = await createVM('agent-ds', { ipv4: v4(11, { nic_group: 'ds' }), ipv6: v6(11, { nic_group: 'ds' }) });
    report = await inGuest(vm, () => readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS));
  }, BOOT_TIMEOUT_MS + 60_000);

  it('puts both networks on one NIC with one MAC, and returns the director\'s spelling', () => {
    expect(nets.ipv4!.mac).toBe(nets.ipv6!.mac);
    expect(nets.ipv6!.ip).toBe('fd00:0052:0000:0000:0000:0000:0000:0011');
  });

  it('configures both addresses and both default routes on that NIC', () =>
    inGuest(vm, () => {
      expect(report.errors).toEqual([]);
      const a = report.networks.ipv4!;
      const b = report.networks.ipv6!;
      expect(a.iface).toBeTruthy();
      expect(b.iface).toBe(a.iface);
      expect(a.addresses).toEqual(expect.arrayContaining(['198.18.52.11/24', 'fd00:52::11/64']));
      expect(report.routes.ipv4.some((r) => r.startsWith('default via 198.18.52.1'))).toBe(true);
      expect(report.routes.ipv6.some((r) => r.startsWith('default via fd00:52::1'))).toBe(true);
    }));

  it('answers the host over IPv4 and IPv6', () =>
    inGuest(vm, async () => {
      expect((await fetchGuestReport(agentUrl('198.18.52.11'))).agent_id).toBe('agent-ds');
      expect((await fetchGuestReport(agentUrl('fd00:52::11'))).agent_id).toBe('agent-ds');
    }));

  it('sees a disk attached while running by its CID, with both agent generations\' ID rules, and loses it on a live detach', () =>
    inGuest(vm, async () => {
      const disk = (await cpi(config, 'create_disk', [32, {}, vm])) as string;
      await withDisk(vm, disk, async () => {
        // 20 characters and its own serial: what both agents' ID lookups find
        expect(disk).toHaveLength(20);
        const hint = (await cpi(config, 'attach_disk', [vm, disk])) as { id: string; path: string };
        expect(hint.id).toBe(disk);
        const base = agentUrl('198.18.52.11');
        expect(await waitForGuestSerial(base, disk)).toBe(true);
        for (const rule of AGENT_ID_RULES) {
          expect({ rule, seen: await resolveGuestDisk(base, { cid: disk, path: hint.path, rule }) }).toEqual({ rule, seen: { resolved_by: 'id', device: hint.path, size_bytes: 32 * 1024 * 1024 } });
        }
        await cpi(config, 'detach_disk', [vm, disk]);
        expect(await resolveGuestDisk(base, { cid: disk, path: hint.path })).toBeNull();
        expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      });
    }));

  it('still serves a disk with a CID from before (disk-<uuid>): found by its exact path hint, then deleted', () =>
    inGuest(vm, async () => {
      // made as an earlier release of the CPI made disks
      const disk = `${PREFIX}disk-${randomUUID()}`;
      execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'vol-create-as', pool, disk, '16M', '--format', 'qcow2'], { stdio: 'ignore' });
      await withDisk(vm, disk, async () => {
        const hint = (await cpi(config, 'attach_disk', [vm, disk])) as { id: string; path: string };
        const serial = disk.slice(-36).replace(/-/g, '').slice(0, 20);
        expect(hint.id).toBe(serial);
        const base = agentUrl('198.18.52.11');
        expect(await waitForGuestSerial(base, serial)).toBe(true);
        // Longer than any serial: neither agent's ID lookup can match it, the path must be exact.
        for (const rule of AGENT_ID_RULES) {
          expect({ rule, seen: await resolveGuestDisk(base, { cid: disk, path: hint.path, rule }) }).toEqual({ rule, seen: { resolved_by: 'path', device: hint.path, size_bytes: 16 * 1024 * 1024 } });
        }
        const r = await fetchGuestReport(base);
        expect(r.block_devices).toContainEqual({ name: hint.path.slice('/dev/'.length), serial, size_bytes: 16 * 1024 * 1024 });
        await cpi(config, 'detach_disk', [vm, disk]);
        expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      });
      expect(await cpi(config, 'has_disk', [disk])).toBe(false);
    }));

  it('comes back with the same settings after reboot_vm', () =>
    inGuest(vm, async () => {
      await cpi(config, 'reboot_vm', [vm]);
      const again = await readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS, 2);
      expect(again.boot_id).not.toBe(report.boot_id);
      expect(again.errors).toEqual([]);
      expect(again.networks.ipv4!.addresses).toEqual(expect.arrayContaining(['198.18.52.11/24', 'fd00:52::11/64']));
      expect(again.disks.ephemeral).toMatchObject({ resolved_by: 'path', device: '/dev/vdb' });
    }), BOOT_TIMEOUT_MS + 60_000);
});

describe('a dual-stack guest with a delegated IPv6 prefix (RFC-0038)', () => {
  let vm: string;
  let nets: Networks;
  let report: GuestReport;
  // Outside the bridge's /64: delivered by a host route via the VM's address, which the
  // libvirt hook (scripts/libvirt-hook-qemu) installs when the domain starts.
  const prefixNet = { type: 'manual', ip: 'fd00:5200:1::', prefix: '80', netmask: 'ffff:ffff:ffff:ffff:ffff:0000:0000:0000', nic_group: 'pd', cloud_properties: { name: NET } };

  beforeAll(async () => {
    [vm, nets] = await createVM('agent-pd', { ipv4: v4(12, { nic_group: 'pd' }), ipv6: v6(12, { nic_group: 'pd' }), delegated: prefixNet });
    report = await inGuest(vm, () => readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS));
  }, BOOT_TIMEOUT_MS + 60_000);

  it('gives the prefix network no MAC, so the agent does not configure it', () => {
    expect(nets.delegated!.mac).toBeUndefined();
    expect(nets.ipv4!.mac).toBe(nets.ipv6!.mac);
  });

  it('the guest leaves the prefix alone but proves delivery with one address from it', () =>
    inGuest(vm, () => {
      expect(report.errors).toEqual([]);
      expect(report.prefix_addresses).toHaveLength(1);
      expect(report.prefix_addresses[0]!.address.startsWith('fd00:5200:1::')).toBe(true);
    }));

  it('the host routes the prefix to the VM and reaches that address', () =>
    inGuest(vm, async () => {
      const route = execFileSync('ip', ['-6', 'route', 'show', 'fd00:5200:1::/80'], { encoding: 'utf8' });
      expect(route).toContain('via fd00:52::12');
      const addr = report.prefix_addresses[0]!.address.split('/')[0]!;
      expect((await fetchGuestReport(agentUrl(addr))).agent_id).toBe('agent-pd');
    }));
});

describe('delete_vm', () => {
  it('removes every VM and everything it owned; the stemcell goes last', async () => {
    await Promise.all(vms.map((vm) => cpi(config, 'delete_vm', [vm])));
    expect(leftovers(PREFIX).filter((n) => !n.startsWith(stemcell))).toEqual([]);
    expect(execFileSync('ip', ['-6', 'route', 'show', 'fd00:5200:1::/80'], { encoding: 'utf8' }).trim()).toBe('');
    await cpi(config, 'delete_stemcell', [stemcell]);
    expect(leftovers(PREFIX)).toEqual([]);
  });
});
