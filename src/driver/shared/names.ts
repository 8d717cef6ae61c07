// Every name the CPI gives a volume beyond a bare CID, spelled once. A volume that
// belongs to something is named `<owner>.<suffix>`: prefix ownership, `orphans` and
// delete_vm's sweep find them by that shape (parseOwnedName in ../cids.ts splits it).
// Code that names, recognises or strips one of these uses the constants and helpers here.

/** The suffixes, without their dot. */
export const Suffix = {
  /** a VM's root filesystem: a qcow2 overlay (qemu) or an overlay directory (lxc) */
  root: 'root',
  /** a VM's ephemeral disk */
  ephemeral: 'ephemeral',
  /** a VM's config drive (qemu) */
  config: 'config',
  /** a VM's agent settings kept for re-reads by old stemcells (qemu) */
  settings: 'settings',
  /** the directory of a container's attached disks (lxc) */
  disks: 'disks',
  /** a cross-process lock on `<owner>` (lock.ts) */
  lock: 'lock',
  /** the tags of a stemcell, disk or snapshot (sidecar.ts) */
  meta: 'meta',
  /** the address claims of create_vm calls between their check and their define (address-holders.ts) */
  claims: 'claims',
  /** several hosts: the marker beside a copy a move has not finished (src/hosts/move.ts) */
  partial: 'partial',
  /** several hosts: beside a disk away from its birth host, that host's name (src/hosts/locate.ts) */
  born: 'born',
  /** several hosts: on a disk's birth host, where the disk went (src/hosts/locate.ts) */
  moved: 'moved',
} as const;
export type Suffix = (typeof Suffix)[keyof typeof Suffix];

/** `<owner>.<suffix>` */
export function suffixed(owner: string, suffix: Suffix): string {
  return `${owner}.${suffix}`;
}

/** Whether `name` is `<something>.<suffix>`. */
export function hasSuffix(name: string, suffix: Suffix): boolean {
  return name.endsWith(`.${suffix}`);
}

/** The owner of `<owner>.<suffix>` (the name unchanged when it has no such suffix). */
export function withoutSuffix(name: string, suffix: Suffix): string {
  return hasSuffix(name, suffix) ? name.slice(0, -(suffix.length + 1)) : name;
}

/** The volume that is the lock on `name`. */
export function lockVolumeName(name: string): string {
  return suffixed(name, Suffix.lock);
}

/** The volume that holds a stemcell's, disk's or snapshot's tags. */
export function sidecarName(cid: string): string {
  return suffixed(cid, Suffix.meta);
}

/**
 * The lock create_vm holds while it checks its static addresses and records its claim,
 * and the claims themselves. Named alike for every director (no name prefix), so all
 * CPIs that share the storage pool take the same lock and read the same claims.
 */
export const ADDRESS_LOCK = 'bosh-libvirt-cpi-addresses';
export const ADDRESS_LOCK_VOLUME = lockVolumeName(ADDRESS_LOCK);
export const CLAIMS_VOLUME = suffixed(ADDRESS_LOCK, Suffix.claims);
