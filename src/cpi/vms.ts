import { z } from 'zod';
import { defineMethod } from './method.js';
import { arg, cidArg, cidString, cloudProperties, metadataObject, stringifyValues } from './args.js';
import type { DiskCID, StemcellCID, VMCID } from '../driver/cids.js';
import { CpiError, VMCreationFailed } from '../errors.js';

// More networks than any VM can carry NICs for is bad input, not a plan to attempt.
const MAX_NETWORKS = 64;

export const createVM = defineMethod(
  'create_vm',
  [
    arg('agent_id', z.string().min(1).max(256), 'a non-empty string'),
    cidArg('stemcell_cid', 'sc'),
    arg('cloud_properties', cloudProperties, 'an object (the vm_type cloud_properties)'),
    arg(
      'networks',
      z.record(z.string(), z.record(z.string(), z.unknown())).refine((n) => Object.keys(n).length <= MAX_NETWORKS, {
        message: `at most ${MAX_NETWORKS} networks`,
      }),
      `an object mapping network names to network settings (at most ${MAX_NETWORKS})`,
    ),
    arg('disk_cids', z.array(cidString).max(64).nullable(), 'an array of disk CIDs (or null)'),
    arg('env', z.record(z.string(), z.unknown()).nullable(), 'an object (the agent env)'),
  ],
  async (ctx, agentId, stemcellCid, props, networks, diskCids, env) => {
    // The director retries create_vm only on VMCreationFailed with ok_to_retry: a
    // libvirt host that is briefly unreachable must be reported that way.
    const driver = await ctx.driver().catch((e: unknown) => {
      if (e instanceof CpiError && e.okToRetry) throw new VMCreationFailed(`create_vm failed before creating anything: ${e.message}`, { okToRetry: true, cause: e });
      throw e;
    });
    const [cid, nets] = await driver.createVM({
      agentId,
      stemcellCid: stemcellCid as StemcellCID,
      cloudProperties: props,
      networks,
      diskCids: (diskCids ?? []) as DiskCID[],
      env: env ?? {},
      ...(ctx.stemcellApiVersion !== undefined ? { stemcellApiVersion: ctx.stemcellApiVersion } : {}),
    });
    ctx.summary.add(`create_vm: created ${cid} for agent ${agentId} from ${stemcellCid}`);
    return [cid, nets];
  },
);

export const deleteVM = defineMethod('delete_vm', [cidArg('vm_cid', 'vm')], async (ctx, cid) => {
  await (await ctx.driver()).deleteVM(cid as VMCID);
  ctx.summary.add(`delete_vm: ${cid} is gone`);
  return null;
});

export const hasVM = defineMethod('has_vm', [cidArg('vm_cid', 'vm')], async (ctx, cid) => {
  const found = await (await ctx.driver()).hasVM(cid as VMCID);
  ctx.summary.add(`has_vm: ${cid} ${found ? 'exists' : 'does not exist'}`);
  return found;
});

export const rebootVM = defineMethod('reboot_vm', [cidArg('vm_cid', 'vm')], async (ctx, cid) => {
  await (await ctx.driver()).rebootVM(cid as VMCID);
  ctx.summary.add(`reboot_vm: rebooted ${cid}`);
  return null;
});

export const setVMMetadata = defineMethod(
  'set_vm_metadata',
  [cidArg('vm_cid', 'vm'), arg('metadata', metadataObject, 'an object of tags')],
  async (ctx, cid, metadata) => {
    await (await ctx.driver()).setVMMetadata(cid as VMCID, stringifyValues(metadata));
    ctx.summary.add(`set_vm_metadata: tagged ${cid} (${Object.keys(metadata).length} tags)`);
    return null;
  },
);

export const calculateVMCloudProperties = defineMethod(
  'calculate_vm_cloud_properties',
  [
    arg(
      'desired_instance_size',
      z.object({
        cpu: z.number().int().positive().max(1024),
        ram: z.number().int().positive().max(16 * 1024 * 1024),
        ephemeral_disk_size: z.number().int().nonnegative().max(64 * 1024 * 1024),
      }),
      'an object {cpu: vCPUs, ram: MiB, ephemeral_disk_size: MiB}',
    ),
  ],
  async (ctx, size) => {
    const props = (await ctx.driver()).calculateVMCloudProperties(size);
    ctx.summary.add(`calculate_vm_cloud_properties: ${JSON.stringify(props)}`);
    return props;
  },
);
