// virtio-blk serials are capped at 20 characters (udev names the disk
// /dev/disk/by-id/virtio-<serial>): every disk gets exactly 20 characters derived from
// what it is, so the same disk always shows the same name inside the guest.
import { createHash } from 'node:crypto';
import { cidUuid, isShortDiskCid } from '../cids.js';

export const SERIAL_LENGTH = 20;

/**
 * A persistent disk's serial. A 20-character CID (cids.ts) is its own serial: the agent
 * looks the CID up under /dev/disk/by-id/ and finds `virtio-<CID>`, whether it takes the
 * CID's first 20 characters (agents before April 2023) or all of it (since). A long-form
 * CID (`<prefix>disk-<uuid>`, from before, or under a long name prefix) cannot be a
 * serial: it keeps the first 20 hex digits of its uuid, as it always had, and agents
 * find it by the hint's path.
 */
export function persistentDiskSerial(diskCid: string): string {
  if (isShortDiskCid(diskCid)) return diskCid;
  return cidUuid(diskCid).replace(/-/g, '').slice(0, SERIAL_LENGTH);
}

/** Serial of a disk a VM owns (root, ephemeral): a hash of the VM CID and the role. */
export function ownedDiskSerial(vmCid: string, role: 'root' | 'ephemeral'): string {
  return createHash('sha256').update(`${vmCid}:${role}`).digest('hex').slice(0, SERIAL_LENGTH);
}
