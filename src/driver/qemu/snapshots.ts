// A snapshot is a full copy of the disk volume, named after the snapshot CID.
// Consistency: for a detached disk (or a stopped VM) libvirt copies it server-side
// (STORAGE_VOL_CREATE_XML_FROM, qemu-img convert; one call, allowed a minute per GiB
// allocated) and the copy is exact. For a disk attached to a running VM, QEMU holds the
// image's write lock, so qemu-img cannot open it; instead the CPI starts a libvirt
// backup job (virDomainBackupBegin, push mode) that has QEMU copy the disk into the
// snapshot volume as it was when the job started, while the guest keeps running: blocks
// the guest overwrites during the copy are copied out first (copy-before-write). That
// snapshot is crash-consistent: what a power cut at that instant would leave; writes
// the guest still holds in its own page cache are not in it.
// The job belongs to the domain, not to this process: if the CPI dies during the copy,
// the job still finishes (or fails) on its own and the VM is never left paused.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Host } from '../shared/host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from '../shared/host.js';
import { findAttachment } from './disks.js';
import { requireDisk } from '../shared/disks.js';
import { deleteSidecar, writeSidecar } from '../shared/sidecar.js';
import { sidecarName } from '../shared/names.js';
import { domainsUsing, volumePath } from '../shared/volume-users.js';
import { newCid, isCid, type DiskCID, type SnapshotCID } from '../cids.js';
import { renderBackup, renderVolume } from '../../xml/index.js';
import { CloudError } from '../../errors.js';
import {
  BackupBeginFlags, DomainJobOperation, DomainJobType, DomainState, ErrorCode, JobStatsFlags, isLibvirtError, type DomainRef,
} from '../../libvirt/index.js';

export async function snapshotDisk(host: Host, diskCid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
  const vol = await requireDisk(host, diskCid);
  const details = await volumeDetails(host, vol);
  const snap = newCid(host.config.name_prefix, 'snap');
  const attached = await findAttachment(host, await host.conn.volumes.getPath(vol));
  const live = attached !== null && (await host.conn.domains.getState(attached.dom, 0)).state !== DomainState.SHUTOFF;
  if (!live) {
    const xml = renderVolume({ name: snap, capacityBytes: details.capacityBytes, allocationBytes: 0n, format: 'qcow2' });
    try {
      const timeoutMs = copyTimeoutMs(details.allocationBytes, host.config.libvirt.call_timeout_seconds * 1000);
      await host.conn.volumes.createXMLFrom(host.pool, xml, vol, 0, timeoutMs);
    } catch (e) {
      await deleteVolumeIfExists(host, snap).catch(() => undefined);
      throw e;
    }
  } else {
    await backupWhileRunning(host, attached.dom, attached.disk.target, snap, details.capacityBytes);
  }
  try {
    await writeSidecar(host, snap, { kind: 'snapshot', disk: diskCid, format: 'qcow2', consistency: live ? 'crash-consistent (backup job; the VM kept running)' : 'exact (disk detached or VM off)', metadata, created_at: new Date().toISOString() });
  } catch (e) {
    await deleteVolumeIfExists(host, snap).catch(() => undefined);
    throw e;
  }
  return snap;
}

/**
 * How long the server-side copy of a detached disk may take. It is one call, in which
 * libvirtd runs qemu-img convert over the disk's whole allocation, so the usual per-call
 * bound (`libvirt.call_timeout_seconds`) would fail every large disk: allow a minute per
 * GiB allocated (a floor of about 17 MiB/s), never less than the call timeout.
 */
function copyTimeoutMs(allocationBytes: bigint, callTimeoutMs: number): number {
  const perGiBMs = 60_000;
  return Math.max(callTimeoutMs, Math.ceil((Number(allocationBytes) / 2 ** 30) * perGiBMs));
}

/** Polling a backup job: often at first (small disks finish in milliseconds), then once a second. */
const POLL_MS = [20, 50, 100, 200, 500, 1000];

async function backupWhileRunning(host: Host, dom: DomainRef, target: string, snap: string, capacityBytes: bigint): Promise<void> {
  // The target must exist with the disk's virtual size; libvirt reuses it as it is.
  const vol = await createVolume(host, { name: snap, capacityBytes, allocationBytes: 0n, format: 'qcow2' });
  let started = false;
  try {
    const targetFile = await host.conn.volumes.getPath(vol);
    try {
      await host.conn.domains.backupBegin(dom, renderBackup({ disk: target, targetFile, format: 'qcow2' }), null, BackupBeginFlags.REUSE_EXTERNAL);
    } catch (e) {
      if (isLibvirtError(e, ErrorCode.NO_SUPPORT) || isLibvirtError(e, ErrorCode.OPERATION_UNSUPPORTED)) {
        throw new CloudError(`snapshot_disk: this host's libvirt cannot run backup jobs, which a snapshot of a disk attached to a running VM needs (domain capabilities lack <backup supported='yes'/>; libvirt said: ${(e as Error).message}); detach the disk or stop the VM to snapshot it`);
      }
      throw e;
    }
    started = true;
    // The job is the domain's one asynchronous job until it ends; then its final
    // statistics say how it ended (reading them also clears them).
    for (let i = 0; (await host.conn.domains.getJobStats(dom, 0)).type !== DomainJobType.NONE; i++) {
      await sleep(POLL_MS[Math.min(i, POLL_MS.length - 1)]!);
    }
    started = false;
    const done = await host.conn.domains.getJobStats(dom, JobStatsFlags.COMPLETED);
    if (done.type !== DomainJobType.COMPLETED || done.params.operation !== DomainJobOperation.BACKUP) {
      const how = done.type === DomainJobType.FAILED ? `failed: ${String(done.params.errmsg ?? 'libvirt gave no reason')}`
        : done.type === DomainJobType.CANCELLED ? 'was cancelled (virsh domjobabort?)'
          : `ended without a result (job type ${done.type}, operation ${String(done.params.operation ?? 'unknown')})`;
      throw new CloudError(`snapshot_disk: the backup job copying ${target} of ${dom.name} ${how}`);
    }
  } catch (e) {
    // Stop a job that is still copying into the volume before deleting the volume.
    if (started) await host.conn.domains.abortJob(dom).catch(() => undefined);
    await deleteVolumeIfExists(host, snap).catch(() => undefined);
    throw e;
  }
}

/** Deleting a snapshot that does not exist succeeds (the director may retry). */
export async function deleteSnapshot(host: Host, cid: SnapshotCID): Promise<void> {
  if (!isCid(cid, 'snap', host.config.name_prefix)) return;
  const users = await domainsUsing(host, [volumePath(host, cid), volumePath(host, sidecarName(cid))]);
  if (users.length) throw new CloudError(`Snapshot ${cid} is in use by domain(s) ${users.join(', ')}; it is kept`);
  if (await findVolume(host, cid)) await deleteVolumeIfExists(host, cid);
  await deleteSidecar(host, cid);
}
