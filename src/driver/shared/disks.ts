// Persistent disks as every backend keeps them: a volume named after the CID (its
// format is the backend's: DiskStore.volume), tags in the profile's TagStore.
// Attaching, detaching and listing a VM's disks are the backend's (profile.ts).
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume } from './host.js';
import { isConnectionLost, reconnect } from './reconnect.js';
import { domainsUsing, volumePath } from './volume-users.js';
import { newCid, isCid, type DiskCID, type VMCID } from '../cids.js';
import type { BackendProfile } from './profile.js';

/** What the disk functions use of a backend's profile. */
export type DiskStores = Pick<BackendProfile, 'disks' | 'tags' | 'locks'>;
import { ErrorCode, isLibvirtError, type VolRef } from '../../libvirt/index.js';
import { CloudError, DiskNotFound, NoDiskSpace } from '../../errors.js';
import { faultValue } from '../../util/faults.js';

const MiB = 1024n * 1024n;

export async function requireDisk(host: Host, cid: string): Promise<VolRef> {
  const vol = isCid(cid, 'disk', host.config.name_prefix) ? await findVolume(host, cid) : null;
  if (!vol) throw new DiskNotFound(`Disk ${cid} does not exist in pool ${host.config.storage.pool}`);
  return vol;
}

export async function createDisk(host: Host, profile: DiskStores, sizeMiB: number, vmCid: VMCID | null): Promise<DiskCID> {
  if (vmCid !== null && !(isCid(vmCid, 'vm', host.config.name_prefix) && (await host.conn.domains.lookupByName(vmCid).then(() => true, () => false)))) {
    // vm_cid is only a locality hint; on one libvirt host every disk is local. An
    // unknown VM is still worth a line in the log.
    host.log.warn({ vm: vmCid }, 'create_disk: the VM given as locality hint does not exist');
  }
  const bytes = BigInt(sizeMiB) * MiB;
  const own = profile.disks.create;
  if (own) {
    // The backend's own files (no pool volume): a taken name is drawn again, as below.
    for (let attempt = 1; ; attempt++) {
      const cid = (newCid(host.config.name_prefix, 'disk')) as DiskCID;
      if ((await own(host, cid, bytes)) === 'made') return cid;
      if (attempt >= CREATE_ATTEMPTS) throw new CloudError(`create_disk: ${CREATE_ATTEMPTS} drawn disk names were all taken`);
    }
  }
  const info = await host.conn.pools.getInfo(host.pool);
  // Disks are sparse, so the pool may be overcommitted; a disk larger than the
  // whole pool, though, could never be filled and is refused.
  if (bytes > info.capacity) {
    throw new NoDiskSpace(`Cannot create a ${sizeMiB} MiB disk: pool ${host.config.storage.pool} holds ${info.capacity / MiB} MiB in all`, { okToRetry: false });
  }
  // A 20-character CID has a short random part: a name already taken (a collision, or
  // another CPI process that drew the same) is refused atomically by the pool, and a
  // new CID is drawn.
  for (let attempt = 1; ; attempt++) {
    // (tests force a collision of the first draw with an existing disk: first-disk-cid=<cid>)
    const forced = attempt === 1 ? faultValue('first-disk-cid') : undefined;
    const cid = (forced ?? newCid(host.config.name_prefix, 'disk')) as DiskCID;
    try {
      await createVolume(host, profile.disks.volume(cid, bytes));
      return cid;
    } catch (e) {
      if (isConnectionLost(e)) throw await lostWhileCreating(host, profile, cid, e);
      if (!isLibvirtError(e, ErrorCode.STORAGE_VOL_EXIST) || attempt >= CREATE_ATTEMPTS) throw e;
      host.log.info({ disk: cid }, 'create_disk: the name is taken, drawing another');
    }
  }
}

const CREATE_ATTEMPTS = 5;

/**
 * create_disk's connection died under the volume's creation: libvirt may have made it and
 * its answer be lost. The director never gets this CID and `orphans` never lists a disk
 * (disks are the director's), so the volume is removed on a new connection, or named.
 */
async function lostWhileCreating(host: Host, profile: DiskStores, cid: string, e: unknown): Promise<CloudError> {
  const lost = `create_disk lost its connection to libvirt (${host.config.libvirt.uri}) while creating disk ${cid}: ${(e as Error).message}`;
  const pool = host.config.storage.pool;
  try {
    await reconnect(host);
    await deleteVolumeIfExists(host, cid);
    await profile.tags.remove(host, cid);
  } catch (again) {
    host.log.error({ disk: cid, err: String(again) }, 'could not remove the disk volume create_disk may have made');
    return new CloudError(
      `${lost}; the volume ${cid} in pool ${pool} may be LEFT BEHIND, because removing it failed too (${(again as Error).message}): the director never received its CID; remove it with \`virsh vol-delete ${cid} --pool ${pool}\` once libvirt answers`,
      { okToRetry: true, cause: e },
    );
  }
  return new CloudError(`${lost}; on a new connection volume ${cid} was removed (or had not been made): nothing is left, and calling create_disk again is safe`, { okToRetry: true, cause: e });
}

/**
 * A disk that exists, wherever it is: a volume of the pool, or (for a backend that
 * moves attached disks out of the pool's listing) attached to a VM.
 */
async function requireDiskAnywhere(host: Host, profile: Pick<BackendProfile, 'disks'>, cid: string): Promise<void> {
  if (!profile.disks.locate || !isCid(cid, 'disk', host.config.name_prefix)) {
    await requireDisk(host, cid);
    return;
  }
  if ((await profile.disks.locate(host, cid as DiskCID)) === null) throw new DiskNotFound(`Disk ${cid} does not exist in pool ${host.config.storage.pool}`);
}

export async function deleteDisk(host: Host, profile: DiskStores, cid: DiskCID): Promise<void> {
  if (profile.disks.delete) {
    if (!isCid(cid, 'disk', host.config.name_prefix)) throw new DiskNotFound(`Disk ${cid} does not exist on ${host.config.libvirt.uri}`);
    await profile.disks.delete(host, cid);
    await profile.tags.remove(host, cid);
    return;
  }
  const where = isCid(cid, 'disk', host.config.name_prefix) ? await profile.disks.locate?.(host, cid) : undefined;
  if (where && where !== 'pool') throw new CloudError(`Disk ${cid} is attached to VM ${where.vm}; detach it before deleting it`);
  // Moved back into the pool since libvirt last listed it: make libvirt see it again.
  if (where === 'pool' && !(await findVolume(host, cid))) await host.conn.pools.refresh(host.pool, 0).catch(() => undefined);
  const vol = await requireDisk(host, cid);
  const users = await domainsUsing(host, [await host.conn.volumes.getPath(vol), ...profile.tags.volumes(cid).map((name) => volumePath(host, name))]);
  if (users.length) throw new CloudError(`Disk ${cid} is attached to VM ${users.join(', ')}; detach it before deleting it`);
  if (profile.disks.remove) await profile.disks.remove(host, vol);
  else await host.conn.volumes.delete(vol, 0);
  await profile.tags.remove(host, cid);
}

export async function hasDisk(host: Host, cid: DiskCID, profile: Pick<BackendProfile, 'disks'>): Promise<boolean> {
  if (!isCid(cid, 'disk', host.config.name_prefix)) return false;
  if (profile.disks.locate) return (await profile.disks.locate(host, cid)) !== null;
  return (await findVolume(host, cid)) !== null;
}

export async function setDiskMetadata(host: Host, cid: DiskCID, tags: Record<string, string>, profile: DiskStores): Promise<void> {
  await requireDiskAnywhere(host, profile, cid);
  // Read-modify-write of the tags: serialized across CPI processes.
  await profile.locks.with(host, cid, async () => {
    const current = (await profile.tags.read(host, cid)) ?? { kind: 'disk' };
    const merged = { ...current, tags: { ...((current.tags as Record<string, string>) ?? {}), ...tags } };
    await profile.tags.write(host, cid, merged);
  });
}

export async function readDiskMetadata(host: Host, cid: DiskCID, profile: DiskStores): Promise<Record<string, string>> {
  await requireDiskAnywhere(host, profile, cid);
  return ((await profile.tags.read(host, cid))?.tags as Record<string, string>) ?? {};
}

