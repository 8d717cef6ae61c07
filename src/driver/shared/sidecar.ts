// Tags of stemcells, disks and snapshots live, for qemu and lxc, in a small JSON volume
// next to the resource (`<cid>.meta`): libvirt volumes have no metadata element, and
// libvirt must stay the only state store. It survives CPI restarts and is readable by
// any director. volumeTags below is the TagStore those profiles pass.
import type { Host } from './host.js';
import { deleteVolumeIfExists, findVolume, readBufferVolume, rewriteTextVolume } from './host.js';
import { sidecarName } from './names.js';
import type { TagStore } from './profile.js';


export async function writeSidecar(host: Host, cid: string, data: Record<string, unknown>): Promise<void> {
  await rewriteTextVolume(host, sidecarName(cid), `${JSON.stringify(data)}\n`);
}

export async function readSidecar(host: Host, cid: string): Promise<Record<string, unknown> | null> {
  const vol = await findVolume(host, sidecarName(cid));
  if (!vol) return null;
  const text = (await readBufferVolume(host, vol)).toString('utf8');
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    host.log.warn({ volume: vol.name }, 'metadata volume does not hold JSON; ignoring it');
    return null;
  }
}

export async function deleteSidecar(host: Host, cid: string): Promise<void> {
  await deleteVolumeIfExists(host, sidecarName(cid));
}

/** Tags as sidecar volumes `<cid>.meta`, written by volume upload: what qemu and lxc keep. */
export const volumeTags: TagStore = {
  read: readSidecar,
  write: writeSidecar,
  remove: deleteSidecar,
  volumes: (cid) => [sidecarName(cid)],
};
