// LXC persistent disks are directories: a dir volume `<pool>/<disk>` while detached.
// libvirt refuses to hot-plug a <filesystem> into a running container (measured: "device
// type 'filesystem' cannot be attached"), so every container gets one directory at
// create_vm, `<pool>/<vm>.disks` mounted at /warden-cpi-dev, and attach_disk renames
// the disk's directory into it: same file system, so the move is atomic, copies nothing
// and the container sees /warden-cpi-dev/<disk> appear while it runs. detach_disk renames
// it back. Where a disk is, the file system says (it is the truth a crash cannot split);
// the VM's metadata and the agent's settings file follow it.
import { readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host } from '../libvirt/host.js';
import { requireDomain } from '../libvirt/vms.js';
import { readVmMetadata, writeVmMetadata } from '../libvirt/vm-metadata.js';
import { withVolumeLock } from '../libvirt/lock.js';
import { isCid, type DiskCID, type VMCID } from '../cids.js';
import type { DiskHint } from '../driver.js';
import type { VmMetadata } from '../../xml/index.js';
import type { VolRef } from '../../libvirt/index.js';
import { CloudError, DiskNotAttached, DiskNotFound } from '../../errors.js';
import { attachedDiskPaths, rootPaths, vmVolumeNames } from './layout.js';
import { rewriteSettingsFile } from './settings.js';
import { deleteDirVolume } from './dir-volume.js';

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

/** Where a disk of this CPI is: detached in the pool, attached to a VM, or nowhere. */
export async function locateDisk(host: Host, disk: string): Promise<{ vm: VMCID } | 'pool' | null> {
  const prefix = host.config.name_prefix;
  if (!isCid(disk, 'disk', prefix)) return null;
  if (await exists(join(host.poolPath, disk))) return 'pool';
  for (const entry of await readdir(host.poolPath)) {
    if (!entry.endsWith('.disks')) continue;
    const vm = entry.slice(0, -'.disks'.length);
    if (isCid(vm, 'vm', prefix) && (await exists(join(host.poolPath, entry, disk)))) return { vm: vm as VMCID };
  }
  return null;
}

export async function attachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<DiskHint> {
  const dom = await requireDomain(host, vmCid);
  const paths = attachedDiskPaths(host.poolPath, vmCid, diskCid);
  const hint = { path: paths.guest };
  return withVolumeLock(host, vmCid, async () => {
    const where = await locateDisk(host, diskCid);
    if (where === null) throw new DiskNotFound(`Disk ${diskCid} does not exist in pool ${host.config.storage.pool}`);
    if (where !== 'pool' && where.vm !== vmCid) throw new CloudError(`Disk ${diskCid} is attached to VM ${where.vm}; detach it before attaching it to ${vmCid}`);
    // Already inside (a repeated call, or one that died after the move): finish the records.
    if (where === 'pool') {
      await rename(join(host.poolPath, diskCid), paths.host).catch(async (e: NodeJS.ErrnoException) => {
        // Another VM's attach_disk (under its own VM's lock) moved it first.
        const now = e.code === 'ENOENT' ? await locateDisk(host, diskCid) : null;
        if (now && now !== 'pool' && now.vm !== vmCid) throw new CloudError(`Disk ${diskCid} is attached to VM ${now.vm}; detach it before attaching it to ${vmCid}`);
        throw e;
      });
    }
    await record(host, vmCid, dom, diskCid, paths.guest);
    await refreshPool(host);
    return hint;
  });
}

export async function detachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<void> {
  const dom = await requireDomain(host, vmCid);
  const paths = attachedDiskPaths(host.poolPath, vmCid, diskCid);
  await withVolumeLock(host, vmCid, async () => {
    const inside = await exists(paths.host);
    if (inside) {
      await rename(paths.host, join(host.poolPath, diskCid)).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST' || e.code === 'ENOTEMPTY') {
          throw new CloudError(`detach_disk ${diskCid} from ${vmCid}: ${join(host.poolPath, diskCid)} exists already, so the disk stays attached; move one of them by hand`);
        }
        throw e;
      });
    }
    // Records that still name it (a detach that died after the move) are corrected either way.
    const recorded = await record(host, vmCid, dom, diskCid, null);
    if (!inside && !recorded) throw new DiskNotAttached(`Disk ${diskCid} is not attached to VM ${vmCid}`);
    await refreshPool(host);
  });
}

/** The disks inside the VM's disk directory. */
export async function getDisks(host: Host, vmCid: VMCID): Promise<DiskCID[]> {
  await requireDomain(host, vmCid);
  return attachedDisks(host, vmCid);
}

async function attachedDisks(host: Host, vmCid: string): Promise<DiskCID[]> {
  const entries = await readdir(join(host.poolPath, vmVolumeNames(vmCid).disks)).catch(() => [] as string[]);
  return entries.filter((e) => isCid(e, 'disk', host.config.name_prefix)).sort() as DiskCID[];
}

/**
 * delete_vm: persistent data outlives the VM. Every disk still inside goes back to the
 * pool before the VM's directories are deleted; one that cannot stops the delete.
 */
export async function moveDisksOut(host: Host, vmCid: VMCID, _metadata: VmMetadata | null): Promise<void> {
  const moved: string[] = [];
  for (const disk of await attachedDisks(host, vmCid)) {
    const to = join(host.poolPath, disk);
    if (await exists(to)) throw new CloudError(`delete_vm ${vmCid}: disk ${disk} is still inside the VM and ${to} exists too; move one of them by hand, the VM is kept`);
    await rename(attachedDiskPaths(host.poolPath, vmCid, disk).host, to);
    moved.push(disk);
  }
  if (moved.length) {
    host.log.info({ vm: vmCid, disks: moved }, 'delete_vm moved attached disks back to the pool');
    await refreshPool(host);
  }
}

export async function removeDisk(host: Host, vol: VolRef): Promise<void> {
  await deleteDirVolume(host, vol.name);
}

/** VM metadata and settings file: with `guestPath` the disk is attached there, with null it is not. Returns whether the metadata named it. */
async function record(host: Host, vmCid: VMCID, dom: Parameters<typeof readVmMetadata>[1], diskCid: string, guestPath: string | null): Promise<boolean> {
  const metadata = await readVmMetadata(host, dom);
  if (!metadata) throw new CloudError(`VM ${vmCid} has no bosh-libvirt-cpi metadata; it was not created by this CPI`);
  const had = metadata.disks.some((d) => d.cid === diskCid);
  metadata.disks = metadata.disks.filter((d) => d.cid !== diskCid);
  if (guestPath !== null) metadata.disks.push({ cid: diskCid, serial: '', target: guestPath });
  await writeVmMetadata(host, dom, metadata);
  const root = rootPaths(host.poolPath, vmCid);
  await rewriteSettingsFile(root.upper, root.settings, (s) => {
    const persistent = { ...(s.disks.persistent ?? {}) };
    if (guestPath === null) delete persistent[diskCid];
    else persistent[diskCid] = guestPath;
    s.disks.persistent = persistent;
  });
  return had;
}

// libvirt lists a pool's directory as it was at the last refresh: keep its view of the
// moved directories current for has_disk, delete_disk and `orphans`. A refresh refused
// (another call's job in the pool) is retried by the next listing.
async function refreshPool(host: Host): Promise<void> {
  await host.conn.pools.refresh(host.pool, 0).catch((e: unknown) => host.log.debug({ err: String(e) }, 'pool refresh after a disk move failed'));
}
