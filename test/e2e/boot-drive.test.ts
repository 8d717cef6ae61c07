// Proof in real guests for two things a booting guest needs (issue 14, parts 2 and 3):
// the config drive reaches a kernel without AHCI (Debian's cloud kernel, as many real
// stemcells have) on both machine types, and detach_disk issued while the guest is still
// booting completes once the guest is up. Guests boot the test stemcell built on
// linux-image-cloud-amd64 under TCG; every assertion is about what the guest saw.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request, requireBundle, runCpi } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig } from '../helpers/driver-fixtures.js';
import { agentUrl, buildTestStemcell, fetchGuestReport, inGuest, parseGuestReports, readGuestReport, readStemcellInfo, resolveGuestDisk, serialLog, type GuestReport } from '../helpers/stemcell.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-boot-e2e-';
const NET = 't-boot-e2e-net';
const BOOT_TIMEOUT_MS = 180_000;
// Long enough for a TCG guest on a busy host to finish booting, which is when a detach
// issued during boot can complete.
const DETACH_TIMEOUT_S = 120;

let config: string;
let stemcell: string;

type Networks = Record<string, Record<string, unknown>>;
type Hint = { id: string; path: string };

const v4 = (host: number) => ({
  type: 'manual', ip: `198.18.140.${host}`, netmask: '255.255.255.0', gateway: '198.18.140.1', dns: ['198.18.140.1'], default: ['dns', 'gateway'], nic_group: 'ds', cloud_properties: { name: NET },
});
const v6 = (host: number) => ({
  type: 'manual', ip: `fd00:140::${host}`, netmask: 'ffff:ffff:ffff:ffff::', gateway: 'fd00:140::1', default: ['gateway'], nic_group: 'ds', cloud_properties: { name: NET },
});



async function createVM(agent: string, host: number, props: Record<string, unknown>): Promise<[string, Networks]> {
  return (await cpi(config, 'create_vm', [agent, stemcell, props, { ipv4: v4(host), ipv6: v6(host) }, [], { bosh: { ipv6: { enable: true } } }], {
    context: { vm: { stemcell: { api_version: 3 } } },
  })) as [string, Networks];
}

/**
 * Polls the guest's disk resolver until the disk resolves (a hot-plugged disk takes a
 * moment). This file's name prefix is longer than a 20-character disk CID can hold
 * (cids.ts): its disks have long CIDs, which the agent finds by the hint's path only.
 */
async function waitForGuestDisk(ip: string, disk: { cid: string; path: string }) {
  for (let i = 0; i < 60; i++) {
    const seen = await resolveGuestDisk(agentUrl(ip), disk);
    if (seen) return seen;
    await new Promise((r) => setTimeout(r, 500));
  }
  return null;
}

/**
 * detach_disk while the guest boots. Prints how long it took and how many unplug
 * requests the CPI sent (from its log): figures for the record, not assertions.
 */
async function detachDuringBoot(vm: string, disk: string): Promise<void> {
  const started = Date.now();
  const run = await runCpi(request('detach_disk', [vm, disk]), { config });
  expect(run.response.error, run.stderr.slice(-3000)).toBeNull();
  const line = run.stderr.split('\n').find((l) => l.includes('"unplug_requests"'));
  const requests = line ? (JSON.parse(line) as { unplug_requests: number }).unplug_requests : 1;
  console.log(`detach_disk during boot of ${vm}: ${Date.now() - started} ms, ${requests} unplug request(s)`);
}

/** The guest's HTTP endpoint starts right after its boot report: wait for it. */
async function guestAnswers(ip: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await fetchGuestReport(agentUrl(ip));
      return;
    } catch (e) {
      if (i >= 60) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-boot-br0', 140);
  ({ path: config } = testConfig({ prefix: PREFIX, network: NET, overrides: { vm: { detach_timeout_seconds: DETACH_TIMEOUT_S } } }));
  const tarball = await buildTestStemcell('cloud');
  // The point of this file: a kernel that has no AHCI driver at all.
  expect((await readStemcellInfo(tarball)).kernel.package).toMatch(/-cloud-amd64$/);
  const dir = scratchDir('t-boot-sc-');
  execFileSync('tar', ['-xzf', tarball, '-C', dir, 'image']);
  stemcell = (await cpi(config, 'create_stemcell', [join(dir, 'image'), { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }, {}])) as string;
}, 900_000);

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
});

// Where the guest finds the config drive: an IDE cdrom on pc, the virtio disk right
// after root (vda) and ephemeral (vdb) on q35; persistent disks follow it.
const machines = [
  { machine: 'pc', host: 10, configDrive: '/dev/sr0', firstPersistent: '/dev/vdc' },
  { machine: 'q35', host: 11, configDrive: '/dev/vdc', firstPersistent: '/dev/vdd' },
] as const;

for (const m of machines) {
  describe(`a ${m.machine} guest on the cloud kernel (no AHCI)`, () => {
    let vm: string;
    let nets: Networks;
    let report: GuestReport;
    const ip = `198.18.140.${m.host}`;

    beforeAll(async () => {
      [vm, nets] = await createVM(`agent-boot-${m.machine}`, m.host, { machine: m.machine });
      report = await inGuest(vm, () => readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS));
    }, BOOT_TIMEOUT_MS + 60_000);

    it('reads its settings from the config drive: agent id, instance id, addresses, no errors', () =>
      inGuest(vm, () => {
        expect(report.errors).toEqual([]);
        expect(report.agent_id).toBe(`agent-boot-${m.machine}`);
        expect(report['instance-id']).toBe(vm);
        expect(report.config_drive).toBe(m.configDrive);
        expect(report.networks.ipv4!.mac).toBe(nets.ipv4!.mac);
        expect(report.networks.ipv4!.addresses).toEqual(expect.arrayContaining([`${ip}/24`, `fd00:140::${m.host}/64`]));
      }));

    it('finds the ephemeral disk by its path hint /dev/vdb (it has no CID for an ID lookup)', () =>
      inGuest(vm, () => {
        expect(report.disks.ephemeral).toMatchObject({ resolved_by: 'path', device: '/dev/vdb' });
        expect(report.block_devices.find((b) => b.name === 'vdb')?.serial).toBe((report.disks.ephemeral!.hint as { id: string }).id);
        expect(report.disks.system.device).toBe('/dev/vda');
      }));

    it('attach_disk gives a path the guest names the disk by, not the config drive\'s', () =>
      inGuest(vm, async () => {
        const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
        const hint = (await cpi(config, 'attach_disk', [vm, disk])) as Hint;
        expect(hint.path).toBe(m.firstPersistent);
        // a long CID (this prefix): found by the path hint, which names this very disk
        const seen = await waitForGuestDisk(ip, { cid: disk, path: hint.path });
        expect(seen).toMatchObject({ resolved_by: 'path', device: hint.path, size_bytes: 16 * 1024 * 1024 });
        expect((await fetchGuestReport(agentUrl(ip))).block_devices).toContainEqual({ name: hint.path.slice('/dev/'.length), serial: hint.id, size_bytes: 16 * 1024 * 1024 });
        await cpi(config, 'detach_disk', [vm, disk]);
        expect(await resolveGuestDisk(agentUrl(ip), { cid: disk, path: hint.path })).toBeNull();
        await cpi(config, 'delete_disk', [disk]);
      }), 240_000);

    it('detach_disk right after reboot_vm completes once the guest is up', () =>
      inGuest(vm, async () => {
        const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
        const hint = (await cpi(config, 'attach_disk', [vm, disk])) as Hint;
        expect(await waitForGuestDisk(ip, { cid: disk, path: hint.path })).not.toBeNull();
        const boots = parseGuestReports(readFileSync(serialLog(vm), 'latin1')).length;
        await cpi(config, 'reboot_vm', [vm]);
        // The guest is in its firmware or early kernel now: the first unplug request is lost.
        await detachDuringBoot(vm, disk);
        expect(domainXml(vm)).not.toContain(hint.id);
        const again = await readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS, boots + 1);
        expect(again.errors).toEqual([]);
        await guestAnswers(ip);
        expect(await resolveGuestDisk(agentUrl(ip), { cid: disk, path: hint.path })).toBeNull();
        await cpi(config, 'delete_disk', [disk]);
      }), DETACH_TIMEOUT_S * 1000 + BOOT_TIMEOUT_MS + 60_000);
  });
}

describe('detach_disk right after create_vm (the disk attached while the guest boots)', () => {
  it('completes once the guest is up; the guest never keeps the disk', async () => {
    const [vm] = await createVM('agent-boot-early', 12, {});
    await inGuest(vm, async () => {
      const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
      const hint = (await cpi(config, 'attach_disk', [vm, disk])) as Hint;
      await detachDuringBoot(vm, disk);
      expect(domainXml(vm)).not.toContain(hint.id);
      expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      const report = await readGuestReport(serialLog(vm), BOOT_TIMEOUT_MS);
      expect(report.errors).toEqual([]);
      await guestAnswers('198.18.140.12');
      expect(await resolveGuestDisk(agentUrl('198.18.140.12'), { cid: disk, path: hint.path })).toBeNull();
      await cpi(config, 'delete_disk', [disk]);
    });
  }, DETACH_TIMEOUT_S * 1000 + BOOT_TIMEOUT_MS + 60_000);
});

describe('delete_vm', () => {
  it('leaves nothing of this file behind but the stemcell, then nothing at all', async () => {
    const vms = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' })
      .split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX));
    await Promise.all(vms.map((vm) => cpi(config, 'delete_vm', [vm])));
    expect(leftovers(PREFIX).filter((n) => !n.startsWith(stemcell))).toEqual([]);
    await cpi(config, 'delete_stemcell', [stemcell]);
    expect(leftovers(PREFIX)).toEqual([]);
  });
});
