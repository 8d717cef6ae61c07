// Where an LXC VM's files live. Everything is in the storage pool's directory and named
// after a CID, so prefix ownership, `orphans` and delete_vm's sweep of `<vm>.…` volumes
// work as for qemu:
//   <pool>/<vm>.root/        dir volume: the root filesystem, an overlay mounted by the
//       stemcell             libvirt lxc hook (scripts/libvirt-hook-lxc) on `prepare`
//       lower -> <pool>/<sc> the stemcell's directory, the overlay's read-only layer
//       upper/ work/         the VM's own changes, and overlayfs' work directory
//       rootfs/              the mount point: the domain's <filesystem> target '/'
//   <pool>/<vm>.ephemeral/   dir volume mounted at /var/vcap/data
//   <pool>/<vm>.disks/       dir volume mounted at /warden-cpi-dev; attach_disk moves a
//                            persistent disk's directory into it, detach_disk out again
//   <pool>/<disk>/           a detached persistent disk (dir volume)
import { join } from 'node:path';
import { Suffix, suffixed } from '../shared/names.js';

/** Inside the container, as the warden stemcell's agent expects them (bosh-warden-cpi). */
export const EPHEMERAL_MOUNT = '/var/vcap/data';
export const DISKS_MOUNT = '/warden-cpi-dev';
export const SETTINGS_FILE = '/var/vcap/bosh/warden-cpi-agent-env.json';
/** The container's first process; the stemcell's own init (warden stemcells run runit from it). */
export const INIT = '/sbin/init';

export function vmVolumeNames(vm: string): { root: string; ephemeral: string; disks: string } {
  return { root: suffixed(vm, Suffix.root), ephemeral: suffixed(vm, Suffix.ephemeral), disks: suffixed(vm, Suffix.disks) };
}

export interface RootPaths {
  base: string;
  upper: string;
  work: string;
  rootfs: string;
  lower: string;
  /** the stemcell CID, one line: delete_stemcell reads it (docs/lxc.md) */
  stemcellFile: string;
  /** the agent's settings as the host writes them: in the upper layer */
  settings: string;
}

export function rootPaths(poolPath: string, vm: string): RootPaths {
  const base = join(poolPath, vmVolumeNames(vm).root);
  const upper = join(base, 'upper');
  return {
    base,
    upper,
    work: join(base, 'work'),
    rootfs: join(base, 'rootfs'),
    lower: join(base, 'lower'),
    stemcellFile: join(base, 'stemcell'),
    settings: join(upper, SETTINGS_FILE),
  };
}

/** The host directory of a disk attached to `vm`, and the path the agent sees. */
export function attachedDiskPaths(poolPath: string, vm: string, disk: string): { host: string; guest: string } {
  return { host: join(poolPath, vmVolumeNames(vm).disks, disk), guest: `${DISKS_MOUNT}/${disk}` };
}
