// Where create_vm puts the config drive (buildDomainSpec, also behind `render vm`): on a
// bus every stemcell kernel drives, for every machine and firmware the CPI offers. The
// guest's side of it (what device name it gets) is proven in test/e2e/boot-drive.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { decodeVmCloudProperties } from '../../src/driver/shared/cloud-properties.js';
import { buildDomainSpec, ephemeralDiskHint } from '../../src/driver/qemu/vms.js';
import { planVmNetworks } from '../../src/driver/shared/vms.js';
import { renderDomain, type DiskDevice } from '../../src/xml/index.js';
import { ROOT } from '../helpers/cpi.js';

const config = ConfigSchema.parse(JSON.parse(readFileSync(join(ROOT, 'fixtures/config/qemu.json'), 'utf8')));
const VM = 'vm-00000000-0000-0000-0000-000000000000';
const DIR = '/var/lib/libvirt/bosh-cpi';
const networks = { default: { type: 'manual', ip: '198.18.140.10', netmask: '255.255.255.0', gateway: '198.18.140.1', cloud_properties: {} } };

function disksOf(props: Record<string, unknown>): DiskDevice[] {
  const shape = decodeVmCloudProperties(props, config);
  const spec = buildDomainSpec({
    vm: VM,
    agentId: 'agent',
    stemcellCid: 'sc-x',
    shape,
    type: 'qemu',
    plan: planVmNetworks(networks, config),
    paths: { root: `${DIR}/${VM}.root`, ...(shape.ephemeralMiB > 0 ? { ephemeral: `${DIR}/${VM}.ephemeral` } : {}), config: `${DIR}/${VM}.config` },
    reservations: [],
    prefixes: [],
    serialLogDir: '/var/log/libvirt/qemu',
  });
  // what render vm prints and create_vm defines
  expect(renderDomain(spec)).toContain(`${VM}.config`);
  return spec.disks;
}

const configDrive = (disks: DiskDevice[]) => disks.find((d) => d.file.endsWith('.config'))!;

describe('the config drive in create_vm\'s domain', () => {
  for (const firmware of ['bios', 'efi'] as const) {
    it(`pc/${firmware}: a read-only IDE cdrom, which kernels without AHCI still drive`, () => {
      expect(configDrive(disksOf({ machine: 'pc', firmware }))).toEqual({ device: 'cdrom', file: `${DIR}/${VM}.config`, format: 'raw', bus: 'ide', target: 'hdc', readonly: true });
    });

    it(`q35/${firmware}: a read-only virtio disk right after root and ephemeral, which keep vda and vdb`, () => {
      const disks = disksOf({ machine: 'q35', firmware });
      expect(disks.map((d) => [d.bus, d.target])).toEqual([['virtio', 'vda'], ['virtio', 'vdb'], ['virtio', 'vdc']]);
      expect(configDrive(disks)).toEqual({ device: 'disk', file: `${DIR}/${VM}.config`, format: 'raw', bus: 'virtio', target: 'vdc', readonly: true });
      expect(disks[1]!.serial).toBe(ephemeralDiskHint(VM).id);
      expect(ephemeralDiskHint(VM).path).toBe('/dev/vdb');
    });
  }

  it('q35 without an ephemeral disk: the config drive takes vdb, the name the guest gives it', () => {
    expect(disksOf({ machine: 'q35', ephemeral_disk: { size: 0 } }).map((d) => d.target)).toEqual(['vda', 'vdb']);
  });

  it('never on SATA, on any machine', () => {
    for (const machine of ['pc', 'q35']) for (const ephemeral of [0, 64]) {
      expect(disksOf({ machine, ephemeral_disk: { size: ephemeral } }).map((d) => d.bus)).not.toContain('sata');
    }
  });
});
