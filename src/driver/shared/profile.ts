// What a backend adds to the libvirt code every backend shares (src/driver/shared/).
// The shared layer owns the CPI's nouns: the connection, CIDs and names, create_vm's
// undo-on-failure sequence (define, address check, DHCP reservations, start, creation
// mark), delete_vm, reboot, locks, VM metadata, disk volumes and their tags. A profile
// supplies only what differs between hypervisors: how stemcells are imported, how a
// VM's root filesystem, ephemeral disk and agent settings are made, the domain XML, how
// a persistent disk is stored, attached and found, and which optional abilities it has.
// An ability a backend lacks is simply absent: the shared driver answers NotSupported
// naming the backend (docs/architecture.md).
import type { CloudProperties, CreateVMRequest, DiskHint } from '../driver.js';
import type { DiskCID, SnapshotCID, StemcellCID, VMCID } from '../cids.js';
import type { Host } from './host.js';
import type { UndoLog } from './undo.js';
import type { CheckedNetwork } from './networking.js';
import type { VmShape } from './cloud-properties.js';
import type { NetworkPlan } from '../../network/index.js';
import type { DomainSpec, LxcDomainSpec, VmMetadata, VolumeSpec } from '../../xml/index.js';
import type { Config } from '../../config/schema.js';
import type { VolRef } from '../../libvirt/index.js';

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
   * for each, and returns the domain to define. Its metadata comes from vmMetadata()
   * in libvirt/vms.ts and lists every volume that belongs to the VM.
   */
  prepare(b: VmBuild): Promise<DomainSpec | LxcDomainSpec>;
  /** delete_vm, after the domain stopped and before the VM's volumes go (e.g. to save persistent data inside them) */
  beforeDelete?(host: Host, vm: VMCID, metadata: VmMetadata | null): Promise<void>;
  /** deletes one of the VM's volumes where libvirt's own delete is not enough (a directory with files in it); idempotent */
  removeVolume?(host: Host, name: string): Promise<void>;
  /** DOMAIN_SHUTDOWN_FLAGS for reboot_vm's graceful stop; default 0 (the hypervisor's choice: ACPI for QEMU) */
  shutdownFlags?: number;
  /** `render vm`: the domain from placeholders, and what differs from a real create_vm */
  preview(i: VmPreviewInput): { spec: DomainSpec | LxcDomainSpec; notes: string[] };
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

export interface BackendProfile {
  name: BackendName;
  /** Refuses a host this backend cannot serve (e.g. one whose files it needs but cannot reach), before any call. */
  checkHost?(host: Host): void;
  /** Refuses a configuration before connecting (e.g. a remote URI for a backend that writes the host's files itself). */
  checkConfig?(config: Config): void;
  stemcells: StemcellStore;
  vms: VmStorage;
  disks: DiskStore;
  snapshots?: SnapshotAbility;
  resize?: ResizeAbility;
}
