// The shape of one entry of create_vm's `networks`, as the director (any version since
// CPI API v1) and `bosh create-env` send it. Only the shape lives here; what the values
// mean together (families, subnets, prefixes) is checked in plan.ts, where the error can
// name the other networks involved. Unknown keys are kept: they go back to the agent.
import { z } from 'zod';
import { CloudError, show } from '../errors.js';

// Bounds keep absurd input cheap to reject; none of them is near a real manifest's value.
const MAX_ADDR_CHARS = 64;
const MAX_NAME_CHARS = 255;

const addr = z
  .string({ error: 'be a string holding an IP address' })
  .min(1, { error: 'be an IP address, not empty' })
  .max(MAX_ADDR_CHARS, { error: `be an IP address (at most ${MAX_ADDR_CHARS} characters)` });

const prefix = z.union(
  [
    z.string().regex(/^[0-9]{1,3}$/, { error: 'be a prefix length: a whole number from 0 to 128 (e.g. "32", "128", "80")' }),
    z.number().int({ error: 'be a whole number' }).min(0, { error: 'be at least 0' }).max(128, { error: 'be at most 128' }),
  ],
  { error: 'be a prefix length, a string or a number such as "32", "128" or "80"' },
);

const libvirtName = (what: string) =>
  z
    .string({ error: `be a string naming ${what}` })
    .min(1, { error: `name ${what}, not be empty` })
    .max(MAX_NAME_CHARS, { error: `be at most ${MAX_NAME_CHARS} characters` })
    // Control characters and slashes cannot be part of a libvirt network or Linux
    // interface name; rejecting them here gives a clearer error than libvirt would.
    .regex(/^[^\u0000-\u001f\u007f/]+$/, { error: `name ${what} without slashes or control characters` });

export const NetworkCloudPropertiesSchema = z.looseObject(
  {
    name: libvirtName('a libvirt network').nullish(),
    bridge: libvirtName('a host bridge').nullish(),
    model: z
      .string({ error: 'be a string naming a NIC model' })
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/, { error: 'be a NIC model name such as virtio, e1000 or rtl8139' })
      .nullish(),
  },
  { error: 'be an object with optional name, bridge and model' },
);

export const NetworkSettingsSchema = z.looseObject({
  type: z.enum(['manual', 'dynamic', 'vip'], { error: 'be one of "manual", "dynamic", "vip"' }),
  ip: addr.nullish(),
  netmask: addr.nullish(),
  prefix: prefix.nullish(),
  gateway: addr.nullish(),
  dns: z
    .array(addr, { error: 'be a list of IP addresses' })
    .max(16, { error: 'hold at most 16 entries' })
    .nullish(),
  default: z
    .array(z.string({ error: 'be a string such as "dns" or "gateway"' }).max(32, { error: 'be at most 32 characters' }), {
      error: 'be a list such as ["dns", "gateway"]',
    })
    .max(8, { error: 'hold at most 8 entries' })
    .nullish(),
  nic_group: z
    .union([z.string().min(1).max(MAX_NAME_CHARS), z.number().int()], { error: `be a non-empty string (at most ${MAX_NAME_CHARS} characters) or a whole number` })
    .nullish(),
  cloud_properties: NetworkCloudPropertiesSchema.nullish(),
  mac: z.string({ error: 'be a MAC address string' }).max(64, { error: 'be a MAC address' }).nullish(),
  use_dhcp: z.boolean({ error: 'be true or false' }).nullish(),
});

export type NetworkSettings = z.infer<typeof NetworkSettingsSchema>;
export type NetworkCloudProperties = z.infer<typeof NetworkCloudPropertiesSchema>;

/**
 * The error every planning rule raises: it names the BOSH network, the field, the value
 * as sent and the rule, e.g. `Invalid network "private": field "gateway" is "10.0.0.1"
 * but must be inside 192.168.1.0/24 (…)`. `rest` completes the sentence after the value.
 */
export function invalidNetwork(network: string, field: string, value: unknown, rest: string): CloudError {
  const shown = value === undefined ? 'missing' : show(value);
  return new CloudError(`Invalid network ${show(network)}: field "${field}" is ${shown} but ${rest}`);
}

/** Validate one network's shape; the first problem becomes an invalidNetwork error. */
export function parseNetworkSettings(network: string, raw: unknown): NetworkSettings {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CloudError(`Invalid network ${show(network)}: its settings are ${show(raw)} but must be an object with at least "type"`);
  }
  const result = NetworkSettingsSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue === undefined) throw new CloudError(`Invalid network ${show(network)}: its settings were rejected`);
  return throwIssue(network, raw, issue.path, issue.message);
}

function throwIssue(network: string, raw: unknown, path: PropertyKey[], message: string): never {
  const field = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
  let value: unknown = raw;
  for (const p of path) {
    value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[p] : undefined;
  }
  throw invalidNetwork(network, field || '(settings)', value, `must ${message}`);
}
