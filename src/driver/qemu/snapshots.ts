// A snapshot is a full copy of the disk volume, named after the snapshot CID.
// Consistency: for a detached disk (or a stopped VM) libvirt copies it server-side
// (STORAGE_VOL_CREATE_XML_FROM, qemu-img convert) and the copy is exact. For a disk
// attached to a running VM, QEMU holds the image's write lock, so qemu-img cannot open
// it; the domain is paused instead (QEMU drains in-flight I/O first), the file's bytes
// are streamed through libvirt (sparse download → sparse upload, bounded memory) and the domain
// resumes. That snapshot is crash-consistent: what a power cut at that instant would
// leave; writes the guest still holds in its own page cache are not in it. The pause
// lasts as long as the copy, which is proportional to the disk's allocated size.
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from './host.js';
import { findAttachment, requireDisk } from './disks.js';
import { deleteSidecar, writeSidecar } from './sidecar.js';
import { newCid, isCid, type DiskCID, type SnapshotCID } from '../cids.js';
import { renderVolume } from '../../xml/index.js';
import { DomainState, VolStreamFlags, type DomainRef, type VolRef } from '../../libvirt/index.js';

export async function snapshotDisk(host: Host, diskCid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
  const vol = await requireDisk(host, diskCid);
  const details = await volumeDetails(host, vol);
  const snap = newCid(host.config.name_prefix, 'snap');
  const attached = await findAttachment(host, await host.conn.volumes.getPath(vol));
  const live = attached !== null && (await host.conn.domains.getState(attached.dom, 0)).state !== DomainState.SHUTOFF;
  if (!live) {
    const xml = renderVolume({ name: snap, capacityBytes: details.capacityBytes, allocationBytes: 0n, format: 'qcow2' });
    try {
      await host.conn.volumes.createXMLFrom(host.pool, xml, vol, 0);
    } catch (e) {
      await deleteVolumeIfExists(host, snap).catch(() => undefined);
      throw e;
    }
  } else {
    await copyWhilePaused(host, attached.dom, vol, snap);
  }
  try {
    await writeSidecar(host, snap, { kind: 'snapshot', disk: diskCid, format: 'qcow2', consistency: live ? 'crash-consistent (VM paused)' : 'exact (disk detached or VM off)', metadata, created_at: new Date().toISOString() });
  } catch (e) {
    await deleteVolumeIfExists(host, snap).catch(() => undefined);
    throw e;
  }
  return snap;
}

async function copyWhilePaused(host: Host, dom: DomainRef, vol: VolRef, snap: string): Promise<void> {
  const wasRunning = (await host.conn.domains.getState(dom, 0)).state === DomainState.RUNNING;
  if (wasRunning) await host.conn.domains.suspend(dom);
  try {
    // The image file's own length (qcow2 metadata included), read while nothing writes.
    const physical = BigInt(/<physical unit='bytes'>(\d+)<\/physical>/.exec(await host.conn.volumes.getXMLDesc(vol, 0))?.[1] ?? '0');
    const length = physical > 0n ? physical : (await host.conn.volumes.getInfo(vol)).allocation;
    const target = await createVolume(host, { name: snap, capacityBytes: length, allocationBytes: 0n, format: 'raw' });
    try {
      // Sparse both ways: the daemon skips the image's holes when reading, the upload
      // skips runs of zeros when writing. Less to move means a shorter pause.
      const sparse = VolStreamFlags.SPARSE_STREAM;
      await host.conn.volumes.upload(target, host.conn.volumes.download(vol, { offset: 0n, length, flags: sparse }), { offset: 0n, length, flags: sparse });
    } catch (e) {
      await deleteVolumeIfExists(host, snap).catch(() => undefined);
      throw e;
    }
  } finally {
    if (wasRunning) await host.conn.domains.resume(dom);
  }
}

/** Deleting a snapshot that does not exist succeeds (the director may retry). */
export async function deleteSnapshot(host: Host, cid: SnapshotCID): Promise<void> {
  if (!isCid(cid, 'snap')) return;
  if (await findVolume(host, cid)) await deleteVolumeIfExists(host, cid);
  await deleteSidecar(host, cid);
}
