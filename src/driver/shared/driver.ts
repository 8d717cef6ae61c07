// The Driver the cpi/ handlers call, for any backend: one libvirt connection per call,
// the shared lifecycle in this directory, and the backend's profile for what differs.
// Abilities a profile lacks answer NotSupported naming the backend.
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../log/logger.js';
import type { Driver, CreateVMRequest, CloudProperties, DiskHint, Networks } from '../driver.js';
import type { DiskCID, SnapshotCID, StemcellCID, VMCID } from '../cids.js';
import type { BackendProfile } from './profile.js';
import { openHost, type Host } from './host.js';
import * as vms from './vms.js';
import * as disks from './disks.js';
import { NotSupported } from '../../errors.js';
import { describeIgnored, KNOWN_DISK_KEYS, unknownKeys } from './cloud-properties.js';
import { onLiveConnection } from './reconnect.js';

export async function openLibvirtDriver(profile: BackendProfile, config: Config, log: Logger): Promise<LibvirtDriver> {
  profile.checkConfig?.(config);
  const host = await openHost(config, log);
  try {
    profile.checkHost?.(host);
  } catch (e) {
    await host.conn.close().catch(() => undefined);
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

  close(): Promise<void> {
    return this.host.conn.close();
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
    return vms.setVMMetadata(this.host, cid, metadata);
  }
  calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties {
    return vms.calculateVMCloudProperties(req);
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
    if (!this.profile.resize) throw new NotSupported(`resize_disk is not supported by the ${this.backend} backend (disk ${cid})`);
    return this.profile.resize.resizeDisk(this.host, cid, newSizeMiB);
  }
  async updateDisk(cid: DiskCID): Promise<DiskCID | null> {
    // The director then creates a new disk and copies the data: that path is proven.
    throw new NotSupported(`update_disk is not supported by the ${this.backend} backend (disk ${cid}); the director falls back to creating a new disk and copying`);
  }
  setDiskMetadata(cid: DiskCID, metadata: Record<string, string>): Promise<void> {
    return disks.setDiskMetadata(this.host, cid, metadata, this.profile);
  }

  async snapshotDisk(cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
    if (!this.profile.snapshots) throw new NotSupported(`snapshot_disk is not supported by the ${this.backend} backend (disk ${cid})`);
    return this.profile.snapshots.snapshotDisk(this.host, cid, metadata);
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
}
