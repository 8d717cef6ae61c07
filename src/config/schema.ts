// The CPI's configuration (`cpi.json`): this schema is the single source of truth.
// Types are inferred from it, defaults live here and nowhere else, and the README's
// configuration reference is checked against it by a test.
import { z } from 'zod';

const nonEmpty = z.string().min(1);

export const BlobstoreSchema = z
  .object({
    provider: nonEmpty.describe('blobstore provider, e.g. "local", "dav", "s3"'),
    options: z.record(z.string(), z.unknown()).default({}).describe('provider options passed to the agent'),
  })
  .describe('agent blobstore');

export const AgentSchema = z
  .object({
    mbus: nonEmpty.describe('URL the agent listens on / connects to, e.g. https://mbus:PASS@0.0.0.0:6868 or nats://...'),
    ntp: z.array(nonEmpty).default([]).describe('NTP servers for the agent'),
    blobstore: BlobstoreSchema.optional(),
  })
  .describe('settings every agent receives');

export const SshSchema = z
  .object({
    private_key: z.string().optional().describe('path to an ssh private key used for qemu+ssh:// URIs'),
    known_hosts: z.string().optional().describe('path to a known_hosts file; when absent ssh uses its defaults'),
    strict_host_key_checking: z.boolean().default(true).describe('pass StrictHostKeyChecking=yes|no to ssh'),
    extra_args: z.array(z.string()).default([]).describe('additional ssh command-line arguments'),
  })
  .describe('ssh transport settings');

export const TlsSchema = z
  .object({
    ca_cert: z.string().optional().describe('CA certificate (PEM content or file path); default /etc/pki/CA/cacert.pem'),
    client_cert: z.string().optional().describe('client certificate (PEM content or path); default /etc/pki/libvirt/clientcert.pem'),
    client_key: z.string().optional().describe('client private key (PEM content or path); default /etc/pki/libvirt/private/clientkey.pem'),
    verify: z.boolean().default(true).describe('verify the server certificate and host name'),
  })
  .describe('TLS transport settings');

export const LibvirtSchema = z
  .object({
    uri: nonEmpty.default('qemu:///system').describe('libvirt connection URI: qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, lxc:///, vbox:///session, test+unix:///default'),
    ssh: SshSchema.default({ strict_host_key_checking: true, extra_args: [] }),
    tls: TlsSchema.default({ verify: true }),
    call_timeout_seconds: z.number().positive().default(120).describe('upper bound for one libvirt RPC call (the server-side copy of a detached disk snapshot gets a minute per GiB allocated instead)'),
  })
  .describe('how to reach libvirt');

export const StorageSchema = z
  .object({
    pool: nonEmpty.default('bosh').describe('storage pool holding stemcells, VM disks, persistent disks and config drives'),
    path: nonEmpty.default('/var/lib/libvirt/bosh').describe('directory of the pool when the CPI creates it'),
    create_pool: z.boolean().default(true).describe('create (define, build, start) the directory pool when it is missing'),
  })
  .describe('where volumes live');

export const DefaultNetworkSchema = z
  .object({
    name: z.string().optional().describe('libvirt network used when a network\'s cloud_properties name none'),
    bridge: z.string().optional().describe('host bridge used instead of a libvirt network'),
    model: nonEmpty.default('virtio').describe('NIC model'),
  })
  .describe('network defaults for NICs');

export const VmDefaultsSchema = z
  .object({
    cpu: z.number().int().positive().default(1).describe('vCPUs when cloud_properties give none'),
    ram: z.number().int().positive().default(1024).describe('memory in MiB when cloud_properties give none'),
    ephemeral_disk_size: z.number().int().nonnegative().default(4096).describe('ephemeral disk size in MiB (0: none)'),
    machine: z.enum(['pc', 'q35']).default('pc').describe('QEMU machine type'),
    firmware: z.enum(['bios', 'efi']).default('bios').describe('guest firmware'),
    serial_log_dir: nonEmpty.default('/var/log/libvirt/qemu').describe('directory on the libvirt host for each VM\'s serial console log (<dir>/<vm_cid>-console.log); it must exist there (the CPI may be remote): the default is where libvirt keeps QEMU\'s own logs'),
    reboot_timeout_seconds: z.number().positive().default(60).describe('graceful reboot wait before a hard reset'),
    detach_timeout_seconds: z.number().positive().default(60).describe('how long detach_disk waits for a running guest to release a disk (ACPI unplug) before failing with ok_to_retry'),
  })
  .describe('VM defaults');

/**
 * The same fields as `schema`, all optional and without defaults, unknown keys refused:
 * what a `hosts` entry may override. A default here would hide the top level's value.
 */
function overridesOf(schema: z.ZodObject): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(schema.shape)) {
    let f = field as z.ZodType;
    const description = f.description;
    if (f instanceof z.ZodDefault) f = f.unwrap() as z.ZodType;
    if (f instanceof z.ZodOptional) f = f.unwrap() as z.ZodType;
    if (f instanceof z.ZodObject) f = overridesOf(f);
    shape[key] = description ? f.optional().describe(description) : f.optional();
  }
  return z.object(shape).strict();
}

export const HOST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]*$/;

export const HostSchema = z
  .object({
    name: z
      .string()
      .regex(HOST_NAME_PATTERN, 'lowercase letters, digits and dashes only, starting with a letter or digit')
      .max(32)
      .describe('the host\'s name: cloud_properties `host`/`hosts` choose it, and multi-host CIDs carry it'),
    libvirt: overridesOf(LibvirtSchema).optional().describe('overrides of the top-level `libvirt` section for this host'),
    storage: overridesOf(StorageSchema).optional().describe('overrides of the top-level `storage` section for this host'),
    network: overridesOf(DefaultNetworkSchema).optional().describe('overrides of the top-level `network` section for this host'),
  })
  .strict()
  .describe('one libvirt host');

export const HostsSchema = z
  .array(HostSchema)
  .min(1)
  .superRefine((hosts, ctx) => {
    const seen = new Map<string, number>();
    hosts.forEach((h, i) => {
      const first = seen.get(h.name);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate host name ${JSON.stringify(h.name)} (also hosts.${first}.name)` });
      else seen.set(h.name, i);
    });
  })
  .describe('several libvirt hosts behind one CPI (docs/multi-host.md): each entry has a `name` and overrides of the top-level `libvirt`, `storage` and `network` sections, which give the defaults; absent: one host, the top-level sections');

export const ConfigSchema = z
  .object({
    libvirt: LibvirtSchema.default(LibvirtSchema.parse({})),
    domain_type: z.enum(['auto', 'kvm', 'qemu']).default('auto').describe('auto picks kvm only when domain capabilities offer it'),
    storage: StorageSchema.default(StorageSchema.parse({})),
    network: DefaultNetworkSchema.default(DefaultNetworkSchema.parse({})),
    hosts: HostsSchema.optional(),
    vm: VmDefaultsSchema.default(VmDefaultsSchema.parse({})),
    agent: AgentSchema,
    name_prefix: z
      .string()
      .regex(/^[a-z0-9-]*$/, 'lowercase letters, digits and dashes only')
      .max(32)
      .default('')
      .describe('prefix for every domain and volume name the CPI creates; the CPI sees only names with exactly its prefix (an empty prefix owns only unprefixed names), so several directors or test runs can share a host: another prefix\'s VM, disk, stemcell or snapshot is VMNotFound, DiskNotFound or false'),
  })
  .strict()
  .describe('bosh-libvirt-cpi configuration (cpi.json)');

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type HostInput = z.infer<typeof HostSchema>;
