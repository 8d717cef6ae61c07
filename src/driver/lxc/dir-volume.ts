// Directory volumes: how the LXC backend keeps root filesystems and disks in the storage
// pool, so libvirt still lists (and `orphans` still finds) everything the CPI made.
// libvirt creates and deletes them, but refuses to delete one that is not empty
// ("Directory not empty", measured on libvirt 9.0): the CPI empties it first, itself,
// which is why the LXC backend needs libvirt on the same machine.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host } from '../libvirt/host.js';
import { createVolume, findVolume } from '../libvirt/host.js';
import { ErrorCode, isLibvirtError } from '../../libvirt/index.js';

/** A new, empty directory `<pool>/<name>` (libvirt would make it 0600 without a mode). */
export async function createDirVolume(host: Host, name: string, mode = 0o755): Promise<void> {
  await createVolume(host, { name, capacityBytes: 0n, format: 'dir', mode });
}

/** The directory of a volume of the pool. */
export function dirVolumePath(host: Host, name: string): string {
  return join(host.poolPath, name);
}

/**
 * Removes the directory volume `name` and everything in it; nothing (and no error) when
 * it is gone. Symlinks inside are removed, never followed: a VM's root links to its
 * stemcell, and a rootfs holds absolute links that point at the host's own files.
 */
export async function deleteDirVolume(host: Host, name: string): Promise<void> {
  const dir = dirVolumePath(host, name);
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (st?.isDirectory()) {
    // fs.rm decides with lstat: a link is unlinked, a directory's content removed first.
    for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
  }
  const vol = await findVolume(host, name);
  if (!vol) {
    // A directory libvirt never saw (made or moved here behind its back): only the directory.
    if (st) await rm(dir, { recursive: true, force: true });
    return;
  }
  try {
    await host.conn.volumes.delete(vol, 0);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return;
    if (st) throw e;
    // libvirt still lists a directory that is gone: a refresh forgets it (refused while
    // another call has a job in the pool, so only best effort; the next listing drops it).
    await host.conn.pools.refresh(host.pool, 0).catch(() => undefined);
  }
}
