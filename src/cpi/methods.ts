// Every method of the CPI contract (docs-bosh content/cpi-api-v2-method/*), by name.
import type { MethodDef } from './method.js';
import { info } from './info.js';
import { createStemcell, deleteStemcell } from './stemcells.js';
import { createVM, deleteVM, hasVM, rebootVM, setVMMetadata, calculateVMCloudProperties } from './vms.js';
import { createDisk, deleteDisk, hasDisk, attachDisk, detachDisk, getDisks, resizeDisk, updateDisk, setDiskMetadata, snapshotDisk, deleteSnapshot } from './disks.js';
import { createNetwork, deleteNetwork } from './networks.js';

export const METHODS: ReadonlyMap<string, MethodDef> = new Map(
  [
    info, createStemcell, deleteStemcell,
    createVM, deleteVM, hasVM, rebootVM, setVMMetadata, calculateVMCloudProperties,
    createDisk, deleteDisk, resizeDisk, updateDisk, hasDisk, attachDisk, detachDisk, setDiskMetadata, getDisks,
    snapshotDisk, deleteSnapshot,
    createNetwork, deleteNetwork,
  ].map((m) => [m.name, m]),
);
