// The backend interface the cpi/ handlers call, one small interface per noun (as in
// bosh-cpi-go apiv1). Arguments are already validated; cloud_properties arrive as
// plain objects and each backend decodes them late into its own structure.
import type { StemcellCID, VMCID, DiskCID, SnapshotCID } from './cids.js';

export type { StemcellCID, VMCID, DiskCID, SnapshotCID };

export type CloudProperties = Record<string, unknown>;
export type Networks = Record<string, Record<string, unknown>>;

/** Where the agent finds a disk (bosh-agent DiskSettings). */
export interface DiskHint {
  id?: string;
  path?: string;
  volume_id?: string;
  lun?: string;
  host_device_id?: string;
}

export interface CreateVMRequest {
  agentId: string;
  stemcellCid: StemcellCID;
  cloudProperties: CloudProperties;
  networks: Networks;
  diskCids: DiskCID[];
  env: Record<string, unknown>;
  /** context.vm.stemcell.api_version, when the director knows it */
  stemcellApiVersion?: number;
}

export interface Stemcells {
  createStemcell(imagePath: string, cloudProperties: CloudProperties, tags: Record<string, string>): Promise<StemcellCID>;
  /** A missing stemcell is not an error (the CLI tolerates StemcellNotFound; the director expects success). */
  deleteStemcell(cid: StemcellCID): Promise<void>;
}

export interface VMs {
  createVM(req: CreateVMRequest): Promise<[VMCID, Networks]>;
  deleteVM(cid: VMCID): Promise<void>;
  hasVM(cid: VMCID): Promise<boolean>;
  rebootVM(cid: VMCID): Promise<void>;
  setVMMetadata(cid: VMCID, metadata: Record<string, string>): Promise<void>;
  calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties;
}

export interface Disks {
  createDisk(sizeMiB: number, cloudProperties: CloudProperties, vmCid: VMCID | null): Promise<DiskCID>;
  deleteDisk(cid: DiskCID): Promise<void>;
  hasDisk(cid: DiskCID): Promise<boolean>;
  attachDisk(vmCid: VMCID, diskCid: DiskCID): Promise<DiskHint>;
  detachDisk(vmCid: VMCID, diskCid: DiskCID): Promise<void>;
  getDisks(vmCid: VMCID): Promise<DiskCID[]>;
  resizeDisk(cid: DiskCID, newSizeMiB: number): Promise<void>;
  updateDisk(cid: DiskCID, newSizeMiB: number, cloudProperties: CloudProperties): Promise<DiskCID | null>;
  setDiskMetadata(cid: DiskCID, metadata: Record<string, string>): Promise<void>;
}

export interface Snapshots {
  snapshotDisk(cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID>;
  /** A missing snapshot is not an error. */
  deleteSnapshot(cid: SnapshotCID): Promise<void>;
}

export interface Driver extends Stemcells, VMs, Disks, Snapshots {
  close(): Promise<void>;
}
