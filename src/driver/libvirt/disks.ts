// Persistent disks as every backend keeps them: a volume named after the CID (its
// format is the backend's: DiskStore.volume), tags in a sidecar volume (sidecar.ts).
// Attaching, detaching and listing a VM's disks are the backend's (profile.ts).
import type { Host } from './host.js';
import { createVolume, findVolume } from './host.js';
import { deleteSidecar, readSidecar, sidecarName, writeSidecar } from './sidecar.js';
import { domainsUsing, volumePath } from './volume-users.js';
import { withVolumeLock } from './lock.js';
import { newCid, isCid, type DiskCID, type VMCID } from '../cids.js';
import type { BackendProfile } from '../profile.js';
import type { VolRef } from '../../libvirt/index.js';
import { CloudError, DiskNotFound, NoDiskSpace } from '../../errors.js';

const MiB = 1024n * 1024n;

export async function requireDisk(host: Host, cid: string): Promise<VolRef> {
  const vol = isCid(cid, 'disk', host.config.name_prefix) ? await findVolume(host, cid) : null;
  if (!vol) throw new DiskNotFound(`Disk ${cid} does not exist in pool ${host.config.storage.pool}`);
  return vol;
}

export async function createDisk(host: Host, profile: BackendProfile, sizeMiB: number, vmCid: VMCID | null): Promise<DiskCID> {
  if (vmCid !== null && !(isCid(vmCid, 'vm', host.config.name_prefix) && (await host.conn.domains.lookupByName(vmCid).then(() => true, () => false)))) {
    // vm_cid is only a locality hint; on one libvirt host every disk is local. An
    // unknown VM is still worth a line in the log.
    host.log.warn({ vm: vmCid }, 'create_disk: the VM given as locality hint does not exist');
  }
  const bytes = BigInt(sizeMiB) * MiB;
  const info = await host.conn.pools.getInfo(host.pool);
  // Disks are sparse, so the pool may be overcommitted; a disk larger than the
  // whole pool, though, could never be filled and is refused.
  if (bytes > info.capacity) {
    throw new NoDiskSpace(`Cannot create a ${sizeMiB} MiB disk: pool ${host.config.storage.pool} holds ${info.capacity / MiB} MiB in all`, { okToRetry: false });
  }
  const cid = newCid(host.config.name_prefix, 'disk');
  await createVolume(host, profile.disks.volume(cid, bytes));
  return cid;
}

export async function deleteDisk(host: Host, profile: BackendProfile, cid: DiskCID): Promise<void> {
  const vol = await requireDisk(host, cid);
  const users = await domainsUsing(host, [await host.conn.volumes.getPath(vol), volumePath(host, sidecarName(cid))]);
  if (users.length) throw new CloudError(`Disk ${cid} is attached to VM ${users.join(', ')}; detach it before deleting it`);
  if (profile.disks.remove) await profile.disks.remove(host, vol);
  else await host.conn.volumes.delete(vol, 0);
  await deleteSidecar(host, cid);
}

export async function hasDisk(host: Host, cid: DiskCID): Promise<boolean> {
  return isCid(cid, 'disk', host.config.name_prefix) && (await findVolume(host, cid)) !== null;
}

export async function setDiskMetadata(host: Host, cid: DiskCID, tags: Record<string, string>): Promise<void> {
  await requireDisk(host, cid);
  // Read-modify-write of the sidecar: serialized across CPI processes.
  await withVolumeLock(host, cid, async () => {
    const current = (await readSidecar(host, cid)) ?? { kind: 'disk' };
    const merged = { ...current, tags: { ...((current.tags as Record<string, string>) ?? {}), ...tags } };
    await writeSidecar(host, cid, merged);
  });
}

export async function readDiskMetadata(host: Host, cid: DiskCID): Promise<Record<string, string>> {
  await requireDisk(host, cid);
  return ((await readSidecar(host, cid))?.tags as Record<string, string>) ?? {};
}

