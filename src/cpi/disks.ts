import { z } from 'zod';
import { defineMethod } from './method.js';
import { arg, cidArg, cloudProperties, metadataObject, positiveMiB, stringifyValues, cidString } from './args.js';
import type { DiskCID, VMCID } from '../driver/cids.js';

export const createDisk = defineMethod(
  'create_disk',
  [
    arg('size', positiveMiB, 'a positive whole number of MiB'),
    arg('cloud_properties', cloudProperties, 'an object (the disk_type cloud_properties)'),
    arg('vm_cid', cidString.nullable(), 'a VM CID or null'),
  ],
  async (ctx, size, props, vmCid) => {
    const cid = await (await ctx.driver()).createDisk(size, props, vmCid as VMCID | null);
    ctx.summary.add(`create_disk: created ${cid} (${size} MiB)`);
    return cid;
  },
);

export const deleteDisk = defineMethod('delete_disk', [cidArg('disk_cid', 'disk')], async (ctx, cid) => {
  await (await ctx.driver()).deleteDisk(cid as DiskCID);
  ctx.summary.add(`delete_disk: ${cid} is gone`);
  return null;
});

export const hasDisk = defineMethod('has_disk', [cidArg('disk_cid', 'disk')], async (ctx, cid) => {
  const found = await (await ctx.driver()).hasDisk(cid as DiskCID);
  ctx.summary.add(`has_disk: ${cid} ${found ? 'exists' : 'does not exist'}`);
  return found;
});

export const attachDisk = defineMethod('attach_disk', [cidArg('vm_cid', 'vm'), cidArg('disk_cid', 'disk')], async (ctx, vm, disk) => {
  const hint = await (await ctx.driver()).attachDisk(vm as VMCID, disk as DiskCID);
  ctx.summary.add(`attach_disk: attached ${disk} to ${vm} as ${JSON.stringify(hint)}`);
  return hint;
});

export const detachDisk = defineMethod('detach_disk', [cidArg('vm_cid', 'vm'), cidArg('disk_cid', 'disk')], async (ctx, vm, disk) => {
  await (await ctx.driver()).detachDisk(vm as VMCID, disk as DiskCID);
  ctx.summary.add(`detach_disk: detached ${disk} from ${vm}`);
  return null;
});

export const getDisks = defineMethod('get_disks', [cidArg('vm_cid', 'vm')], async (ctx, vm) => {
  const disks = await (await ctx.driver()).getDisks(vm as VMCID);
  ctx.summary.add(`get_disks: ${vm} has ${disks.length} persistent disk(s)`);
  return disks;
});

export const resizeDisk = defineMethod(
  'resize_disk',
  [cidArg('disk_cid', 'disk'), arg('new_size', positiveMiB, 'a positive whole number of MiB')],
  async (ctx, cid, size) => {
    await (await ctx.driver()).resizeDisk(cid as DiskCID, size);
    ctx.summary.add(`resize_disk: ${cid} is now ${size} MiB`);
    return null;
  },
);

export const updateDisk = defineMethod(
  'update_disk',
  [cidArg('disk_cid', 'disk'), arg('new_size', positiveMiB, 'a positive whole number of MiB'), arg('cloud_properties', cloudProperties, 'an object')],
  async (ctx, cid, size, props) => (await ctx.driver()).updateDisk(cid as DiskCID, size, props),
);

export const setDiskMetadata = defineMethod(
  'set_disk_metadata',
  [cidArg('disk_cid', 'disk'), arg('metadata', metadataObject, 'an object of tags')],
  async (ctx, cid, metadata) => {
    await (await ctx.driver()).setDiskMetadata(cid as DiskCID, stringifyValues(metadata));
    ctx.summary.add(`set_disk_metadata: tagged ${cid}`);
    return null;
  },
);

export const snapshotDisk = defineMethod(
  'snapshot_disk',
  [cidArg('disk_cid', 'disk'), arg('metadata', z.record(z.string(), z.unknown()).nullable(), 'an object (or null)')],
  async (ctx, cid, metadata) => {
    const snap = await (await ctx.driver()).snapshotDisk(cid as DiskCID, metadata ?? {});
    ctx.summary.add(`snapshot_disk: ${cid} → ${snap}`);
    return snap;
  },
);

export const deleteSnapshot = defineMethod('delete_snapshot', [cidArg('snapshot_cid', 'snap')], async (ctx, cid) => {
  await (await ctx.driver()).deleteSnapshot(cid as never);
  ctx.summary.add(`delete_snapshot: ${cid} is gone`);
  return null;
});
