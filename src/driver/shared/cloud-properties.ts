// vm_type / disk_type cloud_properties for the qemu backend, decoded late (here, not
// in cpi/) as bosh-cpi-go does. Unknown keys are allowed — a cloud-config may carry
// properties for other CPIs — but they are named in a warning, so a misspelt key (one
// that silently left a VM with the default disk size) shows up in the task's CPI log.
import { z } from 'zod';
import { CloudError, show } from '../../errors.js';
import type { Config } from '../../config/schema.js';
import { NetworkCloudPropertiesSchema } from '../../network/schema.js';

const MAX_MIB = 64 * 1024 * 1024;
const size = (what: string) => z.object({ size: z.number().int().positive().max(MAX_MIB).describe(`${what} size in MiB`) });
const ephemeralMiB = z.number().int().nonnegative().max(MAX_MIB);

export const VmCloudPropertiesSchema = z.looseObject({
  cpu: z.number().int().positive().max(512).optional(),
  ram: z.number().int().min(64).max(16 * 1024 * 1024).optional(),
  // `{size}` is the AWS CPI's spelling (and what calculate_vm_cloud_properties returns);
  // a bare number is the VirtualBox CPI's, which this CPI replaces for local directors.
  ephemeral_disk: z.union([z.object({ size: ephemeralMiB }), ephemeralMiB]).optional(),
  root_disk: size('root disk').optional(),
  machine: z.enum(['pc', 'q35']).optional(),
  firmware: z.enum(['bios', 'efi']).optional(),
  // Spellings operators bring from other CPIs and from this project's early examples.
  ephemeral_disk_size: ephemeralMiB.optional(),
  cpus: z.number().int().positive().max(512).optional(),
  memory: z.number().int().min(64).max(16 * 1024 * 1024).optional(),
});

export const DiskCloudPropertiesSchema = z.looseObject({});

/** The keys each kind of cloud_properties means something to this backend. */
export const KNOWN_VM_KEYS = Object.keys(VmCloudPropertiesSchema.shape);
export const KNOWN_DISK_KEYS = Object.keys(DiskCloudPropertiesSchema.shape);

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
  const eph = typeof p.ephemeral_disk === 'number' ? p.ephemeral_disk : p.ephemeral_disk?.size;
  return {
    cpu: oneOf('cpu', p.cpu, 'cpus', p.cpus) ?? config.vm.cpu,
    ramMiB: oneOf('ram', p.ram, 'memory', p.memory) ?? config.vm.ram,
    ephemeralMiB: oneOf(typeof p.ephemeral_disk === 'number' ? 'ephemeral_disk' : 'ephemeral_disk.size', eph, 'ephemeral_disk_size', p.ephemeral_disk_size) ?? config.vm.ephemeral_disk_size,
    ...(p.root_disk ? { rootMiB: p.root_disk.size } : {}),
    machine: p.machine ?? config.vm.machine,
    firmware: p.firmware ?? config.vm.firmware,
  };
}

/** Two spellings of one property may both be given only when they agree. */
function oneOf(a: string, va: number | undefined, b: string, vb: number | undefined): number | undefined {
  if (va !== undefined && vb !== undefined && va !== vb) {
    throw new CloudError(`Conflicting cloud_properties of create_vm: ${a} is ${va} but ${b} is ${vb}; they mean the same, give one`);
  }
  return va ?? vb;
}

/** Top-level keys of a cloud_properties object that the backend does not use. */
export function unknownKeys(props: unknown, known: readonly string[]): string[] {
  if (!props || typeof props !== 'object' || Array.isArray(props)) return [];
  return Object.keys(props).filter((k) => !known.includes(k));
}

/** Where create_vm's and create_disk's cloud_properties carry keys this backend ignores. */
export function ignoredCloudPropertyKeys(vmProps: unknown, networks: unknown): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const vm = unknownKeys(vmProps, KNOWN_VM_KEYS);
  if (vm.length) out.cloud_properties = vm;
  if (networks && typeof networks === 'object') {
    for (const [name, net] of Object.entries(networks as Record<string, { cloud_properties?: unknown }>)) {
      const keys = unknownKeys(net?.cloud_properties, KNOWN_NETWORK_KEYS);
      if (keys.length) out[`networks.${name}.cloud_properties`] = keys;
    }
  }
  return out;
}

const KNOWN_NETWORK_KEYS = Object.keys(NetworkCloudPropertiesSchema.shape);

/** One warning line naming every ignored key, or nothing. */
export function describeIgnored(ignored: Record<string, string[]>, backend: string): string | undefined {
  const parts = Object.entries(ignored).map(([where, keys]) => `${where}: ${keys.join(', ')}`);
  return parts.length ? `the ${backend} backend ignores these cloud_properties keys (another CPI's, or misspelt?) — ${parts.join('; ')}` : undefined;
}
