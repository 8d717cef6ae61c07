// The LXC backend as a profile over the shared libvirt layer: a stemcell is a root
// filesystem directory (a dir volume), a VM is a system container on an overlay of it
// mounted by the libvirt lxc hook, its settings are a file inside it, its NICs are set
// by libvirt, and persistent disks are directories moved into and out of a directory
// mounted in every container. No snapshots and no resize: a directory has neither a
// point-in-time copy nor a size (docs/lxc.md). The VM's record, tags, locks, claims and
// DHCP reservations are kept as for qemu (libvirt's lxc driver has domain metadata,
// volume streams and the same networks); it changes no devices after create_vm.
import type { BackendProfile } from '../shared/profile.js';
import { domainRecords } from '../shared/vm-metadata.js';
import { volumeTags } from '../shared/sidecar.js';
import { volumeLocks } from '../shared/lock.js';
import { volumeClaims } from '../shared/address-holders.js';
import { dhcpReservations } from '../shared/networking.js';
import type { Config } from '../../config/schema.js';
import { CloudError } from '../../errors.js';
import { DomainShutdownFlags } from '../../libvirt/index.js';
import * as stemcells from './stemcells.js';
import * as vms from './vms.js';
import * as disks from './disks.js';

/**
 * The root filesystems, disk directories and settings files are written straight into
 * the pool's directory: the CPI must run on the libvirt host itself.
 */
export function checkLocal(uri: string): void {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return; // the connection would have refused it already
  }
  const transport = u.protocol.replace(/:$/, '').split('+')[1];
  const local = (transport === undefined || transport === 'unix') && u.hostname === '';
  if (!local) {
    throw new CloudError(
      `libvirt.uri ${JSON.stringify(uri)} is not local: the lxc backend writes each container's root filesystem, settings file and disk directories into the storage pool's directory itself, so the CPI must run on the libvirt host (use lxc:///)`,
    );
  }
}

export const lxcProfile: BackendProfile = {
  name: 'lxc',
  checkConfig: (config: Config) => checkLocal(config.libvirt.uri),
  stemcells: { create: stemcells.createStemcell, delete: stemcells.deleteStemcell },
  // SIGTERM to the container's init, as `docker stop` does: libvirt's default first
  // tries /dev/initctl, and with no such FIFO the container kept running (measured).
  vms: {
    prepare: vms.prepare,
    beforeDelete: vms.beforeDelete,
    removeVolume: vms.removeVolume,
    preview: vms.preview,
    shutdownFlags: DomainShutdownFlags.SIGNAL,
  },
  disks: {
    volume: (cid) => ({ name: cid, capacityBytes: 0n, format: 'dir', mode: 0o755 }),
    attach: disks.attachDisk,
    detach: disks.detachDisk,
    list: disks.getDisks,
    locate: disks.locateDisk,
    remove: disks.removeDisk,
  },
  records: domainRecords,
  tags: volumeTags,
  locks: volumeLocks,
  claims: volumeClaims,
  reservations: dhcpReservations,
  // A disk's directory moves into `<vm>.disks`, which every container mounts from create_vm.
  devices: null,
};
