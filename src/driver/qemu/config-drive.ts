// The config drive: the full agent settings on an ISO9660 image labelled config-2,
// written by the project's own writer and uploaded as a raw volume.
import type { Host } from './host.js';
import { buildAgentSettings, buildConfigDrive, type AgentSettings, type DiskHint } from '../../agent/index.js';

export function configDriveName(vm: string): string {
  return `${vm}.config`;
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
