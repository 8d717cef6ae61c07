// The agent's settings as warden stemcells read them: the whole settings JSON in one
// file inside the container (File settings source), the networks libvirt has set up on
// the interface before init runs marked `preconfigured`.
//
// The file lives in the VM's overlay upper layer, written by the host. While the
// container runs, the overlay may hold a cached entry for it: a file replaced by a
// rename would stay invisible to the container (measured), so rewrites happen in place,
// in one write of the new content followed by a truncate to its length.
import { mkdir, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Host } from '../shared/host.js';
import { CloudError } from '../../errors.js';
import { buildAgentSettings, type AgentSettings } from '../../agent/index.js';
import { ContainerTampered, holdDir, holdPathBelow, openRegularFile } from './container-fs.js';
import { SETTINGS_FILE } from './layout.js';

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

/** The settings file is a few KiB; a larger one was made inside the container. */
const SETTINGS_MAX_BYTES = 1024 * 1024;

/**
 * Opens the settings file in the VM's upper layer for a rewrite (see the top of this
 * file for why in place). The upper layer is the container's to change, as root, while
 * it runs: each directory on the way (var, vcap, bosh) is held by descriptor and the
 * next name resolved inside it, never through a link (container-fs.ts), so a link the
 * container swaps in at any moment is refused, never followed; a FIFO, device, link or
 * hard-linked file in the file's place is refused without being opened. Call it before
 * changing anything else: a refusal leaves the VM as it was.
 */
export async function openSettingsFile(upper: string, what: string): Promise<FileHandle> {
  const names = SETTINGS_FILE.split('/').filter((x) => x !== '');
  try {
    const root = await holdDir(null, upper, '/ (the upper layer of the root filesystem)');
    try {
      const dir = await holdPathBelow(root, names.slice(0, -1), '/');
      try {
        return await openRegularFile(dir, names[names.length - 1]!, SETTINGS_FILE, SETTINGS_MAX_BYTES);
      } finally {
        if (dir !== root) await dir.fh.close();
      }
    } finally {
      await root.fh.close();
    }
  } catch (e) {
    if (e instanceof ContainerTampered) {
      throw new CloudError(`${what}: the agent settings file ${SETTINGS_FILE} in the container cannot be rewritten: ${e.shown} is ${e.found} (changed inside the container); nothing was changed`);
    }
    throw e;
  }
}

/** Applies `change` to the settings file opened by openSettingsFile: one write of the new content, then a truncate. */
export async function rewriteSettings(fh: FileHandle, what: string, change: (s: AgentSettings) => void): Promise<void> {
  let settings: AgentSettings;
  try {
    settings = JSON.parse(await fh.readFile({ encoding: 'utf8' })) as AgentSettings;
    if (typeof settings !== 'object' || settings === null || typeof settings.disks !== 'object' || settings.disks === null) throw new Error('no "disks" object');
  } catch (e) {
    throw new CloudError(`${what}: the agent settings file ${SETTINGS_FILE} in the container is not the settings JSON the CPI wrote (${(e as Error).message}; changed inside the container?)`);
  }
  change(settings);
  const data = Buffer.from(JSON.stringify(settings));
  await fh.write(data, 0, data.length, 0);
  await fh.truncate(data.length);
  await fh.sync();
}
