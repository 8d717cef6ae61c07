// virtio-blk serials are capped at 20 characters and the agent's ID resolver needs at
// least 20 (bosh-agent devicepathresolver): every disk gets exactly 20 hex characters
// derived from what it belongs to, so the same disk always shows the same
// /dev/disk/by-id/virtio-<serial> inside the guest.
import { createHash } from 'node:crypto';
import { cidUuid } from '../cids.js';

export const SERIAL_LENGTH = 20;

/** A persistent disk's serial: the first 20 hex digits of its CID's uuid (greppable). */
export function persistentDiskSerial(diskCid: string): string {
  return cidUuid(diskCid).replace(/-/g, '').slice(0, SERIAL_LENGTH);
}

/** Serial of a disk a VM owns (root, ephemeral): a hash of the VM CID and the role. */
export function ownedDiskSerial(vmCid: string, role: 'root' | 'ephemeral'): string {
  return createHash('sha256').update(`${vmCid}:${role}`).digest('hex').slice(0, SERIAL_LENGTH);
}
