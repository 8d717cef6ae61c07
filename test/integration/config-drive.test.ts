// Where create_vm puts the config drive, as libvirt and QEMU hold it, for every machine
// and firmware the CPI offers: an IDE cdrom on pc, a read-only virtio disk on q35 (no
// SATA anywhere: cloud kernels have no AHCI), with UEFI starting on both, `render vm`
// showing the same, and attach_disk on q35 choosing the target after the drive. The
// stemcell here boots nothing; test/e2e/boot-drive.test.ts proves the guest's side.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { parseDomain } from '../../src/xml/index.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-boot-cd-';
const NET = 't-boot-cd-net';
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });

let config: string;
let poolPath: string;
let stemcell: string;

const network = (host: number) => ({
  default: { type: 'manual', ip: `198.18.141.${host}`, netmask: '255.255.255.0', gateway: '198.18.141.1', cloud_properties: { name: NET } },
});

function createArgs(host: number, props: Record<string, unknown>): unknown[] {
  return ['agent-cd', stemcell, props, network(host), [], {}];
}

function configDriveOf(xml: string) {
  return parseDomain(xml).disks.find((d) => d.file?.endsWith('.config'));
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-boot-br1', 141);
  ({ path: config, poolPath } = testConfig({ prefix: PREFIX, network: NET }));
  stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(64), { disk_format: 'qcow2' }, {}])) as string;
});

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
});

const cases = [
  { machine: 'pc', firmware: 'bios', host: 10, drive: { device: 'cdrom', bus: 'ide', target: 'hdc' } },
  { machine: 'pc', firmware: 'efi', host: 11, drive: { device: 'cdrom', bus: 'ide', target: 'hdc' } },
  { machine: 'q35', firmware: 'bios', host: 12, drive: { device: 'disk', bus: 'virtio', target: 'vdc' } },
  { machine: 'q35', firmware: 'efi', host: 13, drive: { device: 'disk', bus: 'virtio', target: 'vdc' } },
] as const;

describe('create_vm places the config drive on a bus every kernel drives', () => {
  for (const c of cases) {
    it(`${c.machine}/${c.firmware}: starts, with the drive read-only on ${c.drive.bus} ${c.drive.target} and no SATA disk`, async () => {
      const [vm] = (await cpi(config, 'create_vm', createArgs(c.host, { machine: c.machine, firmware: c.firmware }))) as [string];
      try {
        expect(virsh('domstate', vm).stdout.trim()).toBe('running');
        const xml = domainXml(vm);
        expect(configDriveOf(xml)).toMatchObject({ ...c.drive, format: 'raw', file: `${poolPath}/${vm}.config` });
        expect(xml).toMatch(new RegExp(`<target dev='${c.drive.target}' bus='${c.drive.bus}'/>\\s*<readonly/>`));
        expect(parseDomain(xml).disks.map((d) => d.bus)).not.toContain('sata');
        if (c.firmware === 'efi') expect(xml).toMatch(/<loader [^>]*type='pflash'[^>]*>[^<]*OVMF/);
        const file = join(scratchDir('t-boot-cd-xml-'), 'dom.xml');
        writeFileSync(file, xml);
        const v = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
        expect(v.status, v.stdout + v.stderr).toBe(0);
      } finally {
        await cpi(config, 'delete_vm', [vm]);
      }
    });
  }

  it('q35 without an ephemeral disk: the drive takes vdb, right after the root disk', async () => {
    const [vm] = (await cpi(config, 'create_vm', createArgs(14, { machine: 'q35', ephemeral_disk: { size: 0 } }))) as [string];
    try {
      expect(configDriveOf(domainXml(vm))).toMatchObject({ device: 'disk', bus: 'virtio', target: 'vdb' });
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
  });

  it('q35: attach_disk hot-plugs after the drive (vdd), and detach_disk leaves the drive alone', async () => {
    const [vm] = (await cpi(config, 'create_vm', createArgs(15, { machine: 'q35', firmware: 'efi' }))) as [string];
    const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
    try {
      const hint = (await cpi(config, 'attach_disk', [vm, disk])) as { id: string; path: string };
      expect(hint.path).toBe('/dev/vdd');
      expect(parseDomain(domainXml(vm)).disks).toContainEqual(expect.objectContaining({ target: 'vdd', serial: hint.id }));
      // The firmware never answers the unplug request: power off first, as the driver
      // tests do, so this checks the bookkeeping, not the guest.
      virsh('destroy', vm);
      await cpi(config, 'detach_disk', [vm, disk]);
      const after = domainXml(vm);
      expect(after).not.toContain(hint.id);
      expect(configDriveOf(after)).toMatchObject({ bus: 'virtio', target: 'vdc' });
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await cpi(config, 'delete_disk', [disk]);
    }
  });

  it('render vm shows the same drive create_vm defines, on q35 with UEFI', async () => {
    const args = createArgs(16, { machine: 'q35', firmware: 'efi' });
    const [vm] = (await cpi(config, 'create_vm', args)) as [string];
    try {
      const file = join(scratchDir('t-boot-cd-req-'), 'create_vm.json');
      writeFileSync(file, JSON.stringify({ method: 'create_vm', arguments: args, context: { director_uuid: 'x' } }));
      const { BOSH_LIBVIRT_CPI_CONFIG: _drop, ...env } = process.env;
      const r = spawnSync(process.execPath, [join(ROOT, 'dist/cli.mjs'), 'render', 'vm', file, '--config', config, '--vm-cid', vm], { encoding: 'utf8', env });
      expect(r.status, r.stderr).toBe(0);
      expect(parseDomain(domainXml(vm)).disks).toEqual(parseDomain(r.stdout).disks);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
  });

  it('leaves nothing behind', async () => {
    await cpi(config, 'delete_stemcell', [stemcell]);
    expect(leftovers(PREFIX)).toEqual([]);
  });
});
