// The operator CLI (bin/bosh-libvirt-cpi → dist/cli.mjs) against qemu:///system: every
// command as a person runs it, on an isolated network (198.18.61.0/24, fd00:61::/64,
// no DHCP, no DNS: no dnsmasq, no RAs) and a t-cli- pool. Everything is named t-cli-…
// and removed in afterAll, also after a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT, request, runCpi } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { parseDomain, parseVmMetadata } from '../../src/xml/index.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-cli-';
const NET = 't-cli-net';
const CLI = join(ROOT, 'dist/cli.mjs');
const URI = 'qemu:///system';
const UUID_RE = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });
const temps: string[] = [];

let config: string;
let pool: string;
let poolPath: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; BOSH_LIBVIRT_CPI_CONFIG is cleared so only --config counts. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const { BOSH_LIBVIRT_CPI_CONFIG: _drop, ...base } = process.env;
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...base, ...env }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tempDir(): string {
  const d = scratchDir('t-cli-');
  temps.push(d);
  return d;
}

function volumes(): string[] {
  return virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s).sort();
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (the test command does)`);
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-cli-br0', 61);
  ({ path: config, pool, poolPath } = testConfig({ prefix: PREFIX, network: NET }));
  // A prepared pool, as an operator would have it before the first deploy.
  execFileSync('virsh', ['-q', '-c', URI, 'pool-define-as', pool, 'dir', '--target', poolPath]);
  execFileSync('virsh', ['-q', '-c', URI, 'pool-build', pool]);
  execFileSync('virsh', ['-q', '-c', URI, 'pool-start', pool]);
});

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
  for (const d of temps) rmSync(d, { recursive: true, force: true });
  for (const p of [config]) if (p) rmSync(dirname(p), { recursive: true, force: true });
});

describe('global options', () => {
  it('asks for --config or the environment variable when neither is given', () => {
    const r = cli(['doctor']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config <cpi\.json>.*BOSH_LIBVIRT_CPI_CONFIG/);
  });

  it('takes the config from BOSH_LIBVIRT_CPI_CONFIG', () => {
    const r = cli(['call', 'info'], { BOSH_LIBVIRT_CPI_CONFIG: config });
    expect(r.code).toBe(0);
  });

  it('shows examples in each command\'s help', () => {
    for (const cmd of [['doctor'], ['call'], ['render', 'vm'], ['orphans'], ['import-stemcell']]) {
      const r = cli([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout, cmd.join(' ')).toContain('Examples:');
    }
  });
});

describe('doctor', () => {
  it('is OK on a prepared pool and network (warnings allowed), one line per check', () => {
    const r = cli(['doctor', '--config', config]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/^FAIL/m);
    expect(r.stdout).toMatch(/^OK\s+libvirt\s+libvirt \d+\.\d+\.\d+$/m);
    expect(r.stdout).toMatch(/^OK\s+hypervisor\s+QEMU \d+\.\d+\.\d+$/m);
    expect(r.stdout).toMatch(new RegExp(`^OK\\s+pool\\s+storage pool "${pool}" \\(dir\\) active at ${poolPath}, .* free of `, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^OK\\s+network\\s+libvirt network "${NET}": bridge t-cli-br0, forward none \\(isolated\\), subnets 198\\.18\\.61\\.0/24, fd00:61::/64, active$`, 'm'));
    expect(r.stdout).toMatch(/^OK\s+dhcp\s+no DHCP/m);
    // No DHCP and DNS disabled: dnsmasq does not run, so no RAs.
    expect(r.stdout).toMatch(/^OK\s+ra\s+no router advertisements/m);
    expect(r.stdout).toMatch(/^(OK|WARN)\s+kvm\s/m);
    expect(r.stdout).toMatch(/^OK\s+domain_type\s+qemu/m);
    expect(r.stdout).toMatch(/^(OK|WARN)\s+prefix_hook\s+\/etc\/libvirt\/hooks\/qemu/m);
    expect(r.stdout).toMatch(/^OK\s+disk cids\s+new disk CIDs are 20 characters \("t-cli-" \+ "d-" \+ random\)/m);
  });

  it('WARNs that under a name_prefix too long for a 20-character disk CID the agent finds disks by path only', () => {
    const long = testConfig({ prefix: PREFIX, network: NET, overrides: { name_prefix: 't-cli-longer-' } });
    temps.push(dirname(long.path));
    const r = cli(['doctor', '--config', long.path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^WARN\s+disk cids\s+name_prefix "t-cli-longer-" has 13 characters, more than 10: new disk CIDs take the long form t-cli-longer-disk-<uuid>.*by their hint's path only/m);
  });

  it('prints the checks as JSON with --json', () => {
    const r = cli(['doctor', '--config', config, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; status: string; message: string }> };
    expect(out.ok).toBe(true);
    expect(out.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['connection', 'libvirt', 'hypervisor', 'kvm', 'domain_type', 'pool', 'network', 'dhcp', 'ra', 'prefix_hook']));
    for (const c of out.checks) expect(['OK', 'WARN']).toContain(c.status);
  });

  it('FAILs with a non-zero exit when the configured network is missing', () => {
    const missing = testConfig({ prefix: PREFIX, network: 't-cli-missing' });
    temps.push(dirname(missing.path));
    const r = cli(['doctor', '--config', missing.path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL\s+network\s+libvirt network "t-cli-missing" \(network\.name\) does not exist/m);
    expect(r.stdout).toMatch(/1 check\(s\) failed/);
  });

  it('WARNs that a missing pool will be created when create_pool is true (and creates nothing)', () => {
    const other = testConfig({ prefix: PREFIX, network: NET, overrides: { storage: { pool: 't-cli-nopool', path: '/var/tmp/t-cli-nopool', create_pool: true } } });
    temps.push(dirname(other.path));
    const r = cli(['doctor', '--config', other.path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^WARN\s+pool\s+storage pool "t-cli-nopool" does not exist; the first CPI call creates/m);
    expect(virsh('pool-info', 't-cli-nopool').status).not.toBe(0);
  });
});

describe('call', () => {
  it('info: the same response as bin/cpi, pretty-printed', async () => {
    const r = cli(['call', 'info', '--config', config]);
    expect(r.code).toBe(0);
    const direct = await runCpi(request('info'), { config });
    expect(JSON.parse(r.stdout)).toEqual(direct.response);
    expect(r.stdout).toContain('\n  "result": {');
    const raw = cli(['call', 'info', '--raw', '--config', config]);
    expect(raw.stdout).toBe(direct.stdout);
  });

  it('has_vm: a bare word is a string argument; the answer matches bin/cpi', async () => {
    const vm = `${PREFIX}vm-${randomUUID()}`;
    const r = cli(['call', 'has_vm', vm, '--config', config]);
    expect(r.code).toBe(0);
    const direct = await runCpi(request('has_vm', [vm]), { config });
    expect(JSON.parse(r.stdout)).toEqual(direct.response);
    expect(JSON.parse(r.stdout).result).toBe(false);
  });

  it('exits 1 when the response carries an error', () => {
    const r = cli(['call', 'delete_vm', `${PREFIX}vm-${randomUUID()}`, '--config', config]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error.type).toBe('Bosh::Clouds::VMNotFound');
  });

  it('parses each argument as JSON when it parses; --dry-run prints the request', () => {
    const r = cli(['call', 'create_disk', '1024', '{"a":1}', 'null', 'plain', '"007"', '007', '--dry-run']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).arguments).toEqual([1024, { a: 1 }, null, 'plain', '007', '007']);
  });
});

describe('render vm', () => {
  const macs = ['52:54:00:61:00:10', '52:54:00:61:00:11'];
  function requestFile(): string {
    const file = join(tempDir(), 'create_vm.json');
    const net = (ip: string, mac: string) => ({ type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.61.1', mac, default: ip.endsWith('10') ? ['dns', 'gateway'] : [], cloud_properties: { name: NET } });
    writeFileSync(
      file,
      JSON.stringify({
        method: 'create_vm',
        arguments: ['agent-cli', `${PREFIX}sc-${randomUUID()}`, { cpu: 2, ram: 300 }, { a: net('198.18.61.10', macs[0]!), b: net('198.18.61.11', macs[1]!) }, [], {}],
        context: { director_uuid: 'x' },
      }),
    );
    return file;
  }

  it('prints the domain XML create_vm would define, with the NIC MACs, valid for libvirt, touching nothing', () => {
    const before = leftovers(PREFIX);
    const r = cli(['render', 'vm', requestFile(), '--config', config]);
    expect(r.code, r.stderr).toBe(0);
    const dom = parseDomain(r.stdout);
    expect(dom.name).toBe(`${PREFIX}vm-00000000-0000-0000-0000-000000000000`);
    expect(dom.interfaces.map((i) => i.mac)).toEqual(macs);
    expect(r.stdout).toContain(`${poolPath}/${PREFIX}vm-00000000-0000-0000-0000-000000000000.root`);
    expect(r.stderr).toMatch(/placeholders/);
    const out = join(tempDir(), 'vm.xml');
    expect(cli(['render', 'vm', requestFile(), '--config', config, '-o', out]).code).toBe(0);
    const v = spawnSync('virt-xml-validate', [out, 'domain'], { encoding: 'utf8' });
    expect(v.status, v.stdout + v.stderr).toBe(0);
    expect(leftovers(PREFIX)).toEqual(before);
  });

  it('renders what create_vm then defines: same disks, NICs, console log and metadata for the same CID', async () => {
    const tgz = tinyStemcell(32);
    temps.push(dirname(tgz));
    const sc = (await cpi(config, 'create_stemcell', [tgz, { disk_format: 'qcow2' }])) as string;
    const req = JSON.parse(readFileSync(requestFile(), 'utf8')) as { arguments: unknown[] };
    req.arguments[1] = sc;
    const [vm] = (await cpi(config, 'create_vm', req.arguments)) as [string];
    try {
      const file = join(tempDir(), 'same.json');
      writeFileSync(file, JSON.stringify(req));
      const r = cli(['render', 'vm', file, '--config', config, '--vm-cid', vm, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const rendered = JSON.parse(r.stdout) as { xml: string; spec: { metadata: unknown } };
      const { uuid: _u1, ...want } = parseDomain(rendered.xml);
      const { uuid: _u2, ...got } = parseDomain(domainXml(vm));
      expect(got).toEqual(want);
      const metadata = execFileSync('virsh', ['-q', '-c', URI, 'metadata', vm, 'urn:bosh-libvirt-cpi:vm:1'], { encoding: 'utf8' });
      expect(parseVmMetadata(metadata)).toEqual(rendered.spec.metadata);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await cpi(config, 'delete_stemcell', [sc]);
    }
  });

  it('accepts the bare arguments array and rejects bad arguments like bin/cpi', () => {
    const file = join(tempDir(), 'args.json');
    const req = JSON.parse(readFileSync(requestFile(), 'utf8')) as { arguments: unknown[] };
    writeFileSync(file, JSON.stringify(req.arguments));
    expect(cli(['render', 'vm', file, '--config', config]).code).toBe(0);
    writeFileSync(file, JSON.stringify(['agent', 'sc', { cpu: 'many' }, {}, null, {}]));
    const bad = cli(['render', 'vm', file, '--config', config]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/cloud_properties\.cpu/);
  });
});

describe('orphans', () => {
  const gone = `${PREFIX}vm-${randomUUID()}`;
  const bare = `${PREFIX}vm-${randomUUID()}`;
  const disk = `${PREFIX}disk-${randomUUID()}`;
  const goneDisk = `${PREFIX}disk-${randomUUID()}`;
  const halfSnap = `${PREFIX}snap-${randomUUID()}`;
  const snap = `${PREFIX}snap-${randomUUID()}`;
  const halfCopy = `${PREFIX}disk-${randomUUID()}`; // several hosts: a move to this host that stopped half way

  beforeAll(() => {
    const vol = (name: string) => execFileSync('virsh', ['-q', '-c', URI, 'vol-create-as', pool, name, '1M', '--format', 'raw']);
    vol(`${gone}.root`); // its VM is gone
    vol(`${goneDisk}.meta`); // its disk is gone
    vol(disk); // a persistent disk: BOSH's, never an orphan
    vol(`${disk}.meta`);
    vol(halfSnap); // a snapshot_disk that never finished: no sidecar
    vol(snap); // a finished snapshot: the director's
    vol(`${snap}.meta`);
    vol(`${bare}.config`);
    vol(halfCopy);
    vol(`${halfCopy}.partial`);
    // A domain named like a VM of this CPI, without bosh metadata.
    const xml = join(tempDir(), 'dom.xml');
    writeFileSync(xml, `<domain type='qemu'><name>${bare}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>`);
    execFileSync('virsh', ['-q', '-c', URI, 'define', xml]);
  });

  it('skips volumes younger than --min-age (a create_vm may be mid-way)', () => {
    const r = cli(['orphans', '--config', config, '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { orphans: Array<{ name: string }>; skippedYoung: string[] };
    expect(report.skippedYoung.sort()).toEqual([`${gone}.root`, `${goneDisk}.meta`, halfSnap, `${halfCopy}.partial`].sort());
    expect(report.orphans.map((o) => o.name)).toEqual([bare]);
  });

  it('lists owned volumes without their VM, sidecars without their resource and VM domains without metadata', () => {
    const r = cli(['orphans', '--config', config, '--min-age', '0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^volume\\s+${gone}\\.root \\(.*\\): belongs to VM ${gone}, which no longer exists$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^volume\\s+${goneDisk}\\.meta \\(.*\\): metadata of disk ${goneDisk}, which no longer exists$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^domain\\s+${bare}: named like a VM of this CPI but has no bosh metadata \\(its volumes go with it: ${bare}\\.config\\)$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^volume\\s+${halfSnap} \\(.*\\): snapshot whose snapshot_disk never finished \\(no metadata sidecar\\)`, 'm'));
    expect(r.stdout).not.toContain(`${disk}`);
    expect(r.stdout).not.toContain(`${snap}`);
    expect(r.stdout).toMatch(new RegExp(`^volume\\s+${halfCopy} \\(.*\\): half copy from a move of disk ${halfCopy} to this host that stopped half way`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^volume\\s+${halfCopy}\\.partial \\(.*\\): marker of a move of disk ${halfCopy}`, 'm'));
    expect(r.stdout).toMatch(/6 orphan\(s\); run again with --delete/);
  });

  it('--delete removes them and reports each, leaving the persistent disk alone', () => {
    const r = cli(['orphans', '--config', config, '--min-age', '0', '--delete']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^deleted\\s+volume\\s+${gone}\\.root`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^deleted\\s+volume\\s+${goneDisk}\\.meta`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^deleted\\s+domain\\s+${bare}`, 'm'));
    expect(r.stdout).toContain(`deleted with their domains: ${bare}.config`);
    expect(r.stdout).toMatch(new RegExp(`^deleted\\s+volume\\s+${halfSnap}`, 'm'));
    // the half copy before its marker: a copy without its marker would be taken for the disk
    expect(r.stdout.indexOf(`volume  ${halfCopy} (`)).toBeGreaterThan(-1);
    expect(r.stdout.indexOf(`volume  ${halfCopy} (`)).toBeLessThan(r.stdout.indexOf(`volume  ${halfCopy}.partial`));
    expect(r.stdout).toMatch(new RegExp(`^deleted\\s+volume\\s+${halfCopy}\\.partial`, 'm'));
    expect(volumes()).toEqual([disk, `${disk}.meta`, snap, `${snap}.meta`].sort());
    expect(virsh('dominfo', bare).status).not.toBe(0);
    // The VM whose volumes went without a domain got a fence (a define of it might still
    // have been queued in libvirtd): the sweep says so, and the next one removes the fence.
    expect(r.stdout).toContain(`fenced (their defines can no longer land): ${gone}\n`);
    expect(r.stdout).toMatch(/^sweep NOT complete: .*1 VM name\(s\) were fenced/m);
    expect(cli(['orphans', '--config', config, '--min-age', '0']).stdout).toMatch(new RegExp(`^domain\\s+${gone}: fence, not a VM`, 'm'));
    const again = cli(['orphans', '--config', config, '--min-age', '0', '--delete']);
    expect(again.stdout).toMatch(new RegExp(`^deleted\\s+domain\\s+${gone}: fence, not a VM`, 'm'));
    expect(again.stdout).toContain('sweep complete: nothing seen may still be in progress\n');
    expect(cli(['orphans', '--config', config, '--min-age', '0']).stdout).toBe('no orphans\n');
  });

  afterAll(() => {
    for (const v of [snap, `${snap}.meta`]) virsh('vol-delete', v, '--pool', pool);
  });
});

describe('import-stemcell', () => {
  function stemcellTarball(opts: { sha1?: string } = {}): string {
    const image = tinyStemcell(32);
    const dir = dirname(image);
    temps.push(dir);
    const sha1 = opts.sha1 ?? createHash('sha1').update(readFileSync(image)).digest('hex');
    writeFileSync(
      join(dir, 'stemcell.MF'),
      ['name: t-cli-stemcell', "version: '0.0.1'", 'api_version: 3', `sha1: '${sha1}'`, 'operating_system: ubuntu-jammy', 'stemcell_formats:', '- openstack-qcow2', 'cloud_properties:', '  disk_format: qcow2', '  name: t-cli-stemcell', "  version: '0.0.1'", ''].join('\n'),
    );
    const tgz = join(dir, 'stemcell.tgz');
    execFileSync('tar', ['-C', dir, '-czf', tgz, 'stemcell.MF', 'image']);
    return tgz;
  }

  it('imports a full stemcell tarball, prints its CID, and the CID deletes like any stemcell', () => {
    const r = cli(['import-stemcell', stemcellTarball(), '--config', config, '--tag', 'owner=t-cli']);
    expect(r.code, r.stderr).toBe(0);
    const cid = r.stdout.trim();
    expect(cid).toMatch(new RegExp(`^${PREFIX}sc-${UUID_RE}$`));
    // Not a TTY here: plain progress lines, never on stdout.
    expect(r.stderr).toMatch(/^extracting: /m);
    expect(r.stderr).toMatch(/^uploading: done/m);
    expect(r.stderr).toContain('stemcell t-cli-stemcell/0.0.1 (api_version 3)');
    expect(volumes()).toEqual(expect.arrayContaining([cid, `${cid}.meta`]));
    const metaFile = join(tempDir(), 'meta.json');
    execFileSync('virsh', ['-q', '-c', URI, 'vol-download', '--pool', pool, `${cid}.meta`, metaFile]);
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ kind: 'stemcell', format: 'qcow2', name: 't-cli-stemcell', version: '0.0.1', tags: { owner: 't-cli' } });

    const del = cli(['call', 'delete_stemcell', cid, '--config', config]);
    expect(del.code, del.stdout).toBe(0);
    expect(volumes()).not.toContain(cid);
    expect(volumes()).not.toContain(`${cid}.meta`);
  });

  it('refuses a tarball whose image does not match stemcell.MF\'s sha1, creating nothing', () => {
    const before = volumes();
    const r = cli(['import-stemcell', stemcellTarball({ sha1: '0'.repeat(40) }), '--config', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/image sha1 is [0-9a-f]{40} but stemcell\.MF says 0{40}/);
    expect(r.stdout).toBe('');
    expect(volumes()).toEqual(before);
  });

  it('says what is wrong with something that is not a stemcell tarball', () => {
    const file = join(tempDir(), 'not.tgz');
    writeFileSync(file, 'hello');
    const r = cli(['import-stemcell', file, '--config', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Cannot read .*not\.tgz as a stemcell tarball/);
  });
});

describe('cleanup', () => {
  it('the whole file leaves nothing t-cli- behind but the persistent disk fixture', () => {
    expect(leftovers(PREFIX).filter((n) => !n.includes('-disk-'))).toEqual([]);
  });
});
