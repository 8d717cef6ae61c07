// The qemu/kvm backend as a profile over the shared libvirt layer: stemcells are
// qcow2/raw images in a volume, a VM boots from a qcow2 overlay with its settings on a
// config drive, persistent disks are qcow2 volumes hot-plugged as virtio disks, and
// disks can be snapshotted (a backup job) and grown. libvirt's qemu driver has every
// ability the shared layer can use: domain metadata for the VM's record, volume streams
// for tags, locks and claims, NETWORK_UPDATE for DHCP reservations, hot-plug.
import type { BackendProfile } from '../shared/profile.js';
import { domainRecords } from '../shared/vm-metadata.js';
import { volumeTags } from '../shared/sidecar.js';
import { volumeLocks } from '../shared/lock.js';
import { volumeClaims } from '../shared/address-holders.js';
import { dhcpReservations } from '../shared/networking.js';
import { liveDevices } from '../shared/devices.js';
import * as stemcells from './stemcells.js';
import * as vms from './vms.js';
import * as disks from './disks.js';
import * as snapshots from './snapshots.js';

export const qemuProfile: BackendProfile = {
  name: 'qemu',
  stemcells: { create: stemcells.createStemcell, delete: stemcells.deleteStemcell },
  vms: { prepare: vms.prepare, preview: vms.preview },
  disks: {
    volume: (cid, bytes) => ({ name: cid, capacityBytes: bytes, allocationBytes: 0n, format: 'qcow2' }),
    attach: disks.attachDisk,
    detach: disks.detachDisk,
    list: disks.getDisks,
  },
  records: domainRecords,
  tags: volumeTags,
  locks: volumeLocks,
  claims: volumeClaims,
  reservations: dhcpReservations,
  devices: liveDevices,
  snapshots: { snapshotDisk: snapshots.snapshotDisk, deleteSnapshot: snapshots.deleteSnapshot },
  resize: { resizeDisk: disks.resizeDisk },
};
