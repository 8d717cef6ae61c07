// The config drive: the full agent settings on an ISO9660 image labelled config-2,
// written by the project's own writer and uploaded as a raw volume.
import type { Host } from '../shared/host.js';
import { buildAgentSettings, buildConfigDrive, type AgentSettings, type DiskHint } from '../../agent/index.js';
import type { DiskDevice } from '../../xml/index.js';
import { Suffix, suffixed } from '../shared/names.js';

export function configDriveName(vm: string): string {
  return suffixed(vm, Suffix.config);
}

/**
 * The config drive's device, on a bus every stemcell kernel drives. Cloud-flavoured
 * kernels (Debian's linux-image-cloud-amd64 among them) have virtio and legacy IDE but
 * no AHCI, so a SATA cdrom would stay invisible to their agents. `pc` has IDE: a cdrom
 * there. q35 has no IDE: a read-only virtio disk, which the agent finds all the same
 * because it looks up the label config-2, not the bus (OpenStack attaches its config
 * drives the same way).
 *
 * On q35 the guest names virtio disks in PCI order, and the drive comes right after the
 * VM's own `virtioDisks` disks (vda, vdb): its target is the name the guest gives it, so
 * the ephemeral disk stays /dev/vdb and the targets attach_disk picks next (which skip
 * this one) stay the names the guest gives persistent disks.
 */
export function configDriveDevice(machine: 'pc' | 'q35', file: string, virtioDisks: number): DiskDevice {
  if (machine === 'pc') return { device: 'cdrom', file, format: 'raw', bus: 'ide', target: 'hdc', readonly: true };
  return { device: 'disk', file, format: 'raw', bus: 'virtio', target: `vd${String.fromCharCode(97 + virtioDisks)}`, readonly: true };
}

export interface VmSettingsInput {
  vm: string;
  agentId: string;
  networks: Record<string, Record<string, unknown>>;
  env: Record<string, unknown>;
  ephemeral: DiskHint | undefined;
  persistent: Record<string, DiskHint>;
}

export function buildVmSettings(host: Host, s: VmSettingsInput): AgentSettings {
  return buildAgentSettings({
    agentId: s.agentId,
    vmName: s.vm,
    agent: host.config.agent,
    disks: { system: '/dev/vda', ...(s.ephemeral ? { ephemeral: s.ephemeral } : {}), persistent: s.persistent },
    networks: s.networks,
    env: s.env,
  });
}

export function configDriveImage(vm: string, settings: AgentSettings): Buffer {
  return buildConfigDrive(settings, { instanceId: vm });
}
