// Stemcells are volumes named after their CID, holding root.img as uploaded (qcow2 or
// raw, detected from the file's magic). VMs boot from qcow2 overlays backed by them.
import type { Host } from '../shared/host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from '../shared/host.js';
import { withStemcellLock } from '../shared/lock.js';
import { isConnectionLost, reconnect } from '../shared/reconnect.js';
import { openRootImage, type ImageFormat } from './image.js';
import { readSidecar, writeSidecar, deleteSidecar } from '../shared/sidecar.js';
import { domainsUsing, volumePath } from '../shared/volume-users.js';
import { newCid, isCid, type StemcellCID } from '../cids.js';
import type { CloudProperties } from '../driver.js';
import { CloudError, CpiError } from '../../errors.js';
import { VolStreamFlags, isLibvirtError, ErrorCode } from '../../libvirt/index.js';
import { listVmMetadata } from '../shared/vm-metadata.js';
import { Suffix, hasSuffix, sidecarName, withoutSuffix } from '../shared/names.js';


export interface StemcellInfo {
  cid: StemcellCID;
  path: string;
  format: ImageFormat;
  virtualSize: bigint;
}

export async function createStemcell(host: Host, imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
  const cid = newCid(host.config.name_prefix, 'sc');
  const image = await openRootImage(imagePath);
  const declared = typeof props.disk_format === 'string' ? props.disk_format : undefined;
  if (declared && declared !== image.format) {
    host.log.warn({ declared, detected: image.format }, 'stemcell manifest disk_format differs from the image; using what the image is');
  }
  try {
    try {
      const vol = await createVolume(host, { name: cid, capacityBytes: BigInt(image.fileSize), allocationBytes: 0n, format: 'raw' });
      // A raw root.img is a whole disk, mostly zeros the tarball stores in full: sent as
      // holes, they are neither transferred nor written, and the volume stays sparse.
      await host.conn.volumes.upload(vol, image.stream, { offset: 0n, length: BigInt(image.fileSize), flags: VolStreamFlags.SPARSE_STREAM });
      await writeSidecar(host, cid, {
        kind: 'stemcell',
        format: image.format,
        virtual_size: image.virtualSize.toString(),
        name: props.name ?? null,
        version: props.version ?? null,
        tags,
        created_at: new Date().toISOString(),
      });
    } catch (e) {
      const removal = await removePartialImport(host, cid);
      throw importFailed(host, cid, imagePath, e, removal);
    }
  } finally {
    image.close();
  }
  host.log.info({ stemcell: cid, format: image.format, bytes: image.fileSize }, 'stemcell imported');
  return cid;
}

/**
 * A failed import leaves nothing behind. After a lost connection (a create whose answer
 * was lost may have made the volume) the removal runs on a new one. Returns why it could
 * not remove the partial volume, or null when nothing is left.
 */
async function removePartialImport(host: Host, cid: string): Promise<string | null> {
  for (let attempt = 0; ; attempt++) {
    try {
      await deleteVolumeIfExists(host, cid);
      await deleteSidecar(host, cid);
      return null;
    } catch (e) {
      if (attempt === 0 && isConnectionLost(e) && (await reconnect(host).then(() => true, () => false))) continue;
      host.log.error({ stemcell: cid, err: String(e) }, 'could not remove the partial stemcell volume; bosh-libvirt-cpi orphans lists it');
      return e instanceof Error ? e.message : String(e);
    }
  }
}

/**
 * The error create_stemcell answers with after a failed import. The director never gets
 * this CID, so what could not be removed is named here, with what removes it; a lost
 * connection is said as such (a retry uploads the image again).
 */
function importFailed(host: Host, cid: string, imagePath: string, e: unknown, removal: string | null): unknown {
  const left = removal === null
    ? ''
    : `; the partial stemcell volume ${cid} (pool ${host.config.storage.pool}) is LEFT BEHIND because removing it failed too (${removal}): the director never received its CID, and \`bosh-libvirt-cpi orphans --delete\` removes it (it lists a stemcell volume without its ${sidecarName(cid)} once unchanged for --min-age, 600 s by default)`;
  if (isConnectionLost(e) || isLibvirtError(e, ErrorCode.OPERATION_TIMEOUT)) {
    const done = removal === null ? `; the partial stemcell volume ${cid} was removed, nothing is left: uploading again is safe` : left;
    return new CloudError(`create_stemcell of ${imagePath} lost its connection to libvirt (${host.config.libvirt.uri}) while importing it as ${cid}: ${(e as Error).message}${done}`, { okToRetry: true, cause: e });
  }
  if (removal === null) return e;
  const message = `create_stemcell of ${imagePath} failed: ${e instanceof Error ? e.message : String(e)}${left}`;
  return e instanceof CpiError ? new (e.constructor as typeof CpiError)(message, { okToRetry: e.okToRetry, cause: e }) : new CloudError(message, { cause: e });
}

export async function findStemcell(host: Host, cid: string): Promise<StemcellInfo | null> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return null;
  const vol = await findVolume(host, cid);
  if (!vol) return null;
  const meta = await readSidecar(host, cid);
  const path = await host.conn.volumes.getPath(vol);
  if (!meta || (meta.format !== 'qcow2' && meta.format !== 'raw')) {
    throw new CloudError(`Stemcell ${cid} has no readable metadata volume (${sidecarName(cid)}); it was not imported completely: delete and upload it again`);
  }
  return { cid: cid as StemcellCID, path, format: meta.format, virtualSize: BigInt(String(meta.virtual_size)) };
}

export async function deleteStemcell(host: Host, cid: StemcellCID): Promise<boolean> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return false;
  return withStemcellLock(host, cid, async () => {
    const vol = await findVolume(host, cid);
    if (!vol) {
      await deleteSidecar(host, cid);
      return false;
    }
    // Deleting the backing file of a live overlay would corrupt that VM's root disk.
    const users = await stemcellUsers(host, cid, await host.conn.volumes.getPath(vol));
    if (users.length > 0) {
      throw new CloudError(`Stemcell ${cid} is still the base of ${users.length} VM(s) (${users.slice(0, 5).join(', ')}); delete them first`);
    }
    // Domains of other directors or made by hand may use it too, as a disk or a backing file.
    const others = await domainsUsing(host, [volumePath(host, cid), volumePath(host, sidecarName(cid))]);
    if (others.length > 0) throw new CloudError(`Stemcell ${cid} is in use by domain(s) ${others.slice(0, 5).join(', ')} (a disk or a disk's backing file); it is kept`);
    await deleteVolumeIfExists(host, cid);
    await deleteSidecar(host, cid);
    return true;
  });
}

/**
 * VMs based on the stemcell: those whose metadata names it, and the owners of root
 * overlays backed by it. A create_vm that has made its overlay but not yet defined its
 * domain has only the latter.
 */
async function stemcellUsers(host: Host, cid: string, path: string): Promise<string[]> {
  const users = new Set((await listVmMetadata(host)).filter((m) => m.metadata.stemcellCid === cid).map((m) => m.name));
  // Only root overlays (`<vm>.root`, see ownedVolumeNames in vms.ts) are backed by a
  // stemcell: reading just those keeps this to one call per VM. Any prefix: another
  // CPI's VM on this stemcell would be corrupted just the same.
  for (const vol of await host.conn.pools.listAllVolumes(host.pool, 0)) {
    if (!hasSuffix(vol.name, Suffix.root)) continue;
    const backing = await volumeDetails(host, vol).then(
      (v) => v.backing?.path,
      (e: unknown) => {
        if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return undefined; // deleted meanwhile
        throw e;
      },
    );
    if (backing === path) users.add(withoutSuffix(vol.name, Suffix.root));
  }
  return [...users];
}
