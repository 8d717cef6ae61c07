// Stemcells older than API v2 read disk settings from the config drive as the CPI
// last wrote it (there is no registry here), so attach/detach rewrite it. The settings
// document is kept in a raw volume `<vm>.settings` for those VMs only: an ISO is
// simpler to write than to read back.
import type { Host } from '../shared/host.js';
import { findVolume, readBufferVolume, rewriteTextVolume, writeBufferVolume } from '../shared/host.js';
import { configDriveName } from './config-drive.js';
import { buildConfigDrive, parseAgentSettings, type AgentSettings, type DiskHint } from '../../agent/index.js';
import { Readable } from 'node:stream';
import { CloudError } from '../../errors.js';
import { Suffix, suffixed } from '../shared/names.js';

export function settingsVolumeName(vm: string): string {
  return suffixed(vm, Suffix.settings);
}

export async function rewriteSettingsDisks(host: Host, vm: string, change: (p: Record<string, DiskHint | string>) => Record<string, DiskHint | string>): Promise<void> {
  const vol = await findVolume(host, settingsVolumeName(vm));
  if (!vol) throw new CloudError(`VM ${vm} uses a stemcell older than API v2 but has no settings volume to rewrite`);
  const settings: AgentSettings = parseAgentSettings(await readBufferVolume(host, vol));
  settings.disks.persistent = change(settings.disks.persistent ?? {});
  await rewriteTextVolume(host, settingsVolumeName(vm), JSON.stringify(settings));
  // Rewrite the ISO in place (same file, same inode) so the guest's next read sees it.
  const iso = buildConfigDrive(settings, { instanceId: vm });
  const cfg = await findVolume(host, configDriveName(vm));
  if (!cfg) throw new CloudError(`VM ${vm} has no config drive volume ${configDriveName(vm)}`);
  const info = await host.conn.volumes.getInfo(cfg);
  if (BigInt(iso.length) > info.capacity) await host.conn.volumes.resize(cfg, BigInt(iso.length), 0);
  await host.conn.volumes.upload(cfg, Readable.from([iso]), { offset: 0n, length: BigInt(iso.length) });
}

export async function writeSettingsVolume(host: Host, vm: string, settings: AgentSettings): Promise<void> {
  await writeBufferVolume(host, settingsVolumeName(vm), Buffer.from(JSON.stringify(settings)));
}
