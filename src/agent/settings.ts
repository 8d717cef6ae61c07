// The settings document the BOSH agent reads at boot, shaped as cloudfoundry/bosh-agent
// `settings/settings.go` (type Settings) unmarshals it. Pure: plain data in, plain data out.
import { z } from 'zod';
import { CloudError, badInput } from '../errors.js';

export interface AgentSettingsInput {
  agentId: string;
  /** The VM cid. */
  vmName: string;
  /** From the CPI config. */
  agent: { mbus: string; ntp: string[]; blobstore?: { provider: string; options: Record<string, unknown> } };
  disks: { system: string; ephemeral?: DiskHint | string; persistent: Record<string, DiskHint | string> };
  /** Planned by the network module; passed through key for key. */
  networks: Record<string, Record<string, unknown>>;
  /** create_vm's env, passed through untouched. */
  env: Record<string, unknown>;
}

const HINT_KEYS = ['id', 'path', 'volume_id', 'lun', 'host_device_id'] as const;

// The agent type-asserts every present hint key to string (`path.(string)`), so a null
// or a number there panics it at boot: only strings may be present.
const hintObjectSchema = z.object({
  id: z.string().optional(),
  path: z.string().optional(),
  volume_id: z.string().optional(),
  lun: z.string().optional(),
  host_device_id: z.string().optional(),
});
export const diskHintSchema = z.union([z.string(), hintObjectSchema]);

/** Where the agent finds a disk (bosh-agent settings.DiskSettings, read from a hash). */
export type DiskHint = z.infer<typeof hintObjectSchema>;

/**
 * Reads settings back (e.g. from a config drive). Unknown keys are kept, except inside disk
 * hints, which keep only the five keys the agent reads.
 */
export const agentSettingsSchema = z.looseObject({
  agent_id: z.string(),
  vm: z.looseObject({ name: z.string() }),
  mbus: z.string(),
  ntp: z.array(z.string()),
  blobstore: z.looseObject({ provider: z.string(), options: z.record(z.string(), z.unknown()) }).optional(),
  disks: z.looseObject({
    system: z.string(),
    ephemeral: diskHintSchema.nullable().optional(),
    persistent: z.record(z.string(), diskHintSchema).default({}),
  }),
  networks: z.record(z.string(), z.record(z.string(), z.unknown())),
  env: z.record(z.string(), z.unknown()),
});

export type AgentSettings = z.infer<typeof agentSettingsSchema>;

export function buildAgentSettings(input: AgentSettingsInput): AgentSettings {
  for (const [field, value] of [['agent_id', input.agentId], ['vm name', input.vmName], ['agent mbus', input.agent?.mbus], ['disks.system', input.disks?.system]] as const) {
    if (typeof value !== 'string' || value === '') throw badInput(field, value, 'a non-empty string');
  }
  const persistent: Record<string, DiskHint | string> = {};
  for (const [cid, hint] of Object.entries(input.disks.persistent ?? {})) persistent[cid] = cleanHint(`disks.persistent.${cid}`, hint);
  // Keys in the order bosh-agent documents them, so every drive reads the same.
  return {
    agent_id: input.agentId,
    vm: { name: input.vmName },
    mbus: input.agent.mbus,
    ntp: [...(input.agent.ntp ?? [])],
    // Left out when not configured: the agent then relies on env.bosh.blobstores.
    ...(input.agent.blobstore ? { blobstore: { provider: input.agent.blobstore.provider, options: input.agent.blobstore.options ?? {} } } : {}),
    disks: {
      system: input.disks.system,
      // Absent rather than null when there is no ephemeral disk.
      ...(input.disks.ephemeral === undefined ? {} : { ephemeral: cleanHint('disks.ephemeral', input.disks.ephemeral) }),
      persistent,
    },
    networks: input.networks,
    env: input.env,
  };
}

/** Parse settings JSON (a config drive's `user-data`); bad content is a CloudError naming the problem. */
export function parseAgentSettings(content: Buffer | string): AgentSettings {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.isBuffer(content) ? content.toString('utf8') : content);
  } catch (err) {
    throw new CloudError(`Invalid agent settings: not JSON (${(err as Error).message})`);
  }
  const parsed = agentSettingsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.join('.') || '(root)' : '(root)';
    throw new CloudError(`Invalid agent settings at ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** The settings with `disks.persistent[diskCid]` set to `hint`; the input is not modified. */
export function withPersistentDisk(settings: AgentSettings, diskCid: string, hint: DiskHint | string): AgentSettings {
  if (typeof diskCid !== 'string' || diskCid === '') throw badInput('disk cid', diskCid, 'a non-empty string');
  const clean = cleanHint(`disks.persistent.${diskCid}`, hint);
  return { ...settings, disks: { ...settings.disks, persistent: { ...settings.disks.persistent, [diskCid]: clean } } };
}

/** The settings without `disks.persistent[diskCid]`; the input is not modified. */
export function withoutPersistentDisk(settings: AgentSettings, diskCid: string): AgentSettings {
  const { [diskCid]: _removed, ...rest } = settings.disks.persistent;
  return { ...settings, disks: { ...settings.disks, persistent: rest } };
}

function cleanHint(field: string, hint: unknown): DiskHint | string {
  if (typeof hint === 'string') {
    if (hint === '') throw badInput(field, hint, 'a device path or a hint object');
    return hint;
  }
  if (hint === null || typeof hint !== 'object' || Array.isArray(hint)) throw badInput(field, hint, 'a string or an object of string id/path/volume_id/lun/host_device_id');
  const out: DiskHint = {};
  for (const [key, value] of Object.entries(hint)) {
    if (!(HINT_KEYS as readonly string[]).includes(key)) throw badInput(`${field}.${key}`, value, `one of ${HINT_KEYS.join(', ')}`);
    if (value === undefined) continue;
    if (typeof value !== 'string') throw badInput(`${field}.${key}`, value, 'a string (the agent type-asserts hint values to string)');
    out[key as keyof DiskHint] = value;
  }
  if (Object.keys(out).length === 0) throw badInput(field, hint, 'at least one of id, path, volume_id, lun, host_device_id');
  return out;
}
