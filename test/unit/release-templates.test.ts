// The BOSH release's job as the director and `bosh create-env` see it: the spec parses,
// every config key is a job property, the templates render (with Ruby's ERB, like
// bosh-template) into a cpi.json that ConfigSchema accepts, the ops files wire the job up
// with properties the spec declares, and the rendered bin/cpi answers `info` under the
// director's stripped environment.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigSchema } from '../../src/config/schema.js';
import { scratchDir } from '../helpers/scratch.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const JOB_DIR = join(ROOT, 'jobs/libvirt_cpi');
const RENDERER = join(ROOT, 'test/helpers/render-erb.rb');
const BUNDLE = join(ROOT, 'dist/cpi.mjs');
const STRIPPED_PATH = 'PATH=/usr/sbin:/usr/bin:/sbin:/bin';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Props = Record<string, Json>;

interface JobSpec {
  name: string;
  templates: Record<string, string>;
  packages: string[];
  properties: Record<string, { description?: string; default?: Json; example?: Json } | null>;
}

const spec = parseYaml(readFileSync(join(JOB_DIR, 'spec'), 'utf8')) as JobSpec;
const specNames = new Set(Object.keys(spec.properties));

const scratch = scratchDir('release-templates-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let renders = 0;

interface Rendered {
  dir: string;
  lookups: string[];
  file(dest: string): string;
  config(): unknown;
}

/** Render every template of the job with these manifest properties (bosh-template semantics). */
function render(properties: Props): Rendered {
  const dir = join(scratch, `render-${++renders}`);
  mkdirSync(dir);
  const context = join(dir, 'context.json');
  writeFileSync(context, JSON.stringify({ properties }));
  const out = join(dir, 'out');
  const res = spawnSync('ruby', [RENDERER, JOB_DIR, context, out], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`render failed: ${res.stderr.trim()}`);
  const summary = JSON.parse(res.stdout) as { rendered: string[]; lookups: string[] };
  expect(summary.rendered.sort()).toEqual(Object.values(spec.templates).sort());
  const file = (dest: string) => readFileSync(join(out, dest), 'utf8');
  return { dir: out, lookups: summary.lookups, file, config: () => JSON.parse(file('config/cpi.json')) };
}

function renderError(properties: Props): string {
  try {
    render(properties);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected rendering to fail');
}

// ---- property sets -------------------------------------------------------------------

const SSH_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----';
const KNOWN_HOSTS = '192.168.122.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample';
const PEM = (what: string) => `-----BEGIN ${what}-----\nMIIBexample\n-----END ${what}-----\n`;

/** What the bosh instance group of bosh-deployment's bosh.yml + manifests/cpi.yml gives the job (no agent.mbus: built from nats.*). */
const DIRECTOR_PROPS: Props = {
  libvirt: {
    uri: 'qemu+ssh://bosh@192.168.122.1/system',
    ssh: { private_key: SSH_KEY, known_hosts: KNOWN_HOSTS, strict_host_key_checking: true },
  },
  nats: { address: '192.168.122.6', user: 'nats', password: 'n@ts/secret', port: 4222 },
  blobstore: {
    provider: 'dav',
    address: '192.168.122.6',
    port: 25250,
    agent: { user: 'agent', password: 'blob-secret' },
    director: { user: 'director', password: 'not-for-agents' },
    tls: { cert: { ca: PEM('CERTIFICATE'), certificate: PEM('CERTIFICATE'), private_key: PEM('PRIVATE KEY') } },
  },
  ntp: ['time1.google.com', 'time2.google.com'],
  // properties of other jobs in the same instance group: invisible to this job
  director: { cpi_job: 'libvirt_cpi', name: 'libvirt' },
  postgres: { password: 'pg' },
};

/** cloud_provider.properties of bosh.yml + manifests/cpi.yml: all the CLI renders with. */
const CREATE_ENV_PROPS: Props = {
  agent: { mbus: 'https://mbus:bootstrap-secret@0.0.0.0:6868' },
  blobstore: { provider: 'local', path: '/var/vcap/micro_bosh/data/cache' },
  libvirt: { uri: 'qemu:///system' },
  ntp: ['time1.google.com', 'time2.google.com'],
};

// ---- ConfigSchema leaves ----------------------------------------------------------------

function unwrap(t: z.ZodType): z.ZodType {
  let cur: z.ZodType = t;
  for (;;) {
    if (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) {
      cur = cur.unwrap() as z.ZodType;
    } else {
      return cur;
    }
  }
}

/** Dotted paths of every scalar/array/record key of the config. */
function schemaLeaves(t: z.ZodType, prefix = ''): string[] {
  const inner = unwrap(t);
  if (inner instanceof z.ZodObject) {
    return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([k, v]) => schemaLeaves(v, prefix ? `${prefix}.${k}` : k));
  }
  return [prefix];
}

// Config keys whose job property has another name (the names other CPI releases use).
const PROPERTY_FOR_KEY: Record<string, string> = {
  'agent.ntp': 'ntp',
  'agent.blobstore.provider': 'blobstore.provider',
};

function get(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

// ---- the wrapper's /var/vcap layout ---------------------------------------------------

let bundle = '';
beforeAll(() => {
  if (!existsSync(BUNDLE)) execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
  bundle = BUNDLE;
}, 180_000);

/** A directory laid out like /var/vcap with the rendered job and both packages. */
function vcapLayout(rendered: Rendered): { root: string; packages: string; jobs: string } {
  const root = mkdtempSync(join(rendered.dir, '..', 'vcap-'));
  const packages = join(root, 'packages');
  const jobs = join(root, 'jobs');
  mkdirSync(join(packages, 'libvirt_cpi'), { recursive: true });
  mkdirSync(join(packages, 'libvirt_cpi_node/bin'), { recursive: true });
  copyFileSync(bundle, join(packages, 'libvirt_cpi/cpi.mjs'));
  copyFileSync(join(dirname(bundle), 'cpi-core.mjs'), join(packages, 'libvirt_cpi/cpi-core.mjs'));
  symlinkSync(process.execPath, join(packages, 'libvirt_cpi_node/bin/node'));
  for (const dest of Object.values(spec.templates)) {
    mkdirSync(dirname(join(jobs, 'libvirt_cpi', dest)), { recursive: true });
    copyFileSync(join(rendered.dir, dest), join(jobs, 'libvirt_cpi', dest));
    chmodSync(join(jobs, 'libvirt_cpi', dest), dest.startsWith('bin/') ? 0o755 : 0o644);
  }
  return { root, packages, jobs };
}

const INFO = JSON.stringify({ method: 'info', arguments: [], context: { director_uuid: 'x' } });

/** Run a bin/cpi like the director does: `env -i PATH=… [extra env] bash bin/cpi`, from elsewhere. */
function runCpi(script: string, extraEnv: string[] = [], input = INFO): { response: { result: unknown; error: unknown; log: unknown }; stderr: string } {
  const res = spawnSync('env', ['-i', STRIPPED_PATH, ...extraEnv, 'bash', script], { input, encoding: 'utf8', cwd: '/', timeout: 60_000 });
  const lines = res.stdout.trim().split('\n');
  expect(lines, `stdout must hold exactly one line; stderr: ${res.stderr}`).toHaveLength(1);
  return { response: JSON.parse(lines[0] ?? 'null'), stderr: res.stderr };
}

// ---- a small go-patch (the subset the ops files use) ---------------------------------

interface Op {
  type: 'replace' | 'remove';
  path: string;
  value?: unknown;
}

function applyOps(doc: unknown, ops: Op[]): unknown {
  const root = structuredClone(doc) as Record<string, unknown>;
  for (const op of ops) {
    expect(op.type, op.path).toBe('replace');
    const segs = op.path.split('/').slice(1);
    let cur: unknown = root;
    segs.forEach((raw, i) => {
      const last = i === segs.length - 1;
      const optional = raw.endsWith('?');
      const seg = optional ? raw.slice(0, -1) : raw;
      const next = segs[i + 1];
      const fresh = () => (next !== undefined && (next === '-' || /^[0-9]+$/.test(next) || next.includes('=')) ? [] : {});
      if (Array.isArray(cur)) {
        let idx: number;
        if (seg === '-') idx = cur.length;
        else if (/^[0-9]+$/.test(seg)) idx = Number(seg);
        else {
          const [k, v] = seg.split('=') as [string, string];
          idx = cur.findIndex((e) => (e as Record<string, unknown>)[k] === v);
          if (idx < 0 && optional) idx = cur.push({ [k]: v }) - 1;
        }
        if (idx < 0 || idx > cur.length) throw new Error(`${op.path}: no element ${seg}`);
        if (last) cur[idx] = structuredClone(op.value);
        else cur = cur[idx];
      } else {
        const obj = cur as Record<string, unknown>;
        if (last) obj[seg] = structuredClone(op.value);
        else {
          if (obj[seg] === undefined || obj[seg] === null) {
            if (!optional && !segs.slice(i).some((s) => s.endsWith('?'))) throw new Error(`${op.path}: missing key ${seg}`);
            obj[seg] = fresh();
          }
          cur = obj[seg];
        }
      }
    });
  }
  return root;
}

/** The parts of bosh-deployment's bosh.yml the ops files touch. */
const BOSH_YML = {
  cloud_provider: {
    mbus: 'https://mbus:((mbus_bootstrap_password))@((internal_ip)):6868',
    properties: {
      agent: { mbus: 'https://mbus:((mbus_bootstrap_password))@0.0.0.0:6868' },
      blobstore: { path: '/var/vcap/micro_bosh/data/cache', provider: 'local' },
    },
  },
  disk_pools: [{ disk_size: 65536, name: 'disks' }],
  instance_groups: [
    {
      name: 'bosh',
      jobs: [{ name: 'director', release: 'bosh' }],
      networks: [{ name: 'default', static_ips: ['((internal_ip))'] }],
      properties: {
        agent: { mbus: 'nats://((internal_ip)):4222' },
        blobstore: { address: '((internal_ip))', port: 25250, provider: 'dav', agent: { user: 'agent', password: '((blobstore_agent_password))' } },
        director: { name: '((director_name))' },
        nats: { address: '((internal_ip))', password: '((nats_password))', user: 'nats' },
      },
    },
  ],
  networks: [{ name: 'default', type: 'manual', subnets: [{ range: '((internal_cidr))', gateway: '((internal_gw))', static: ['((internal_ip))'] }] }],
  releases: [{ name: 'bosh' }],
  resource_pools: [{ name: 'vms', network: 'default', env: { bosh: { password: '*' } } }],
  variables: [] as unknown[],
};

const MANIFESTS = join(ROOT, 'manifests');
// create-env-example.yml is a whole manifest, not an ops file (checked below).
const opsFiles = readdirSync(MANIFESTS).filter((f) => f.endsWith('.yml') && f !== 'cloud-config.yml' && f !== 'create-env-example.yml');
const readOps = (f: string) => parseYaml(readFileSync(join(MANIFESTS, f), 'utf8')) as Op[];

/** Every dotted property path an ops file sets on the CPI job (instance group or cloud_provider). */
function propertyPathsSet(ops: Op[]): { path: string; op: string }[] {
  const found: { path: string; op: string }[] = [];
  const walk = (base: string, value: unknown, op: string) => {
    if (specNames.has(base)) return found.push({ path: base, op });
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(base ? `${base}.${k}` : k, v, op);
      return;
    }
    found.push({ path: base, op });
  };
  for (const op of ops) {
    const m = /^\/(?:instance_groups\/name=bosh|cloud_provider)\/properties(\/.*)?$/.exec(op.path);
    if (!m) continue;
    const base = (m[1] ?? '').split('/').slice(1).map((s) => s.replace(/\?$/, '')).join('.');
    walk(base, op.value, op.path);
  }
  return found;
}

// Instance-group properties that belong to the bosh release's jobs, not to libvirt_cpi.
const OTHER_JOBS_PROPERTIES = new Set(['director.cpi_job']);

// ==== tests ============================================================================

describe('jobs/libvirt_cpi/spec', () => {
  it('declares the templates, the packages and a description for every property', () => {
    expect(spec.name).toBe('libvirt_cpi');
    expect(spec.templates).toMatchObject({
      'cpi.erb': 'bin/cpi',
      'cpi.json.erb': 'config/cpi.json',
      'ssh_key.erb': 'config/ssh_key',
    });
    expect(spec.packages).toEqual(['libvirt_cpi', 'libvirt_cpi_node']);
    for (const p of spec.packages) expect(existsSync(join(ROOT, 'packages', p, 'spec')), p).toBe(true);
    for (const t of Object.keys(spec.templates)) expect(existsSync(join(JOB_DIR, 'templates', t)), t).toBe(true);
    for (const [name, def] of Object.entries(spec.properties)) {
      expect(def?.description, `${name} has a description`).toMatch(/\S/);
    }
    // The CPI runs no process, so its monit file is empty, but it must exist: `bosh
    // create-release` accepts a job without one, the CLI's job renderer (create-env, and the
    // director's) stops with "Rendering monit file: … no such file or directory".
    expect(existsSync(join(JOB_DIR, 'monit')), 'jobs/libvirt_cpi/monit exists').toBe(true);
    expect(readFileSync(join(JOB_DIR, 'monit'), 'utf8').trim()).toBe('');
  });

  it('has a job property for every key of ConfigSchema', () => {
    const leaves = schemaLeaves(ConfigSchema);
    expect(leaves.length).toBeGreaterThan(25);
    const missing = leaves.filter((k) => !specNames.has(PROPERTY_FOR_KEY[k] ?? k));
    expect(missing).toEqual([]);
  });

  it('gives every config key the same default as ConfigSchema', () => {
    const mbus = 'https://mbus:x@0.0.0.0:6868';
    const rendered = ConfigSchema.parse(render({ agent: { mbus } }).config());
    expect(rendered).toEqual(ConfigSchema.parse({ agent: { mbus } }));
  });

  it('sets every config key from its property', () => {
    const props: Props = {
      libvirt: {
        uri: 'qemu+tls://host.example/system',
        ssh: { private_key: SSH_KEY, known_hosts: KNOWN_HOSTS, strict_host_key_checking: false, extra_args: ['-p', '2222'] },
        tls: { ca_cert: PEM('CERTIFICATE'), client_cert: PEM('CERTIFICATE'), client_key: PEM('PRIVATE KEY'), verify: false },
        call_timeout_seconds: 30,
      },
      domain_type: 'qemu',
      storage: { pool: 'bosh-test', path: '/srv/bosh', create_pool: false },
      network: { name: 'bosh', bridge: 'br0', model: 'e1000' },
      vm: { cpu: 2, ram: 2048, ephemeral_disk_size: 0, machine: 'q35', firmware: 'efi', serial_log_dir: '/srv/logs', reboot_timeout_seconds: 5, detach_timeout_seconds: 7 },
      name_prefix: 'ci-1',
      hosts: [{ name: 'kvm-1' }, { name: 'kvm-2', libvirt: { uri: 'qemu+ssh://bosh@192.0.2.12/system' }, storage: { path: '/srv/b' } }],
      agent: { mbus: 'nats://10.0.0.6:4222', blobstore: { options: { extra: 'yes' } } },
      ntp: ['ntp.example'],
      blobstore: { provider: 'local', path: '/var/vcap/store/blobs' },
    };
    const raw = render(props).config();
    const config = ConfigSchema.parse(raw);
    expect(raw).toEqual(config); // nothing left to defaults
    const expected: Record<string, unknown> = {
      'libvirt.ssh.private_key': 'config/ssh_key',
      'libvirt.ssh.known_hosts': 'config/ssh_known_hosts',
      'agent.ntp': ['ntp.example'],
      'agent.blobstore.provider': 'local',
      'agent.blobstore.options': { blobstore_path: '/var/vcap/store/blobs', extra: 'yes' },
    };
    for (const key of schemaLeaves(ConfigSchema)) {
      expect(get(config, key), key).toEqual(key in expected ? expected[key] : get(props, key));
    }
  });

  it('is documented property by property in docs/deploying.md', () => {
    const doc = readFileSync(join(ROOT, 'docs/deploying.md'), 'utf8');
    const undocumented = [...specNames].filter((name) => !doc.includes(`| \`${name}\` |`));
    expect(undocumented).toEqual([]);
  });

  it('renders templates that ask only for declared properties, by literal name', () => {
    const templates = readdirSync(join(JOB_DIR, 'templates'));
    for (const t of templates) {
      const text = readFileSync(join(JOB_DIR, 'templates', t), 'utf8');
      for (const call of text.matchAll(/\b(?:p|if_p|else_if_p)\(\s*(\[[^\]]*\]|'[^']*'|"[^"]*")/g)) {
        expect(call[1], `${t}: ${call[0]}`).not.toContain('#{');
        for (const name of (call[1] ?? '').matchAll(/['"]([^'"]+)['"]/g)) {
          expect(specNames.has(name[1] ?? ''), `${t} asks for ${name[1]}, which the spec does not declare`).toBe(true);
        }
      }
    }
    // and at run time, with both property sets
    for (const props of [DIRECTOR_PROPS, CREATE_ENV_PROPS]) {
      const undeclared = render(props).lookups.filter((n) => !specNames.has(n));
      expect(undeclared).toEqual([]);
    }
  });
});

describe('director mode (instance group properties)', () => {
  let r: Rendered;
  beforeAll(() => {
    r = render(DIRECTOR_PROPS);
  });

  it('renders a cpi.json that ConfigSchema accepts, with mbus built from nats.*', () => {
    const config = ConfigSchema.parse(r.config());
    expect(config.agent.mbus).toBe('nats://nats:n%40ts%2Fsecret@192.168.122.6:4222');
    expect(config.libvirt.uri).toBe('qemu+ssh://bosh@192.168.122.1/system');
    expect(config.agent.ntp).toEqual(['time1.google.com', 'time2.google.com']);
    expect(config.agent.blobstore).toEqual({
      provider: 'dav',
      options: { endpoint: 'https://192.168.122.6:25250', user: 'agent', password: 'blob-secret', tls: { cert: { ca: PEM('CERTIFICATE') } } },
    });
    expect(JSON.stringify(config)).not.toContain('not-for-agents');
  });

  it('writes the ssh key and known_hosts to files the config names relative to the job dir', () => {
    const config = ConfigSchema.parse(r.config());
    expect(config.libvirt.ssh.private_key).toBe('config/ssh_key');
    expect(config.libvirt.ssh.known_hosts).toBe('config/ssh_known_hosts');
    expect(r.file('config/ssh_key')).toBe(`${SSH_KEY}\n`);
    expect(r.file('config/ssh_known_hosts')).toBe(`${KNOWN_HOSTS}\n`);
    expect(JSON.stringify(r.config())).not.toContain('PRIVATE KEY');
  });

  it('prefers agent.mbus, brackets IPv6 NATS addresses, and names what is missing', () => {
    expect(ConfigSchema.parse(render({ ...DIRECTOR_PROPS, agent: { mbus: 'nats://192.168.122.6:4222' } }).config()).agent.mbus).toBe('nats://192.168.122.6:4222');
    const v6 = render({ nats: { address: 'fd00:198:18::6', password: 'p' }, agent: { nats: { address: null } } }).config();
    expect(ConfigSchema.parse(v6).agent.mbus).toBe('nats://nats:p@[fd00:198:18::6]:4222');
    const viaAgentNats = render({ nats: { address: '10.0.0.6', password: 'p' }, agent: { nats: { address: '10.0.0.7' } } }).config();
    expect(ConfigSchema.parse(viaAgentNats).agent.mbus).toBe('nats://nats:p@10.0.0.7:4222');
    expect(renderError({ libvirt: { uri: 'qemu:///system' } })).toMatch(/agent\.mbus.*nats\.address/);
    expect(renderError({ agent: { mbus: 'x' }, blobstore: { provider: 'dav' } })).toMatch(/Can't find property.*blobstore\.address/);
  });

  it('bin/cpi defaults to /var/vcap and runs node by absolute path', () => {
    const script = r.file('bin/cpi');
    expect(script.startsWith('#!/bin/bash\n')).toBe(true);
    expect(script).toContain('BOSH_PACKAGES_DIR=${BOSH_PACKAGES_DIR:-/var/vcap/packages}');
    expect(script).toContain('BOSH_JOBS_DIR=${BOSH_JOBS_DIR:-/var/vcap/jobs}');
    expect(script).toContain('"$BOSH_PACKAGES_DIR/libvirt_cpi_node/bin/node"');
    expect(script).toContain('"$BOSH_PACKAGES_DIR/libvirt_cpi/cpi.mjs"');
    expect(script).toMatch(/exec "\$node"/);
    expect(script).not.toMatch(/^\s*(exec\s+)?(env\s+)?node\s/m); // never node from PATH
  });

  it('bin/cpi passes node the same flags as the repository\'s bin/cpi: none', () => {
    // What the benchmarks measure (docs/benchmarks.md) is what the director runs. Flags
    // cost every call: --max-semi-space-size=1 made `info` start slower and halved
    // inflate speed; create_stemcell bounds its memory by reusing buffers instead.
    const flags = (text: string) => /exec (?:"\$node"|node)((?:\s*\\?\s*--[a-z-]+(?:=\S+)?)*)/.exec(text)?.[1]?.replace(/[\s\\]+/g, ' ').trim();
    const repo = flags(readFileSync(join(ROOT, 'bin/cpi'), 'utf8'));
    expect(repo).toBe('');
    expect(flags(r.file('bin/cpi'))).toBe(repo);
  });

  it('bin/cpi answers info with only PATH set, through its /var/vcap defaults', () => {
    const layout = vcapLayout(r);
    // Same script with its /var/vcap defaults pointed at the temp layout: no BOSH_* env.
    const script = join(layout.root, 'bin-cpi-defaults');
    writeFileSync(script, r.file('bin/cpi').replaceAll('/var/vcap/', `${layout.root}/`));
    const { response, stderr } = runCpi(script);
    expect(response, stderr).toMatchObject({ error: null, result: { api_version: 3 } });
    // the key became private to its owner, as ssh demands
    expect(statSync(join(layout.jobs, 'libvirt_cpi/config/ssh_key')).mode & 0o777).toBe(0o600);
    // and the rendered script itself, given the directories
    const direct = runCpi(join(layout.jobs, 'libvirt_cpi/bin/cpi'), [`BOSH_PACKAGES_DIR=${layout.packages}`, `BOSH_JOBS_DIR=${layout.jobs}`]);
    expect(direct.response, direct.stderr).toMatchObject({ error: null, result: { api_version: 3 } });
  });
});

describe('create-env mode (cloud_provider.properties only)', () => {
  let r: Rendered;
  beforeAll(() => {
    r = render(CREATE_ENV_PROPS);
  });

  it('renders a cpi.json that ConfigSchema accepts', () => {
    const config = ConfigSchema.parse(r.config());
    expect(config.agent.mbus).toBe('https://mbus:bootstrap-secret@0.0.0.0:6868');
    expect(config.agent.blobstore).toEqual({ provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } });
    expect(config.libvirt.uri).toBe('qemu:///system');
    expect(config.libvirt.ssh.private_key).toBeUndefined();
    expect(config.libvirt.tls).toEqual({ verify: true });
    expect(r.file('config/ssh_key')).toBe('');
  });

  it('bin/cpi answers info under env -i with BOSH_PACKAGES_DIR and BOSH_JOBS_DIR (no HOME)', () => {
    const layout = vcapLayout(r);
    const { response, stderr } = runCpi(join(layout.jobs, 'libvirt_cpi/bin/cpi'), [
      `BOSH_PACKAGES_DIR=${layout.packages}`,
      `BOSH_JOBS_DIR=${layout.jobs}`,
    ]);
    expect(response, stderr).toMatchObject({ error: null, result: { api_version: 3 } });
    expect(response).toHaveProperty('log');
  });

  it('bin/cpi loads cpi-core.mjs from the package for calls past info', () => {
    const layout = vcapLayout(r);
    // create_network is answered by a handler in cpi-core.mjs without touching libvirt.
    const input = JSON.stringify({ method: 'create_network', arguments: [{}, {}], context: { director_uuid: 'x' } });
    const { response, stderr } = runCpi(join(layout.jobs, 'libvirt_cpi/bin/cpi'), [`BOSH_PACKAGES_DIR=${layout.packages}`, `BOSH_JOBS_DIR=${layout.jobs}`], input);
    expect(response, stderr).toMatchObject({ result: null, error: { type: 'Bosh::Clouds::NotImplemented', message: expect.stringMatching(/managed networks/) } });
  });

  it('bin/cpi answers in the CPI response shape when the node package is missing', () => {
    const layout = vcapLayout(r);
    rmSync(join(layout.packages, 'libvirt_cpi_node'), { recursive: true });
    const { response } = runCpi(join(layout.jobs, 'libvirt_cpi/bin/cpi'), [`BOSH_PACKAGES_DIR=${layout.packages}`, `BOSH_JOBS_DIR=${layout.jobs}`]);
    expect(response).toMatchObject({ result: null, error: { type: 'Bosh::Clouds::CpiError', message: expect.stringMatching(/libvirt_cpi_node/) } });
  });
});

describe('manifests/ (ops files for bosh-deployment)', () => {
  it('parse as go-patch operations', () => {
    expect(opsFiles).toEqual(expect.arrayContaining(['cpi.yml', 'dual-stack.yml', 'libvirt-ssh.yml', 'libvirt-tls.yml']));
    for (const f of opsFiles) {
      const ops = readOps(f);
      expect(Array.isArray(ops), f).toBe(true);
      for (const op of ops) {
        expect(['replace', 'remove'], `${f} ${op.path}`).toContain(op.type);
        expect(op.path, f).toMatch(/^\//);
      }
    }
  });

  it('set only properties the job spec declares', () => {
    for (const f of opsFiles) {
      for (const { path, op } of propertyPathsSet(readOps(f))) {
        if (OTHER_JOBS_PROPERTIES.has(path)) continue;
        expect(specNames.has(path), `${f}: ${op} sets ${path}, which jobs/libvirt_cpi/spec does not declare`).toBe(true);
      }
    }
  });

  it('cpi.yml wires the job into create-env and the director', () => {
    const m = applyOps(BOSH_YML, readOps('cpi.yml')) as Record<string, any>;
    expect(m.releases).toContainEqual({ name: 'bosh-libvirt-cpi', url: 'file://((libvirt_cpi_release))' });
    expect(m.cloud_provider.template).toEqual({ name: 'libvirt_cpi', release: 'bosh-libvirt-cpi' });
    const bosh = m.instance_groups[0] as Record<string, any>;
    expect(bosh.jobs).toContainEqual({ name: 'libvirt_cpi', release: 'bosh-libvirt-cpi' });
    expect(bosh.properties.director.cpi_job).toBe('libvirt_cpi');
    expect(m.resource_pools[0]).toMatchObject({ cloud_properties: { cpu: expect.any(Number), ram: expect.any(Number), ephemeral_disk: { size: expect.any(Number) } } });
    expect(m.networks[0].subnets[0].cloud_properties).toEqual({ name: '((libvirt_network))' });
    expect(m.cloud_provider.properties.agent.mbus).toBe('https://mbus:((mbus_bootstrap_password))@0.0.0.0:6868');
  });

  it('the resulting cloud_provider.properties and instance group properties render valid configs', () => {
    const ops = [...readOps('cpi.yml'), ...readOps('libvirt-ssh.yml'), ...readOps('libvirt-tls.yml'), ...readOps('dual-stack.yml')];
    const m = applyOps(BOSH_YML, ops) as Record<string, any>;
    const createEnv = ConfigSchema.parse(render(m.cloud_provider.properties).config());
    expect(createEnv.libvirt.uri).toBe('((libvirt_uri))');
    expect(createEnv.agent.blobstore?.provider).toBe('local');
    const bosh = m.instance_groups[0] as Record<string, any>;
    const director = ConfigSchema.parse(render(bosh.properties).config());
    expect(director.libvirt.uri).toBe('((libvirt_director_uri))');
    expect(director.agent.mbus).toBe('nats://((internal_ip)):4222');
    expect(director.libvirt.ssh.private_key).toBe('config/ssh_key');
    expect(director.libvirt.tls.client_cert).toBe('((libvirt_client_tls.certificate))');
    expect(bosh.networks).toEqual([
      { name: 'default', static_ips: ['((internal_ip))'], default: ['dns', 'gateway'], nic_group: 1 },
      { name: 'default-ipv6', static_ips: ['((internal_ip_v6))'], nic_group: 1 },
    ]);
    expect(m.variables.map((v: { name: string }) => v.name)).toEqual(expect.arrayContaining(['libvirt_ssh', 'libvirt_ca', 'libvirt_client_tls']));
  });

  it('create-env-example.yml gives the CPI only declared properties, and they render a valid config', () => {
    // With docs/deploying.md's values for the variables the CPI's config validates.
    const values: Record<string, string> = { name_prefix: 'example-', storage_pool: 'bosh-example', storage_path: '/var/lib/libvirt/bosh-example', mbus_bootstrap_password: 'pw', domain_type: 'qemu' };
    const text = readFileSync(join(MANIFESTS, 'create-env-example.yml'), 'utf8').replace(/\(\((\w+)\)\)/g, (v, name: string) => values[name] ?? v);
    const m = parseYaml(text) as Record<string, any>;
    expect(m.cloud_provider.template).toEqual({ name: 'libvirt_cpi', release: 'bosh-libvirt-cpi' });
    const flat = (o: Record<string, unknown>, at = ''): string[] => Object.entries(o).flatMap(([k, v]) =>
      v !== null && typeof v === 'object' && !Array.isArray(v) && !specNames.has(at + k) ? flat(v as Record<string, unknown>, `${at}${k}.`) : [at + k]);
    for (const path of flat(m.cloud_provider.properties)) expect(specNames.has(path), `cloud_provider.properties.${path}`).toBe(true);
    const config = ConfigSchema.parse(render(m.cloud_provider.properties).config());
    expect(config).toMatchObject({
      libvirt: { uri: 'qemu:///system' }, domain_type: 'qemu', name_prefix: 'example-', storage: { pool: 'bosh-example', path: '/var/lib/libvirt/bosh-example' },
      agent: { mbus: 'https://mbus:pw@0.0.0.0:6868', blobstore: { provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } } },
    });
  });

  it('cloud-config.yml has an IPv4 and an IPv6 network on one libvirt network (dual-homed) and a delegated prefix network', () => {
    const cc = parseYaml(readFileSync(join(MANIFESTS, 'cloud-config.yml'), 'utf8')) as Record<string, any>;
    for (const key of ['azs', 'vm_types', 'disk_types', 'networks', 'compilation']) expect(cc, key).toHaveProperty(key);
    const nets = new Map<string, any>(cc.networks.map((n: { name: string }) => [n.name, n]));
    expect(nets.get('default').subnets[0].range).toMatch(/^198\.18\./);
    expect(nets.get('default-ipv6').subnets[0].range).toMatch(/^fd00:/);
    expect(nets.get('default').subnets[0].cloud_properties).toEqual(nets.get('default-ipv6').subnets[0].cloud_properties);
    expect(nets.get('delegated-ipv6').subnets[0].prefix).toBe(80);
    expect(cc.vm_types.every((v: any) => ['cpu', 'ram'].every((k) => Number.isInteger(v.cloud_properties[k])) && Number.isInteger(v.cloud_properties.ephemeral_disk?.size))).toBe(true);
    expect(nets.has(cc.compilation.network)).toBe(true);
  });
});
