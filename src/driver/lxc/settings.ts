// The agent's settings as warden stemcells read them: the whole settings JSON in one
// file inside the container (File settings source), the networks libvirt has set up on
// the interface before init runs marked `preconfigured`.
//
// The file lives in the VM's overlay upper layer, written by the host. While the
// container runs, the overlay may hold a cached entry for it: a file replaced by a
// rename would stay invisible to the container (measured), so rewrites happen in place,
// in one write of the new content followed by a truncate to its length.
import { constants } from 'node:fs';
import { lstat, mkdir, open, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Host } from '../libvirt/host.js';
import { CloudError } from '../../errors.js';
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

/**
 * Applies `change` to the settings file in place (see the top of this file for why).
 * The upper layer is the container's to write, as root: a symlink placed on the way
 * (var, vcap, bosh or the file itself) would make the host CPI rewrite a host file, so
 * every step below `upper` must be what it seems, and the file is opened without
 * following a link.
 */
export async function rewriteSettingsFile(upper: string, path: string, change: (s: AgentSettings) => void): Promise<void> {
  const steps = relative(upper, dirname(path)).split(sep).filter((x) => x !== '');
  for (let i = 1; i <= steps.length; i++) {
    const dir = join(upper, ...steps.slice(0, i));
    if (!(await lstat(dir)).isDirectory()) throw new CloudError(`The agent settings of this container cannot be rewritten: ${dir} is not a directory (a link made inside the container?)`);
  }
  const fh = await open(path, constants.O_RDWR | constants.O_NOFOLLOW).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ELOOP') throw new CloudError(`The agent settings of this container cannot be rewritten: ${path} is a symbolic link (made inside the container?)`);
    throw e;
  });
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
