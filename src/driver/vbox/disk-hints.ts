// What the BOSH agent inside a VirtualBox VM finds a hard disk by (docs/vbox-notes.md §4).
//
// VirtualBox gives every emulated ATA/SATA hard disk the serial "VB%08x-%08x" of the
// medium's UUID words au32[0] and au32[3] (VirtualBox DevATA/DevAHCI; the same formula
// is used against a SATA controller in public Vagrantfiles). An RTUUID keeps the first
// three fields in host (little-endian) order and the last eight bytes as written, so
// au32[0] prints as the UUID's first 8 hex digits and au32[3] as its last 8 hex digits
// with the byte order reversed. udev names the disk
// /dev/disk/by-id/ata-VBOX_HARDDISK_<serial> (model "VBOX HARDDISK").
//
// - OpenStack stemcells (virtio resolver): the disk's CID never appears in that name, so
//   the ID lookup times out (500 ms) and the mapped resolver opens the hint's `path`,
//   following symlinks: the by-id path finds the disk whatever its /dev/sdX letter.
// - vSphere stemcells (scsi resolver) glob /dev/disk/by-id/*<id> with dashes removed
//   from id: the VirtualBox CPI's `<first 8 hex>*` matches the by-id name. (They are
//   EFI-only and cannot boot through libvirt 9.0's vbox driver; kept for completeness.)
import type { DiskHint } from '../../agent/settings.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function normalisedUuid(mediumUuid: string): string {
  const u = typeof mediumUuid === 'string' ? mediumUuid.toLowerCase() : '';
  if (!UUID_RE.test(u)) throw new Error(`Invalid medium UUID: got ${JSON.stringify(mediumUuid)}, expected 8-4-4-4-12 hex digits`);
  return u;
}

/** The ATA serial VirtualBox reports for a hard disk with this medium UUID, e.g. VBb1ade788-78563412. */
export function vboxAtaSerial(mediumUuid: string): string {
  const u = normalisedUuid(mediumUuid);
  const last = u.slice(-8);
  const reversed = last.match(/../g)!.reverse().join('');
  return `VB${u.slice(0, 8)}-${reversed}`;
}

/** The guest's stable path for that disk. */
export function vboxDiskByIdPath(mediumUuid: string): string {
  return `/dev/disk/by-id/ata-VBOX_HARDDISK_${vboxAtaSerial(mediumUuid)}`;
}

/**
 * The hint for a persistent disk: a `path` the mapped resolver of OpenStack stemcells
 * opens, and an `id` the scsi resolver of vSphere stemcells globs (the first UUID field,
 * as the VirtualBox CPI sent it).
 */
export function vboxPersistentDiskHint(mediumUuid: string): DiskHint {
  const u = normalisedUuid(mediumUuid);
  return { path: vboxDiskByIdPath(u), id: `${u.slice(0, 8)}*` };
}
