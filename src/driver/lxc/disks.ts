// LXC persistent disks are directories: a dir volume `<pool>/<disk>` while detached.
// libvirt refuses to hot-plug a <filesystem> into a running container (measured: "device
// type 'filesystem' cannot be attached"), so every container gets one directory at
// create_vm, `<pool>/<vm>.disks` mounted at /warden-cpi-dev, and attach_disk renames
// the disk's directory into it: same file system, so the move is atomic, copies nothing
// and the container sees /warden-cpi-dev/<disk> appear while it runs. detach_disk renames
// it back. The container is root in /warden-cpi-dev: it can rename, replace or forge any
// entry there. So where a disk is, the CPI's own records say (the VM's metadata, written
// before the move and cleared after the move back, with the directory's device and inode),
// never a listing of that directory; only the recorded directory is ever moved, and every
// name inside the container's tree is resolved under a held directory (container-fs.ts).
import type { Stats } from 'node:fs';
import { lstat, readdir, rename } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import { requireDomain } from '../shared/vms.js';
import { listVmMetadata, readVmMetadata, writeVmMetadata } from '../shared/vm-metadata.js';
import { withVolumeLock } from '../shared/lock.js';
import { isCid, type DiskCID, type VMCID } from '../cids.js';
import type { DiskHint } from '../driver.js';
import type { VmMetadata } from '../../xml/index.js';
import type { DomainRef, VolRef } from '../../libvirt/index.js';
import { CloudError, DiskNotAttached, DiskNotFound } from '../../errors.js';
import { attachedDiskPaths, DISKS_MOUNT, rootPaths, vmVolumeNames } from './layout.js';
import { openSettingsFile, rewriteSettings } from './settings.js';
import { deleteDirVolume } from './dir-volume.js';
import { at, ContainerTampered, describe, entries, holdDir, identity, self, statAt, type Held } from './container-fs.js';

type Recorded = VmMetadata['disks'][number];

/** What `<pool>/<disk>` is (the pool's own directory: no container reaches it); null when nothing. */
async function poolEntry(host: Host, disk: string): Promise<Stats | null> {
  return lstat(join(host.poolPath, disk)).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
}

/** The directory attach_disk recorded: same identity, or (a record from before identities were kept) any real directory. */
const isRecorded = (st: Stats | null, rec: Recorded): boolean => st !== null && st.isDirectory() && (rec.serial === '' || identity(st) === rec.serial);

/**
 * Where a disk of this CPI is. The CPI's own records decide, never the content of a
 * directory a container controls: attached to the VM whose metadata lists it (from the
 * moment attach_disk begins until detach_disk or delete_vm has moved it back), else
 * detached when `<pool>/<disk>` is a directory, else nowhere.
 */
export async function locateDisk(host: Host, disk: string): Promise<{ vm: VMCID } | 'pool' | null> {
  if (!isCid(disk, 'disk', host.config.name_prefix)) return null;
  for (const { name, metadata } of await listVmMetadata(host)) {
    if (metadata.disks.some((d) => d.cid === disk)) return { vm: name as VMCID };
  }
  return (await poolEntry(host, disk))?.isDirectory() ? 'pool' : null;
}

async function requireMetadata(host: Host, vmCid: VMCID, dom: DomainRef): Promise<VmMetadata> {
  const metadata = await readVmMetadata(host, dom);
  if (!metadata) throw new CloudError(`VM ${vmCid} has no bosh-libvirt-cpi metadata; it was not created by this CPI`);
  return metadata;
}

/** `<pool>/<vm>.disks`, held: the directory mounted at /warden-cpi-dev. */
async function holdDisksDir(host: Host, vmCid: string, what: string): Promise<Held> {
  const path = join(host.poolPath, vmVolumeNames(vmCid).disks);
  try {
    return await holdDir(null, path, path);
  } catch (e) {
    if (e instanceof ContainerTampered) throw new CloudError(`${what}: the VM's disk directory ${e.shown} is ${e.found} (is the VM being deleted?); nothing was changed`);
    throw e;
  }
}

/** Both locks: the VM's (its records and directories) and the disk's (two VMs attaching it at once). */
function withVmAndDisk<T>(host: Host, vmCid: VMCID, diskCid: DiskCID, fn: () => Promise<T>): Promise<T> {
  // A string that is no disk CID of this CPI names no disk to lock (and the call fails as DiskNotFound / DiskNotAttached).
  if (!isCid(diskCid, 'disk', host.config.name_prefix)) return withVolumeLock(host, vmCid, fn);
  return withVolumeLock(host, vmCid, () => withVolumeLock(host, diskCid, fn));
}

/**
 * attach_disk: the disk is recorded in the VM's metadata (with its directory's identity,
 * device and inode) first, then its directory is renamed into `<vm>.disks`, then the
 * settings file follows. A call that died in between is completed by repeating it. The
 * settings file is opened (and checked) before anything changes, so a container that
 * broke its own settings file gets an error and no half-attached disk.
 */
export async function attachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<DiskHint> {
  const dom = await requireDomain(host, vmCid);
  const paths = attachedDiskPaths(host.poolPath, vmCid, diskCid);
  const what = `attach_disk ${diskCid} to ${vmCid}`;
  return withVmAndDisk(host, vmCid, diskCid, async () => {
    const metadata = await requireMetadata(host, vmCid, dom);
    const where = await locateDisk(host, diskCid);
    if (where === null) throw new DiskNotFound(`Disk ${diskCid} does not exist in pool ${host.config.storage.pool}`);
    if (where !== 'pool' && where.vm !== vmCid) throw new CloudError(`Disk ${diskCid} is attached to VM ${where.vm}; detach it before attaching it to ${vmCid}`);
    const settings = await openSettingsFile(rootPaths(host.poolPath, vmCid).upper, what);
    try {
      const disks = await holdDisksDir(host, vmCid, what);
      try {
        const pooled = await poolEntry(host, diskCid);
        let rec = metadata.disks.find((d) => d.cid === diskCid);
        const recordedNow = rec === undefined;
        if (rec === undefined) {
          rec = { cid: diskCid, serial: identity(pooled!), target: paths.guest };
          metadata.disks.push(rec);
          await writeVmMetadata(host, dom, metadata);
        }
        const forget = async (): Promise<void> => {
          if (!recordedNow) return;
          metadata.disks = metadata.disks.filter((d) => d.cid !== diskCid);
          await writeVmMetadata(host, dom, metadata);
        };
        if (isRecorded(pooled, rec)) {
          const planted = await statAt(disks, diskCid);
          if (planted) {
            await forget();
            throw new CloudError(`${what}: ${paths.guest} exists inside the container already (${describe(planted)}, made there), so the disk stays detached; remove it inside the container`);
          }
          await rename(join(host.poolPath, diskCid), at(disks, diskCid)).catch(async (e: NodeJS.ErrnoException) => {
            await forget();
            throw new CloudError(`${what}: moving ${join(host.poolPath, diskCid)} into the VM's disk directory failed (${e.code ?? e.message}); the disk stays detached`);
          });
        } else {
          // recorded here and not in the pool: a repeated call finds it inside
          const inside = await statAt(disks, diskCid);
          if (!isRecorded(inside, rec)) {
            throw new CloudError(`${what}: the disk is recorded as attached to the VM, but ${paths.guest} inside the container is ${describe(inside)}${inside?.isDirectory() ? ' that is not the disk' : ''} (changed inside the container); delete_vm or detach_disk of the VM finds it if it is still there`);
          }
        }
        await rewriteSettings(settings, what, (s) => {
          s.disks.persistent = { ...(s.disks.persistent ?? {}), [diskCid]: paths.guest };
        });
      } finally {
        await disks.fh.close();
      }
    } finally {
      await settings.close();
    }
    await refreshPool(host);
    return { path: paths.guest };
  });
}

/** The name under `/warden-cpi-dev` of the directory attach_disk put there (the container may have renamed it). */
async function findAttached(disks: Held, rec: Recorded): Promise<string | null> {
  if (isRecorded(await statAt(disks, rec.cid), rec)) return rec.cid;
  if (rec.serial === '') return null;
  for (const name of await entries(disks)) if (isRecorded(await statAt(disks, name), rec)) return name;
  return null;
}

/**
 * detach_disk: only the directory attach_disk recorded (a real directory, same device
 * and inode) leaves the container; a link, a file or another directory the container put
 * at the disk's name stays where it is. It is moved to `<pool>/<disk>`, checked there
 * (out of the container's reach) and put back if the container swapped it meanwhile.
 */
export async function detachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<void> {
  const dom = await requireDomain(host, vmCid);
  const paths = attachedDiskPaths(host.poolPath, vmCid, diskCid);
  const what = `detach_disk ${diskCid} from ${vmCid}`;
  const to = join(host.poolPath, diskCid);
  await withVmAndDisk(host, vmCid, diskCid, async () => {
    const metadata = await requireMetadata(host, vmCid, dom);
    const rec = metadata.disks.find((d) => d.cid === diskCid);
    if (!rec) throw new DiskNotAttached(`Disk ${diskCid} is not attached to VM ${vmCid}`);
    const settings = await openSettingsFile(rootPaths(host.poolPath, vmCid).upper, what);
    try {
      const pooled = await poolEntry(host, diskCid);
      // Out already: a detach that died after the move (or an attach before it).
      if (!(rec.serial !== '' && isRecorded(pooled, rec))) {
        const disks = await holdDisksDir(host, vmCid, what);
        try {
          const name = await findAttached(disks, rec);
          if (name === null) {
            if (rec.serial === '' && pooled?.isDirectory()) {
              // a record without identity, the directory already in the pool: out already
            } else {
              const st = await statAt(disks, diskCid);
              throw new CloudError(
                `${what}: the disk's directory is not at ${paths.guest} inside the container (that is ${describe(st)}${st?.isDirectory() ? ', not the disk' : ''}) nor anywhere directly under ${DISKS_MOUNT}: it was moved or removed inside the container. The disk stays attached; delete_vm looks for it in the whole directory`,
              );
            }
          } else {
            if (pooled) throw new CloudError(`${what}: ${to} exists already, so the disk stays attached; move one of them by hand`);
            await rename(at(disks, name), to).catch((e: NodeJS.ErrnoException) => {
              throw new CloudError(`${what}: moving ${DISKS_MOUNT}/${name} out of the container to ${to} failed (${e.code ?? e.message}); the disk stays attached`);
            });
            const moved = await lstat(to);
            if (!isRecorded(moved, rec)) {
              // Swapped between the look and the move: give the container back what it put there.
              const back = `${name}.not-${diskCid}-${randomBytes(4).toString('hex')}`;
              await rename(to, at(disks, back));
              throw new CloudError(`${what}: ${DISKS_MOUNT}/${name} was replaced inside the container while it was being detached (by ${describe(moved)}, now ${DISKS_MOUNT}/${back}); the disk stays attached, try again`);
            }
          }
        } finally {
          await disks.fh.close();
        }
      }
      metadata.disks = metadata.disks.filter((d) => d.cid !== diskCid);
      await writeVmMetadata(host, dom, metadata);
      await rewriteSettings(settings, what, (s) => {
        const persistent = { ...(s.disks.persistent ?? {}) };
        delete persistent[diskCid];
        s.disks.persistent = persistent;
      });
    } finally {
      await settings.close();
    }
    await refreshPool(host);
  });
}

/** The disks the VM's metadata records as attached (never the content of /warden-cpi-dev, which the container controls). */
export async function getDisks(host: Host, vmCid: VMCID): Promise<DiskCID[]> {
  const dom = await requireDomain(host, vmCid);
  const metadata = await readVmMetadata(host, dom);
  return (metadata?.disks ?? []).map((d) => d.cid as DiskCID).sort();
}

/**
 * Where in the tree of `<vm>.disks` the directory with the recorded identity is (the
 * container may have moved it anywhere inside): depth first, links never followed.
 * Only for a tree nobody changes meanwhile (the container is stopped).
 */
async function findAnywhere(dir: Held, rec: Recorded, depth = 0): Promise<{ dir: Held; name: string } | null> {
  for (const entry of await readdir(self(dir), { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const st = await statAt(dir, entry.name);
    if (isRecorded(st, rec)) return { dir, name: entry.name };
    if (depth >= 32) continue;
    const child = await holdDir(dir, entry.name, `${dir.shown}/${entry.name}`, true).catch(() => null);
    if (!child) continue;
    const found: { dir: Held; name: string } | null = await findAnywhere(child, rec, depth + 1);
    if (found?.dir !== child) await child.fh.close();
    if (found) return found;
  }
  return null;
}

/**
 * delete_vm, `orphans --delete`: persistent data outlives the VM. Each disk the VM's
 * metadata records goes back to the pool from wherever the container moved it inside
 * `<vm>.disks`; everything else in there is the container's and is deleted with the
 * directory. Without metadata (the domain is gone) the directories named like a disk of
 * this CPI that is not in the pool go back. One that cannot stops the delete.
 */
export async function moveDisksOut(host: Host, vmCid: VMCID, metadata: VmMetadata | null): Promise<void> {
  const path = join(host.poolPath, vmVolumeNames(vmCid).disks);
  const disks = await holdDir(null, path, path, true).catch((e: unknown) => {
    if (e instanceof ContainerTampered) return null; // not a directory: nothing inside to save
    throw e;
  });
  if (!disks) return;
  const moved: string[] = [];
  try {
    const move = async (from: Held, name: string, disk: string): Promise<void> => {
      const to = join(host.poolPath, disk);
      if (await poolEntry(host, disk)) throw new CloudError(`delete_vm ${vmCid}: disk ${disk} is still inside the VM and ${to} exists too; move one of them by hand, the VM is kept`);
      await rename(at(from, name), to).catch((e: NodeJS.ErrnoException) => {
        throw new CloudError(`delete_vm ${vmCid}: moving disk ${disk} back to ${to} failed (${e.code ?? e.message}); the VM is kept`);
      });
      moved.push(disk);
    };
    if (metadata) {
      for (const rec of metadata.disks) {
        if (rec.serial !== '' && isRecorded(await poolEntry(host, rec.cid), rec)) continue;
        const found: { dir: Held; name: string } | null = rec.serial === '' ? (isRecorded(await statAt(disks, rec.cid), rec) ? { dir: disks, name: rec.cid } : null) : await findAnywhere(disks, rec);
        if (!found) {
          host.log.warn({ vm: vmCid, disk: rec.cid }, 'delete_vm: the directory of an attached disk is no longer in the VM (removed inside the container)');
          continue;
        }
        try {
          await move(found.dir, found.name, rec.cid);
        } finally {
          if (found.dir !== disks) await found.dir.fh.close();
        }
      }
    } else {
      for (const name of await entries(disks)) {
        if (!isCid(name, 'disk', host.config.name_prefix) || !(await statAt(disks, name))?.isDirectory()) continue;
        if (await poolEntry(host, name)) {
          host.log.warn({ vm: vmCid, entry: name }, 'delete_vm: a directory named like a disk that is in the pool is deleted with the VM');
          continue;
        }
        await move(disks, name, name);
      }
    }
  } finally {
    await disks.fh.close();
  }
  if (moved.length) {
    host.log.info({ vm: vmCid, disks: moved }, 'delete_vm moved attached disks back to the pool');
    await refreshPool(host);
  }
}

export async function removeDisk(host: Host, vol: VolRef): Promise<void> {
  await deleteDirVolume(host, vol.name);
}

// libvirt lists a pool's directory as it was at the last refresh: keep its view of the
// moved directories current for has_disk, delete_disk and `orphans`. A refresh refused
// (another call's job in the pool) is retried by the next listing.
async function refreshPool(host: Host): Promise<void> {
  await host.conn.pools.refresh(host.pool, 0).catch((e: unknown) => host.log.debug({ err: String(e) }, 'pool refresh after a disk move failed'));
}
