// The one contract between a backend and the libvirt code every backend shares (this
// directory). The shared layer owns the CPI's nouns: the connection, CIDs and names,
// create_vm's undo-on-failure sequence (define, address check, DHCP reservations, start,
// creation mark), delete_vm, reboot, disk volumes. A profile supplies what differs
// between hypervisors: how stemcells are imported, how a VM's root filesystem, ephemeral
// disk and agent settings are made, the domain XML, how a persistent disk is stored,
// attached and found.
//
// It also names where the shared layer keeps its state and what the hypervisor's libvirt
// driver can do, instead of the shared layer assuming it (docs/architecture.md): the VM's
// record (`records`), the tags of stemcells and disks (`tags`), cross-process locks
// (`locks`), address claims (`claims`), DHCP reservations (`reservations`, null where the
// networks take none) and device changes on a VM (`devices`, null where the backend
// changes none). The implementations qemu and lxc use are exported from this directory
// (domainRecords, volumeTags, volumeLocks, volumeClaims, dhcpReservations, liveDevices);
// a backend whose driver lacks domain metadata or volume streams passes its own.
// An optional CPI method whose ability a backend lacks answers NotSupported naming the
// backend, from one table (driver.ts).
import type { CloudProperties, CreateVMRequest, DiskHint } from '../driver.js';
import type { DiskCID, SnapshotCID, StemcellCID, VMCID } from '../cids.js';
import type { Host } from './host.js';
import type { UndoLog } from './undo.js';
import type { VmShape } from './cloud-properties.js';
import type { NetworkPlan } from '../../network/index.js';
import type { DomainSpec, LxcDomainSpec, ParsedNetwork, VboxVmDomain, VmMetadata, VolumeSpec, parseDhcpRanges } from '../../xml/index.js';
import type { Config } from '../../config/schema.js';
import type { Connection, DomainRef, NetworkRef, VolRef } from '../../libvirt/index.js';
import type { Logger } from '../../log/logger.js';
import type { CreatorMarker, CreatorState } from './creator.js';

/** A libvirt network create_vm's plan uses, looked up and checked (networking.ts: checkNetworks). */
export interface CheckedNetwork {
  ref: NetworkRef;
  parsed: ParsedNetwork;
  /** its DHCP ranges: no on-link delegated prefix may meet them */
  ranges: ReturnType<typeof parseDhcpRanges>;
}

/** Everything create_vm has decided before the backend makes the VM's own storage. */
export interface VmBuild {
  host: Host;
  /** every piece the backend makes is recorded here, so a failure removes it */
  undo: UndoLog;
  vm: VMCID;
  req: CreateVMRequest;
  shape: VmShape;
  plan: NetworkPlan;
  nets: Map<string, CheckedNetwork>;
  /** names the step create_vm is in: its failure message and step timings use it */
  step(name: string): void;
}

/** What `render vm` shows: the domain create_vm would define, from placeholders. */
export interface VmPreviewInput {
  config: Config;
  vm: string;
  agentId: string;
  stemcellCid: string;
  stemcellApiVersion?: number;
  shape: VmShape;
  plan: NetworkPlan;
  /** the domain type the operator asked for, if any */
  domainType?: 'kvm' | 'qemu';
}

export interface StemcellStore {
  create(host: Host, imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID>;
  /** false when it was already gone (delete_stemcell is idempotent) */
  delete(host: Host, cid: StemcellCID): Promise<boolean>;
}

export interface VmStorage {
  /**
   * Makes the VM's root filesystem (on the stemcell, under the stemcell's lock: use
   * withStemcellLock), ephemeral disk and agent settings medium, recording an undo
   * for each, and returns the domain to define. Its metadata (the VM's record) comes
   * from vmMetadata() in vms.ts and lists every volume that belongs to the VM.
   */
  prepare(b: VmBuild): Promise<DomainSpec | LxcDomainSpec | VboxVmDomain>;
  /** delete_vm, after the domain stopped and before the VM's volumes go (e.g. to save persistent data inside them) */
  beforeDelete?(host: Host, vm: VMCID, metadata: VmMetadata | null): Promise<void>;
  /** deletes one of the VM's volumes where libvirt's own delete is not enough (a directory with files in it); idempotent */
  removeVolume?(host: Host, name: string): Promise<void>;
  /** the names delete_vm sweeps for `<vm>.…` where the VM's files are no pool volumes (vbox: files in a directory); default: the pool's listing */
  listVolumes?(host: Host): Promise<string[]>;
  /** DOMAIN_SHUTDOWN_FLAGS for reboot_vm's graceful stop; default 0 (the hypervisor's choice: ACPI for QEMU) */
  shutdownFlags?: number;
  /** `render vm`: the domain from placeholders, and what differs from a real create_vm */
  preview(i: VmPreviewInput): { spec: DomainSpec | LxcDomainSpec | VboxVmDomain; notes: string[] };
}

export interface DiskStore {
  /** the volume a new persistent disk is */
  volume(cid: DiskCID, bytes: bigint): VolumeSpec;
  attach(host: Host, vm: VMCID, disk: DiskCID): Promise<DiskHint>;
  detach(host: Host, vm: VMCID, disk: DiskCID): Promise<void>;
  list(host: Host, vm: VMCID): Promise<DiskCID[]>;
  /**
   * Where a disk is when it is not (only) a volume of the pool: a backend that moves an
   * attached disk out of the pool's listing (LXC moves its directory into the VM's)
   * answers has_disk and delete_disk through this. 'pool': detached; {vm}: attached there.
   */
  locate?(host: Host, disk: DiskCID): Promise<{ vm: VMCID } | 'pool' | null>;
  /** removes a disk's volume where libvirt's own delete is not enough (e.g. a directory with data in it) */
  remove?(host: Host, vol: VolRef): Promise<void>;
  /**
   * Makes the disk where it is no pool volume (vbox: a file, since the driver's volume
   * create gets sizes wrong); replaces the pool's capacity check and volume create.
   * A name already taken answers 'exists' (create_disk then draws another).
   */
  create?(host: Host, cid: DiskCID, bytes: bigint): Promise<'made' | 'exists'>;
  /**
   * Deletes a disk that is no pool volume: DiskNotFound when there is none, refused while
   * a domain uses it. The shared delete_disk then removes its tags.
   */
  delete?(host: Host, cid: DiskCID): Promise<void>;
}

/** Optional abilities: present only when the backend can do them. */
export interface SnapshotAbility {
  snapshotDisk(host: Host, cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID>;
  deleteSnapshot(host: Host, cid: SnapshotCID): Promise<void>;
}
export interface ResizeAbility {
  resizeDisk(host: Host, cid: DiskCID, newSizeMiB: number): Promise<void>;
}

export type BackendName = 'qemu' | 'lxc' | 'vbox';

/** A VM's record as the shared layer reads it from every VM of this CPI. */
export interface VmRecordEntry {
  name: string;
  dom: DomainRef;
  metadata: VmMetadata;
}

/**
 * Where a VM's record lives: what create_vm decided (agent id, stemcell, owned volumes,
 * MACs, addresses, reservations, prefixes), its attached disks, tags, and while
 * create_vm runs its creation mark. delete_vm reads what to remove from it, and the
 * address checks read every VM's held addresses from it.
 */
export interface VmRecordStore {
  /**
   * 'domain': the record is part of the domain's definition (DomainSpec.metadata), so
   * create_vm's define carries it, mark included, and it goes with the domain.
   * 'apart': create_vm writes it right after the define and delete_vm removes it after
   * the undefine (`remove`).
   */
  readonly keeps: 'domain' | 'apart';
  /**
   * The VM's record; null when it has none (a domain this CPI did not make). `xml`: the
   * domain's XML when the caller has read it already (a store that keeps the record
   * there reads it from that); an unreadable record throws XmlParseError.
   */
  read(host: Host, dom: DomainRef, xml?: string): Promise<VmMetadata | null>;
  write(host: Host, dom: DomainRef, record: VmMetadata): Promise<void>;
  /** every VM of this CPI (this name prefix) with its record; unreadable ones are logged and left out */
  list(host: Host): Promise<VmRecordEntry[]>;
  /** the title people see in `virsh list --title` (or the hypervisor's own list) */
  setTitle(host: Host, dom: DomainRef, title: string): Promise<void>;
  /** removes a record kept apart from the domain; idempotent (a no-op for 'domain') */
  remove(host: Host, vm: string): Promise<void>;
}

/**
 * A small JSON document per stemcell, disk or snapshot: its tags, and what the backend
 * notes about it (a stemcell's format). Written last by create_stemcell and
 * snapshot_disk, so one without it was never finished.
 */
export interface TagStore {
  read(host: Host, cid: string): Promise<Record<string, unknown> | null>;
  write(host: Host, cid: string, data: Record<string, unknown>): Promise<void>;
  /** idempotent */
  remove(host: Host, cid: string): Promise<void>;
  /**
   * The pool volumes that hold `cid`'s document ([] when it is kept elsewhere): they
   * travel with a stemcell or disk copied between hosts, and a domain using one keeps
   * the disk from being deleted.
   */
  volumes(cid: string): string[];
}

/** Who holds a lock, from what the holder wrote into it. */
export interface LockHolder {
  marker: CreatorMarker;
  state: CreatorState;
}

/** A mutex across CPI processes and hosts that share the backend's storage. */
export interface LockStore {
  /**
   * Runs `fn` holding the lock on `name`. `what` says what the holder does (a waiter
   * that gives up names it); `waitMs` bounds the wait (a minute unless said otherwise).
   */
  with<T>(host: Host, name: string, fn: () => Promise<T>, what?: string, waitMs?: number): Promise<T>;
  /** who holds the lock on `name` (orphans): undefined when nobody, or it cannot be read */
  holder(host: Host, name: string): Promise<LockHolder | undefined>;
}

/** One create_vm's claim on a static address or delegated prefix, between its check and its define. */
export interface PendingClaim extends CreatorMarker {
  vm: string;
  network: string;
  ip: string;
  /** set for a delegated prefix: `ip` is its base address */
  prefix?: number;
}

/**
 * The claims of create_vm calls between their address check and their define: one
 * document for the whole storage, read and written only under the address lock.
 */
export interface ClaimStore {
  /** the name `orphans` lists it under */
  readonly name: string;
  /** null: no document; an unreadable one reads as [] */
  read(host: Host): Promise<PendingClaim[] | null>;
  write(host: Host, claims: PendingClaim[]): Promise<void>;
  /** true when there was one to remove */
  remove(host: Host): Promise<boolean>;
}

export type Reservation = VmMetadata['reservations'][number];

/**
 * DHCP host entries on libvirt networks for a VM's static addresses (the VM's record
 * lists them; delete_vm removes them). A backend whose networks take none has
 * `reservations: null`: its VMs get their addresses from the agent's settings only.
 */
export interface ReservationStore {
  /** the entries a VM of this plan gets (its record lists them) */
  planned(plan: NetworkPlan, nets: Map<string, CheckedNetwork>, vm: string): Reservation[];
  add(host: Host, r: Reservation): Promise<void>;
  /** idempotent: an entry (or network) already gone is fine */
  remove(host: Host, r: Reservation): Promise<void>;
}

/**
 * How a VM's devices change after create_vm (attach_disk, detach_disk).
 * 'live': the running domain and its saved definition change together (hot-plug).
 * 'cold': only a stopped domain's definition can change, so a running VM is stopped,
 * its definition changed, and started again.
 */
export interface DeviceChanges {
  readonly mode: 'live' | 'cold';
  /** adds the device (libvirt device XML) to the domain */
  add(host: Host, dom: DomainRef, deviceXml: string): Promise<void>;
  /** removes it from the running domain (`live`) and/or the saved definition (`saved`) */
  remove(host: Host, dom: DomainRef, deviceXml: string, where: { live: boolean; saved: boolean }): Promise<void>;
}

/** update_disk in place; no backend has it yet (the director then copies to a new disk). */
export interface UpdateAbility {
  updateDisk(host: Host, cid: DiskCID, newSizeMiB: number, props: CloudProperties): Promise<DiskCID | null>;
}

export interface BackendProfile {
  name: BackendName;
  /** Refuses a host this backend cannot serve (e.g. one whose files it needs but cannot reach), before any call. */
  checkHost?(host: Host): void;
  /** Refuses a configuration before connecting (e.g. a remote URI for a backend that writes the host's files itself). */
  checkConfig?(config: Config): void;
  /**
   * Where the backend keeps its files when they are no libvirt pool's (vbox: its driver
   * has no pool listing, info or XML): replaces openHost's pool set-up. `release` runs at
   * the driver's close (e.g. a host-wide lock held for the whole call); `lookupDomain`
   * replaces the lookup by name where the driver's cannot tell a missing domain.
   */
  openStorage?(conn: Connection, config: Config, log: Logger): Promise<Pick<Host, 'pool' | 'poolPath' | 'release' | 'lookupDomain'>>;
  stemcells: StemcellStore;
  vms: VmStorage;
  disks: DiskStore;
  // Where the shared layer keeps its state, and what the libvirt driver can do.
  records: VmRecordStore;
  tags: TagStore;
  locks: LockStore;
  claims: ClaimStore;
  reservations: ReservationStore | null;
  /** null: the backend changes no devices after create_vm (lxc moves directories inside a mount the container has from the start) */
  devices: DeviceChanges | null;
  // Optional CPI methods: absent, the method answers NotSupported (driver.ts).
  snapshots?: SnapshotAbility;
  resize?: ResizeAbility;
  update?: UpdateAbility;
}

/** The state stores alone: what code that reads or writes the shared layer's state needs of a profile. */
export type StateStores = Pick<BackendProfile, 'records' | 'tags' | 'locks' | 'claims' | 'reservations'>;
