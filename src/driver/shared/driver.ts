// The Driver the cpi/ handlers call, for any backend: one libvirt connection per call,
// the shared lifecycle in this directory, and the backend's profile for what differs.
// Optional CPI methods answer NotSupported naming the backend when its profile lacks
// the ability they need (OPTIONAL_METHODS, checked in one place).
// It is also the one door src/hosts uses into a host's driver (the methods at the end).
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../log/logger.js';
import type { Driver, CreateVMRequest, CloudProperties, DiskHint, Networks } from '../driver.js';
import { isCid, type DiskCID, type SnapshotCID, type StemcellCID, type VMCID } from '../cids.js';
import type { BackendProfile } from './profile.js';
import { openHost, type Host } from './host.js';
import * as vms from './vms.js';
import * as disks from './disks.js';
import { checkNetworks } from './networking.js';
import { domainsUsing, volumePath } from './volume-users.js';
import { NotSupported } from '../../errors.js';
import type { VmMetadata } from '../../xml/index.js';
import { describeIgnored, KNOWN_DISK_KEYS, unknownKeys } from './cloud-properties.js';
import { onLiveConnection } from './reconnect.js';

/**
 * The optional CPI methods and the profile ability each needs. Without it the method
 * answers NotSupported naming the method, the backend and the object, and what the
 * director does instead where that helps. (delete_snapshot needs `snapshots` too, but
 * without it succeeds: no snapshot can exist on such a backend.)
 */
const OPTIONAL_METHODS = {
  snapshot_disk: { needs: 'snapshots', otherwise: '' },
  resize_disk: { needs: 'resize', otherwise: '' },
  // The director then creates a new disk and copies the data: that path is proven.
  update_disk: { needs: 'update', otherwise: '; the director falls back to creating a new disk and copying' },
} as const satisfies Record<string, { needs: keyof BackendProfile; otherwise: string }>;
type OptionalMethod = keyof typeof OPTIONAL_METHODS;

/** calculate_vm_cloud_properties: the same for every backend and host, and needs no connection. */
export function calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties {
  return { cpu: req.cpu, ram: req.ram, ephemeral_disk: { size: req.ephemeral_disk_size } };
}

export async function openLibvirtDriver(profile: BackendProfile, config: Config, log: Logger): Promise<LibvirtDriver> {
  profile.checkConfig?.(config);
  const host = await openHost(config, log, profile.openStorage?.bind(profile));
  try {
    profile.checkHost?.(host);
  } catch (e) {
    await host.conn.close().catch(() => undefined);
    await host.release?.().catch(() => undefined);
    throw e;
  }
  return new LibvirtDriver(host, profile);
}

export class LibvirtDriver implements Driver {
  constructor(
    readonly host: Host,
    readonly profile: BackendProfile,
  ) {}

  private get backend(): string {
    return this.profile.name;
  }

  /** The profile's ability an optional method needs; NotSupported naming the method, the backend and `object` without it. */
  private ability<M extends OptionalMethod>(method: M, object: string): NonNullable<BackendProfile[(typeof OPTIONAL_METHODS)[M]['needs']]> {
    const { needs, otherwise } = OPTIONAL_METHODS[method];
    const ability = this.profile[needs];
    if (!ability) throw new NotSupported(`${method} is not supported by the ${this.backend} backend (${object})${otherwise}`);
    return ability as NonNullable<BackendProfile[(typeof OPTIONAL_METHODS)[M]['needs']]>;
  }

  async close(): Promise<void> {
    try {
      await this.host.conn.close();
    } finally {
      await this.host.release?.();
    }
  }

  createStemcell(imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
    return this.profile.stemcells.create(this.host, imagePath, props, tags);
  }
  async deleteStemcell(cid: StemcellCID): Promise<void> {
    if (!(await this.profile.stemcells.delete(this.host, cid))) this.host.log.info({ stemcell: cid }, 'stemcell already gone');
  }

  createVM(req: CreateVMRequest): Promise<[VMCID, Networks]> {
    return vms.createVM(this.host, this.profile, req);
  }
  deleteVM(cid: VMCID): Promise<void> {
    // Idempotent by design (the domain goes last): after a lost connection, finish on a new one.
    return onLiveConnection(this.host, 'delete_vm', () => vms.deleteVM(this.host, cid, this.profile));
  }
  hasVM(cid: VMCID): Promise<boolean> {
    return vms.hasVM(this.host, cid);
  }
  rebootVM(cid: VMCID): Promise<void> {
    return vms.rebootVM(this.host, cid, this.profile);
  }
  setVMMetadata(cid: VMCID, metadata: Record<string, string>): Promise<void> {
    return vms.setVMMetadata(this.host, cid, metadata, this.profile);
  }
  calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties {
    return calculateVMCloudProperties(req);
  }

  createDisk(sizeMiB: number, props: CloudProperties, vmCid: VMCID | null): Promise<DiskCID> {
    const ignored = unknownKeys(props, KNOWN_DISK_KEYS);
    if (ignored.length) this.host.log.warn({ ignored }, `create_disk: ${describeIgnored({ cloud_properties: ignored }, this.backend)}`);
    return disks.createDisk(this.host, this.profile, sizeMiB, vmCid);
  }
  deleteDisk(cid: DiskCID): Promise<void> {
    return disks.deleteDisk(this.host, this.profile, cid);
  }
  hasDisk(cid: DiskCID): Promise<boolean> {
    return disks.hasDisk(this.host, cid, this.profile);
  }
  attachDisk(vm: VMCID, disk: DiskCID): Promise<DiskHint> {
    // Repeating it finds a disk the lost call did attach and completes the VM's record of it.
    return onLiveConnection(this.host, 'attach_disk', () => this.profile.disks.attach(this.host, vm, disk));
  }
  detachDisk(vm: VMCID, disk: DiskCID): Promise<void> {
    return this.profile.disks.detach(this.host, vm, disk);
  }
  getDisks(vm: VMCID): Promise<DiskCID[]> {
    return this.profile.disks.list(this.host, vm);
  }
  async resizeDisk(cid: DiskCID, newSizeMiB: number): Promise<void> {
    return this.ability('resize_disk', `disk ${cid}`).resizeDisk(this.host, cid, newSizeMiB);
  }
  async updateDisk(cid: DiskCID, newSizeMiB: number, props: CloudProperties): Promise<DiskCID | null> {
    return this.ability('update_disk', `disk ${cid}`).updateDisk(this.host, cid, newSizeMiB, props);
  }
  setDiskMetadata(cid: DiskCID, metadata: Record<string, string>): Promise<void> {
    return disks.setDiskMetadata(this.host, cid, metadata, this.profile);
  }

  async snapshotDisk(cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
    return this.ability('snapshot_disk', `disk ${cid}`).snapshotDisk(this.host, cid, metadata);
  }
  async deleteSnapshot(cid: SnapshotCID): Promise<void> {
    if (!this.profile.snapshots) {
      // No snapshot can exist on this backend: the one asked for is as gone as it gets
      // (a missing snapshot's delete succeeds, as the director expects).
      this.host.log.info({ snapshot: cid }, `the ${this.backend} backend has no snapshots; nothing to delete`);
      return;
    }
    return this.profile.snapshots.deleteSnapshot(this.host, cid);
  }

  // --- what src/hosts (several hosts behind one CPI) needs of one host's driver ---

  /** Refuses the networks of a create_vm this host cannot give (a missing network, an address outside its subnets or taken). */
  async checkNetworks(networks: Networks): Promise<void> {
    await checkNetworks(this.host, this.profile, vms.planVmNetworks(networks, this.host.config));
  }

  /** The VM's record; VMNotFound when there is no such VM, null when it has no record. */
  async vmRecord(cid: VMCID): Promise<VmMetadata | null> {
    return this.profile.records.read(this.host, await vms.requireDomain(this.host, cid));
  }

  /** Changes the VM's record under the VM's lock (as attach_disk does); `change` returns false to leave it as it is. */
  async updateVmRecord(cid: VMCID, change: (record: VmMetadata) => boolean): Promise<void> {
    const { records, locks } = this.profile;
    await locks.with(this.host, cid, async () => {
      const dom = await vms.requireDomain(this.host, cid);
      const record = await records.read(this.host, dom);
      if (record && change(record)) await records.write(this.host, dom, record);
    });
  }

  /** Runs `fn` while the stemcell cannot be deleted (delete_stemcell takes the same lock). */
  withStemcellLock<T>(cid: string, fn: () => Promise<T>): Promise<T> {
    return isCid(cid, 'sc', this.host.config.name_prefix) ? this.profile.locks.with(this.host, cid, fn) : fn();
  }

  /** The domains using the disk's volume (any name: a hand-made domain counts too). */
  diskUsers(cid: DiskCID): Promise<string[]> {
    return domainsUsing(this.host, [volumePath(this.host, cid)]);
  }

  /** The pool volumes that hold a stemcell's or disk's tags: they travel with it to another host. */
  tagVolumes(cid: string): string[] {
    return this.profile.tags.volumes(cid);
  }
}
