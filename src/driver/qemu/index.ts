// The qemu/kvm backend: every CPI method against one libvirt connection per call.
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../log/logger.js';
import type { Driver, CreateVMRequest, CloudProperties, DiskHint, Networks } from '../driver.js';
import type { DiskCID, SnapshotCID, StemcellCID, VMCID } from '../cids.js';
import { openHost, type Host } from '../libvirt/host.js';
import * as stemcells from './stemcells.js';
import * as vms from './vms.js';
import * as disks from './disks.js';
import * as snapshots from './snapshots.js';
import { NotSupported } from '../../errors.js';
import { describeIgnored, KNOWN_DISK_KEYS, unknownKeys } from './cloud-properties.js';
import { onLiveConnection } from '../libvirt/reconnect.js';

export async function openQemuDriver(config: Config, log: Logger): Promise<Driver> {
  return new QemuDriver(await openHost(config, log));
}

export class QemuDriver implements Driver {
  constructor(readonly host: Host) {}

  close(): Promise<void> {
    return this.host.conn.close();
  }

  createStemcell(imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
    return stemcells.createStemcell(this.host, imagePath, props, tags);
  }
  async deleteStemcell(cid: StemcellCID): Promise<void> {
    if (!(await stemcells.deleteStemcell(this.host, cid))) this.host.log.info({ stemcell: cid }, 'stemcell already gone');
  }

  createVM(req: CreateVMRequest): Promise<[VMCID, Networks]> {
    return vms.createVM(this.host, req);
  }
  deleteVM(cid: VMCID): Promise<void> {
    // Idempotent by design (the domain goes last): after a lost connection, finish on a new one.
    return onLiveConnection(this.host, 'delete_vm', () => vms.deleteVM(this.host, cid));
  }
  hasVM(cid: VMCID): Promise<boolean> {
    return vms.hasVM(this.host, cid);
  }
  rebootVM(cid: VMCID): Promise<void> {
    return vms.rebootVM(this.host, cid);
  }
  setVMMetadata(cid: VMCID, metadata: Record<string, string>): Promise<void> {
    return vms.setVMMetadata(this.host, cid, metadata);
  }
  calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties {
    return vms.calculateVMCloudProperties(req);
  }

  createDisk(sizeMiB: number, props: CloudProperties, vmCid: VMCID | null): Promise<DiskCID> {
    const ignored = unknownKeys(props, KNOWN_DISK_KEYS);
    if (ignored.length) this.host.log.warn({ ignored }, `create_disk: ${describeIgnored({ cloud_properties: ignored }, 'qemu')}`);
    return disks.createDisk(this.host, sizeMiB, vmCid);
  }
  deleteDisk(cid: DiskCID): Promise<void> {
    return disks.deleteDisk(this.host, cid);
  }
  hasDisk(cid: DiskCID): Promise<boolean> {
    return disks.hasDisk(this.host, cid);
  }
  attachDisk(vm: VMCID, disk: DiskCID): Promise<DiskHint> {
    // Repeating it finds a disk the lost call did attach and completes the VM's record of it.
    return onLiveConnection(this.host, 'attach_disk', () => disks.attachDisk(this.host, vm, disk));
  }
  detachDisk(vm: VMCID, disk: DiskCID): Promise<void> {
    return disks.detachDisk(this.host, vm, disk);
  }
  getDisks(vm: VMCID): Promise<DiskCID[]> {
    return disks.getDisks(this.host, vm);
  }
  resizeDisk(cid: DiskCID, newSizeMiB: number): Promise<void> {
    return disks.resizeDisk(this.host, cid, newSizeMiB);
  }
  async updateDisk(cid: DiskCID): Promise<DiskCID | null> {
    // The director then creates a new disk and copies the data: that path is proven.
    throw new NotSupported(`update_disk is not supported by the qemu backend (disk ${cid}); the director falls back to creating a new disk and copying`);
  }
  setDiskMetadata(cid: DiskCID, metadata: Record<string, string>): Promise<void> {
    return disks.setDiskMetadata(this.host, cid, metadata);
  }

  snapshotDisk(cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
    return snapshots.snapshotDisk(this.host, cid, metadata);
  }
  deleteSnapshot(cid: SnapshotCID): Promise<void> {
    return snapshots.deleteSnapshot(this.host, cid);
  }
}
