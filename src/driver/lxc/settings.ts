// The agent's settings as warden stemcells read them: the whole settings JSON in one
// file inside the container (File settings source), the networks libvirt has set up on
// the interface before init runs marked `preconfigured`.
//
// The file lives in the VM's overlay upper layer, written by the host. While the
// container runs, the overlay may hold a cached entry for it: a file replaced by a
// rename would stay invisible to the container (measured), so rewrites happen in place,
// in one write of the new content followed by a truncate to its length.
import { mkdir, open, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Host } from '../libvirt/host.js';
import { buildAgentSettings, type AgentSettings } from '../../agent/index.js';

export interface ContainerSettingsInput {
  vm: string;
  agentId: string;
  networks: Record<string, Record<string, unknown>>;
  /** the networks libvirt configures (networking.ts); the agent configures the others */
  preconfigured: Set<string>;
  env: Record<string, unknown>;
  persistent: Record<string, string>;
}

export function buildContainerSettings(host: Host, s: ContainerSettingsInput): AgentSettings {
  const networks: Record<string, Record<string, unknown>> = {};
  for (const [name, net] of Object.entries(s.networks)) networks[name] = s.preconfigured.has(name) ? { ...net, preconfigured: true } : net;
  const settings = buildAgentSettings({
    agentId: s.agentId,
    vmName: s.vm,
    agent: host.config.agent,
    disks: { system: '/', persistent: s.persistent },
    networks,
    env: s.env,
  });
  // A container has no system disk: warden CPIs send an empty hint.
  settings.disks.system = '';
  return settings;
}

export async function writeSettingsFile(path: string, settings: AgentSettings): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeFile(path, JSON.stringify(settings), { mode: 0o600 });
}

/** Applies `change` to the settings file in place (see the top of this file for why). */
export async function rewriteSettingsFile(path: string, change: (s: AgentSettings) => void): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const settings = JSON.parse(await fh.readFile({ encoding: 'utf8' })) as AgentSettings;
    change(settings);
    const data = Buffer.from(JSON.stringify(settings));
    await fh.write(data, 0, data.length, 0);
    await fh.truncate(data.length);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
