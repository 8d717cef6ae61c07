// vm_type / disk_type cloud_properties for the qemu backend, decoded late (here, not
// in cpi/) as bosh-cpi-go does. Unknown keys are allowed: a cloud-config may carry
// properties for other CPIs.
import { z } from 'zod';
import { CloudError, show } from '../../rpc/errors.js';
import type { Config } from '../../config/schema.js';

const size = (what: string) => z.object({ size: z.number().int().positive().max(64 * 1024 * 1024).describe(`${what} size in MiB`) });

export const VmCloudPropertiesSchema = z.looseObject({
  cpu: z.number().int().positive().max(512).optional(),
  ram: z.number().int().min(64).max(16 * 1024 * 1024).optional(),
  ephemeral_disk: z.object({ size: z.number().int().nonnegative().max(64 * 1024 * 1024) }).optional(),
  root_disk: size('root disk').optional(),
  machine: z.enum(['pc', 'q35']).optional(),
  firmware: z.enum(['bios', 'efi']).optional(),
});

export const DiskCloudPropertiesSchema = z.looseObject({});

export interface VmShape {
  cpu: number;
  ramMiB: number;
  ephemeralMiB: number;
  rootMiB?: number;
  machine: 'pc' | 'q35';
  firmware: 'bios' | 'efi';
}

export function decodeVmCloudProperties(props: unknown, config: Config): VmShape {
  const r = VmCloudPropertiesSchema.safeParse(props);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const path = i.path.join('.');
    const value = i.path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined), props);
    throw new CloudError(`Invalid cloud_properties.${path} of create_vm: got ${value === undefined ? 'nothing' : show(value)}, ${i.message.replace(/^Invalid input: /, '')}`);
  }
  const p = r.data;
  return {
    cpu: p.cpu ?? config.vm.cpu,
    ramMiB: p.ram ?? config.vm.ram,
    ephemeralMiB: p.ephemeral_disk?.size ?? config.vm.ephemeral_disk_size,
    ...(p.root_disk ? { rootMiB: p.root_disk.size } : {}),
    machine: p.machine ?? config.vm.machine,
    firmware: p.firmware ?? config.vm.firmware,
  };
}
