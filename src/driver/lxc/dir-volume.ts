// Directory volumes: how the LXC backend keeps root filesystems and disks in the storage
// pool, so libvirt still lists (and `orphans` still finds) everything the CPI made.
// libvirt creates and deletes them, but refuses to delete one that is not empty
// ("Directory not empty", measured on libvirt 9.0): the CPI empties it first, itself,
// which is why the LXC backend needs libvirt on the same machine.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import { createVolume, findVolume } from '../shared/host.js';
import { ErrorCode, isLibvirtError } from '../../libvirt/index.js';
import { CloudError } from '../../errors.js';
import { clearImmutable, holdDir } from './container-fs.js';

/** A new, empty directory `<pool>/<name>` (libvirt would make it 0600 without a mode). */
export async function createDirVolume(host: Host, name: string, mode = 0o755): Promise<void> {
  await createVolume(host, { name, capacityBytes: 0n, format: 'dir', mode });
}

/** The directory of a volume of the pool. */
export function dirVolumePath(host: Host, name: string): string {
  return join(host.poolPath, name);
}

/**
 * Removes everything inside `dir` (a directory of the pool), links never followed: fs.rm
 * decides with lstat, so a link is unlinked and a directory's content removed first. A
 * container (root inside) may have made files immutable or append-only (`chattr +i`),
 * the directory itself included: then the flags are cleared below it (chattr skips
 * links) and the removal repeated. Only for a tree nobody changes meanwhile (the
 * container is stopped).
 */
export async function emptyDir(dir: string): Promise<void> {
  const removeAll = async (): Promise<void> => {
    for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
  };
  try {
    await removeAll();
    return;
  } catch {
    // EPERM, or (fs.rm's fallback for a file it could not unlink) ENOTDIR: try once more
    // without the flags; a failure then is reported as it is.
  }
  const held = await holdDir(null, dir, dir);
  try {
    await clearImmutable(held);
  } finally {
    await held.fh.close();
  }
  await removeAll().catch((e: unknown) => {
    throw new CloudError(`Cannot empty ${dir}, even after clearing immutable and append-only flags: ${(e as Error).message}`, { cause: e });
  });
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
  if (st?.isDirectory()) await emptyDir(dir);
  const vol = await findVolume(host, name);
  if (!vol) {
    // A directory libvirt never saw (made or moved here behind its back): only the directory.
    if (st) await rm(dir, { recursive: true, force: true });
    return;
  }
  try {
    await host.conn.volumes.delete(vol, 0).catch(async (e: unknown) => {
      if (!st?.isDirectory() || isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) throw e;
      // The directory itself immutable (`chattr +i /var/vcap/data` inside the container): clear it, once.
      const held = await holdDir(null, dir, dir, true).catch(() => null);
      if (!held) throw e;
      await clearImmutable(held).finally(() => held.fh.close());
      await host.conn.volumes.delete(vol, 0);
    });
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return;
    if (st) throw new CloudError(`Cannot delete the directory volume ${name} (${dir}): ${(e as Error).message}`, { cause: e });
    // libvirt still lists a directory that is gone: a refresh forgets it (refused while
    // another call has a job in the pool, so only best effort; the next listing drops it).
    await host.conn.pools.refresh(host.pool, 0).catch(() => undefined);
  }
}
