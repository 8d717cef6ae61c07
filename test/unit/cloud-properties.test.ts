// create_vm's cloud_properties decoding, and the project's own examples fed through it:
// every cloud_properties block in manifests/ and docs/ must mean to the CPI what it says
// to the reader (a key the CPI ignored once gave the example `minimal` vm_type 1 GiB of
// ephemeral disk instead of the 4 GiB written there).
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigSchema, type Config } from '../../src/config/schema.js';
import { NetworkCloudPropertiesSchema } from '../../src/network/schema.js';
import {
  decodeVmCloudProperties,
  describeIgnored,
  ignoredCloudPropertyKeys,
  KNOWN_VM_KEYS,
  unknownKeys,
} from '../../src/driver/shared/cloud-properties.js';
import { ROOT } from '../helpers/cpi.js';

// Defaults no example uses, so a size the decoder ignored cannot pass for the written one.
const config: Config = ConfigSchema.parse({
  agent: { mbus: 'nats://n:p@h:4222', blobstore: { provider: 'local' } },
  vm: { cpu: 3, ram: 333, ephemeral_disk_size: 33 },
});

type Kind = 'vm' | 'network' | 'disk' | 'az';
interface Block {
  where: string;
  kind: Kind;
  props: Record<string, unknown>;
}

const VM_HINT = new Set(KNOWN_VM_KEYS);
const NETWORK_HINT = new Set(['name', 'bridge', 'model']);

/** Which kind of cloud_properties a path in a manifest or an ops file names. */
function kindOfPath(path: string): Kind | undefined {
  if (/(^|\/)(vm_types|resource_pools|vm_extensions)\b/.test(path)) return 'vm';
  if (/(^|\/)networks\b/.test(path)) return 'network';
  if (/(^|\/)(disk_types|disk_pools)\b/.test(path)) return 'disk';
  if (/(^|\/)azs\b/.test(path)) return 'az';
  return undefined;
}

/** Every `cloud_properties` value under `node`, with the path that leads to it. */
function walk(node: unknown, path: string, where: string, out: Block[]): void {
  if (Array.isArray(node)) {
    node.forEach((n, i) => walk(n, `${path}/${i}`, where, out));
    return;
  }
  if (!node || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  // An ops-file entry: its value lands at `path`.
  if (typeof obj.type === 'string' && typeof obj.path === 'string' && 'value' in obj) {
    if (/\/cloud_properties\??$/.test(obj.path)) push(out, where, obj.path, obj.value);
    walk(obj.value, obj.path, where, out);
    return;
  }
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'cloud_properties') push(out, where, path, v);
    else walk(v, `${path}/${k}`, where, out);
  }
}

function push(out: Block[], where: string, path: string, value: unknown): void {
  const kind = kindOfPath(path);
  if (!kind) throw new Error(`${where}: cloud_properties at ${path} belong to nothing this test knows`);
  out.push({ where: `${where} ${path}`, kind, props: (value ?? {}) as Record<string, unknown> });
}

/** Inline examples in prose: `{cpu: 2, ram: 6144, …}` spans next to the words "cloud properties". */
function proseBlocks(file: string, text: string): Block[] {
  const out: Block[] = [];
  for (const m of text.matchAll(/`((?:cloud_properties:\s*)?\{[^`]*\})`/g)) {
    const before = text.slice(Math.max(0, m.index - 120), m.index);
    if (!/cloud[_ ]properties/i.test(before + m[1]!)) continue;
    let value: unknown;
    try {
      value = parse(m[1]!);
    } catch {
      continue; // a schematic span, not YAML
    }
    if (value && typeof value === 'object' && 'cloud_properties' in value) value = (value as { cloud_properties: unknown }).cloud_properties;
    if (!value || typeof value !== 'object' || hasNullLeaf(value)) continue; // `{cpu, ram (MiB)}`-style schemas
    const keys = Object.keys(value);
    const kind: Kind | undefined = keys.some((k) => VM_HINT.has(k)) ? 'vm' : keys.some((k) => NETWORK_HINT.has(k)) ? 'network' : undefined;
    if (kind) out.push({ where: `${file}: ${m[1]}`, kind, props: value as Record<string, unknown> });
  }
  return out;
}

function hasNullLeaf(v: unknown): boolean {
  if (v === null) return true;
  if (typeof v !== 'object') return false;
  return Object.values(v as object).some(hasNullLeaf);
}

function exampleBlocks(): Block[] {
  const out: Block[] = [];
  for (const f of readdirSync(join(ROOT, 'manifests')).filter((f) => /\.ya?ml$/.test(f))) {
    for (const doc of parseAllDocuments(readFileSync(join(ROOT, 'manifests', f), 'utf8'))) walk(doc.toJS(), '', `manifests/${f}`, out);
  }
  const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  for (const f of [...docs, 'README.md']) {
    const text = readFileSync(join(ROOT, f), 'utf8');
    for (const m of text.matchAll(/```ya?ml\n([\s\S]*?)```/g)) walk(parse(m[1]!), '', f, out);
    out.push(...proseBlocks(f, text));
  }
  return out;
}

/** The number an example writes for the ephemeral disk, under whichever spelling. */
function writtenEphemeral(p: Record<string, unknown>): number | undefined {
  const e = p.ephemeral_disk;
  if (typeof e === 'number') return e;
  if (e && typeof e === 'object' && typeof (e as { size?: unknown }).size === 'number') return (e as { size: number }).size;
  return typeof p.ephemeral_disk_size === 'number' ? p.ephemeral_disk_size : undefined;
}

describe('create_vm cloud_properties', () => {
  it('reads ephemeral_disk.size, and the spellings operators bring from other CPIs', () => {
    expect(decodeVmCloudProperties({ ephemeral_disk: { size: 4096 } }, config).ephemeralMiB).toBe(4096);
    expect(decodeVmCloudProperties({ ephemeral_disk_size: 4096 }, config).ephemeralMiB).toBe(4096);
    // bosh-virtualbox-cpi: cpus, memory, ephemeral_disk as a bare number of MiB
    expect(decodeVmCloudProperties({ cpus: 2, memory: 2048, ephemeral_disk: 8192 }, config)).toMatchObject({ cpu: 2, ramMiB: 2048, ephemeralMiB: 8192 });
    expect(decodeVmCloudProperties({ ephemeral_disk: 0 }, config).ephemeralMiB).toBe(0);
    expect(decodeVmCloudProperties({}, config)).toMatchObject({ cpu: 3, ramMiB: 333, ephemeralMiB: 33 });
  });

  it('refuses two spellings of one property that disagree, naming both', () => {
    expect(() => decodeVmCloudProperties({ ephemeral_disk: { size: 4096 }, ephemeral_disk_size: 1024 }, config)).toThrow(
      /ephemeral_disk\.size is 4096 but ephemeral_disk_size is 1024/,
    );
    expect(() => decodeVmCloudProperties({ ram: 1024, memory: 2048 }, config)).toThrow(/ram is 1024 but memory is 2048/);
    expect(decodeVmCloudProperties({ cpu: 2, cpus: 2 }, config).cpu).toBe(2);
  });

  it('refuses a malformed alias like the key it stands for', () => {
    expect(() => decodeVmCloudProperties({ ephemeral_disk_size: '4096' }, config)).toThrow(/cloud_properties\.ephemeral_disk_size of create_vm: got "4096"/);
  });

  it('names the keys it ignores, in the VM and in every network', () => {
    const ignored = ignoredCloudPropertyKeys(
      { cpu: 1, ephemeral_disk_szie: 4096, instance_type: 'm5.large' },
      { default: { type: 'manual', cloud_properties: { name: 'bosh', subnet: 'subnet-1' } }, other: { type: 'dynamic' } },
    );
    expect(ignored).toEqual({ cloud_properties: ['ephemeral_disk_szie', 'instance_type'], 'networks.default.cloud_properties': ['subnet'] });
    expect(describeIgnored(ignored, 'qemu')).toMatch(/qemu backend ignores .*cloud_properties: ephemeral_disk_szie, instance_type; networks\.default\.cloud_properties: subnet/);
    expect(describeIgnored(ignoredCloudPropertyKeys({ cpu: 1 }, {}), 'qemu')).toBeUndefined();
  });
});

describe('the project\'s own examples', () => {
  const blocks = exampleBlocks();

  it('finds the examples (cloud-config vm_types, the create-env resource pool, prose)', () => {
    expect(blocks.filter((b) => b.kind === 'vm' && b.where.startsWith('manifests/cloud-config.yml')).length).toBe(4);
    expect(blocks.some((b) => b.where.startsWith('manifests/cpi.yml') && b.kind === 'vm')).toBe(true);
    expect(blocks.some((b) => b.where.startsWith('docs/deploying.md') && b.kind === 'vm')).toBe(true);
  });

  it('every VM block decodes to exactly the sizes it writes, with no key the CPI ignores', () => {
    for (const b of blocks.filter((x) => x.kind === 'vm')) {
      expect(unknownKeys(b.props, KNOWN_VM_KEYS), b.where).toEqual([]);
      const shape = decodeVmCloudProperties(b.props, config);
      const eph = writtenEphemeral(b.props);
      if (eph !== undefined) expect(shape.ephemeralMiB, b.where).toBe(eph);
      if (typeof b.props.cpu === 'number') expect(shape.cpu, b.where).toBe(b.props.cpu);
      if (typeof b.props.ram === 'number') expect(shape.ramMiB, b.where).toBe(b.props.ram);
    }
  });

  it('the example `minimal` vm_type gets 4 GiB and the create-env director 16 GiB of ephemeral disk', () => {
    const cc = parse(readFileSync(join(ROOT, 'manifests/cloud-config.yml'), 'utf8')) as { vm_types: Array<{ name: string; cloud_properties: unknown }> };
    const minimal = cc.vm_types.find((v) => v.name === 'minimal')!;
    expect(decodeVmCloudProperties(minimal.cloud_properties, config).ephemeralMiB).toBe(4096);
    const ops = parse(readFileSync(join(ROOT, 'manifests/cpi.yml'), 'utf8')) as Array<{ path: string; value: unknown }>;
    const pool = ops.find((o) => o.path === '/resource_pools/name=vms/cloud_properties?')!;
    expect(decodeVmCloudProperties(pool.value, config).ephemeralMiB).toBe(16384);
  });

  it('every network block is valid and uses only keys the CPI knows', () => {
    const nets = blocks.filter((b) => b.kind === 'network');
    expect(nets.length).toBeGreaterThan(3);
    for (const b of nets) {
      expect(NetworkCloudPropertiesSchema.safeParse(b.props).success, b.where).toBe(true);
      expect(Object.keys(b.props).filter((k) => !NETWORK_HINT.has(k)), b.where).toEqual([]);
    }
  });

  it('disk blocks carry nothing, AZ blocks only the multi-host keys host/hosts (the qemu backend reads no other disk or AZ cloud_properties)', () => {
    for (const b of blocks.filter((x) => x.kind === 'disk')) expect(b.props, b.where).toEqual({});
    for (const b of blocks.filter((x) => x.kind === 'az')) expect(Object.keys(b.props).filter((k) => k !== 'host' && k !== 'hosts'), b.where).toEqual([]);
  });
});
