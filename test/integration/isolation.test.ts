// Several directors share one libvirt host, told apart by name_prefix: through bin/cpi
// against qemu:///system, a CPI must find, change and delete only what carries its own
// prefix, and nothing it deletes may be a volume some domain on the host still uses.
// Two CPI configs (t-iso-a-, t-iso-b-) and one with the empty prefix share one pool and
// one isolated network (198.18.110.0/24, fd00:110::/64); a domain defined by hand with
// virsh (t-iso-hand) stands for anything else on the host. Nothing is ever created with
// the empty prefix; everything is named t-iso-… and removed in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CPI_BUNDLE, ROOT, requireBundle, runCpi } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-iso-';
const NET = 't-iso-net';
const POOL = 't-iso-pool';
const POOL_PATH = `/var/tmp/${POOL}`;
const HAND = 't-iso-hand';
const URI = 'qemu:///system';
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });

const shared = { storage: { pool: POOL, path: POOL_PATH, create_pool: true } };
/** A third director on the same network, with a storage pool of its own. */
const POOL_C = 't-iso-pool-c';
let configA: string;
let configB: string;
let configNoPrefix: string;
let configC: string;
let stemcellA: string;
let stemcellB: string;
let stemcellC: string;
/** Each director boots from its own stemcell: another prefix's is not found. */
const stemcellOf = (config: string) => (config === configB ? stemcellB : config === configC ? stemcellC : stemcellA);
const prefixOf = (config: string) => (config === configB ? 't-iso-b-' : config === configC ? 't-iso-c-' : 't-iso-a-');

function volumes(): string[] {
  virsh('pool-refresh', POOL);
  return virsh('vol-list', POOL).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s).sort();
}

function manual(ip: string) {
  return { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.110.1', dns: ['198.18.110.1'], default: ['dns', 'gateway'], cloud_properties: { name: NET } };
}

function manual6(ip: string) {
  return { type: 'manual', ip, netmask: 'ffff:ffff:ffff:ffff::', gateway: 'fd00:110::1', cloud_properties: { name: NET } };
}

async function createVM(config: string, ip: string, opts: { v6?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const networks = { default: manual(ip), ...(opts.v6 ? { v6: manual6(opts.v6) } : {}) };
  const [cid] = (await cpi(config, 'create_vm', ['agent-iso', stemcellOf(config), {}, networks, [], {}], opts.env ? { env: opts.env } : {})) as [string, unknown];
  return cid;
}

function createVMError(config: string, networks: Record<string, unknown>, env?: NodeJS.ProcessEnv) {
  return cpiError(config, 'create_vm', ['agent-iso', stemcellOf(config), {}, networks, [], {}], env ? { env } : {});
}

/** Defines (never starts) a domain by hand whose disks are these files. */
function defineHandDomain(files: string[]): void {
  const disks = files
    .map((f, i) => `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${f}'/><target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/></disk>`)
    .join('');
  const file = join(scratchDir('t-iso-dom-'), 'hand.xml');
  writeFileSync(file, `<domain type='qemu'><name>${HAND}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>${disks}</devices></domain>`);
  execFileSync('virsh', ['-q', '-c', URI, 'define', file]);
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX, POOL);
  defineIsolatedNetwork(NET, 't-iso-br0', 110, { dhcp: true });
  configA = testConfig({ prefix: 't-iso-a-', network: NET, overrides: shared }).path;
  configB = testConfig({ prefix: 't-iso-b-', network: NET, overrides: shared }).path;
  configNoPrefix = testConfig({ prefix: '', network: NET, overrides: shared }).path;
  stemcellA = (await cpi(configA, 'create_stemcell', [tinyStemcell(64), { name: 'tiny', version: '1' }])) as string;
  stemcellB = (await cpi(configB, 'create_stemcell', [tinyStemcell(64), { name: 'tiny', version: '1' }])) as string;
  cleanupPrefix('t-iso-c-', POOL_C);
  configC = testConfig({ prefix: 't-iso-c-', network: NET, overrides: { storage: { pool: POOL_C, path: `/var/tmp/${POOL_C}`, create_pool: true } } }).path;
  stemcellC = (await cpi(configC, 'create_stemcell', [tinyStemcell(64), { name: 'tiny', version: '1' }])) as string;
});

afterAll(() => {
  cleanupPrefix('t-iso-c-', POOL_C);
  cleanupPrefix(PREFIX, POOL);
  removeNetwork(NET);
});

describe('directors sharing a host see only their own prefix', () => {
  let vmA: string;
  let diskA: string;
  let snapA: string;

  beforeAll(async () => {
    vmA = await createVM(configA, '198.18.110.10');
    diskA = (await cpi(configA, 'create_disk', [64, {}, vmA])) as string;
    snapA = (await cpi(configA, 'snapshot_disk', [diskA, {}])) as string;
    await cpi(configA, 'attach_disk', [vmA, diskA]);
  });

  it("has_vm and has_disk of another prefix's CIDs are false", async () => {
    expect(await cpi(configB, 'has_vm', [vmA])).toBe(false);
    expect(await cpi(configNoPrefix, 'has_vm', [vmA])).toBe(false);
    expect(await cpi(configB, 'has_disk', [diskA])).toBe(false);
    expect(await cpi(configA, 'has_vm', [vmA])).toBe(true);
  });

  it('set_vm_metadata, attach_disk, get_disks and reboot_vm of a foreign VM are VMNotFound and change nothing', async () => {
    const before = domainXml(vmA);
    expect((await cpiError(configB, 'set_vm_metadata', [vmA, { deployment: 'intruder' }])).type).toBe('Bosh::Clouds::VMNotFound');
    const disk2 = (await cpi(configA, 'create_disk', [64, {}, null])) as string;
    expect((await cpiError(configB, 'attach_disk', [vmA, disk2])).type).toBe('Bosh::Clouds::VMNotFound');
    expect((await cpiError(configB, 'get_disks', [vmA])).type).toBe('Bosh::Clouds::VMNotFound');
    expect((await cpiError(configB, 'reboot_vm', [vmA])).type).toBe('Bosh::Clouds::VMNotFound');
    expect(domainXml(vmA)).toBe(before);
    await cpi(configA, 'delete_disk', [disk2]);
  });

  it("delete_disk of a disk attached to another director's running VM is DiskNotFound; the file stays", async () => {
    const err = await cpiError(configB, 'delete_disk', [diskA]);
    expect(err.type).toBe('Bosh::Clouds::DiskNotFound');
    expect(err.message).toContain(diskA);
    expect(volumes()).toContain(diskA);
    expect(await cpi(configA, 'get_disks', [vmA])).toEqual([diskA]);
  });

  it("deleting another prefix's stemcell or snapshot does nothing", async () => {
    expect(await cpi(configB, 'delete_stemcell', [stemcellA])).toBeNull();
    expect(await cpi(configB, 'delete_snapshot', [snapA])).toBeNull();
    expect(volumes()).toEqual(expect.arrayContaining([stemcellA, `${stemcellA}.meta`, snapA, `${snapA}.meta`]));
    expect((await cpiError(configB, 'snapshot_disk', [diskA, {}])).type).toBe('Bosh::Clouds::DiskNotFound');
  });

  it('delete_vm of a foreign VM is VMNotFound, also for a CPI with the empty prefix; the VM and its volumes stay', async () => {
    expect((await cpiError(configB, 'delete_vm', [vmA])).type).toBe('Bosh::Clouds::VMNotFound');
    expect((await cpiError(configNoPrefix, 'delete_vm', [vmA])).type).toBe('Bosh::Clouds::VMNotFound');
    expect(virsh('domstate', vmA).stdout.trim()).toBe('running');
    expect(volumes()).toEqual(expect.arrayContaining([`${vmA}.root`, `${vmA}.ephemeral`, `${vmA}.config`]));
    expect(await cpi(configA, 'has_vm', [vmA])).toBe(true);
  });
});

describe('no delete removes a volume some domain on the host uses', () => {
  let vm: string;
  let disk: string;
  let snap: string;
  let stemcell2: string;
  const overlay = `${PREFIX}hand-root`;

  beforeAll(async () => {
    vm = await createVM(configA, '198.18.110.11');
    disk = (await cpi(configA, 'create_disk', [64, {}, null])) as string;
    snap = (await cpi(configA, 'snapshot_disk', [disk, {}])) as string;
    stemcell2 = (await cpi(configA, 'create_stemcell', [tinyStemcell(16), { name: 'tiny2', version: '1' }])) as string;
    // An overlay on stemcell2, as a person would make it: no CPI VM is based on stemcell2.
    execFileSync('virsh', ['-q', '-c', URI, 'vol-create-as', POOL, overlay, '16M', '--format', 'qcow2', '--backing-vol', `${POOL_PATH}/${stemcell2}`, '--backing-vol-format', 'qcow2']);
    defineHandDomain([`${POOL_PATH}/${overlay}`, `${POOL_PATH}/${disk}`, `${POOL_PATH}/${snap}`, `${POOL_PATH}/${vm}.ephemeral`]);
  });

  it('delete_disk refuses a disk a hand-made domain uses, naming that domain', async () => {
    const err = await cpiError(configA, 'delete_disk', [disk]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(HAND);
    expect(volumes()).toContain(disk);
  });

  it('delete_snapshot refuses a snapshot a domain uses', async () => {
    const err = await cpiError(configA, 'delete_snapshot', [snap]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(HAND);
    expect(volumes()).toEqual(expect.arrayContaining([snap, `${snap}.meta`]));
  });

  it('delete_stemcell refuses a stemcell that is the backing file of a stopped domain\'s disk', async () => {
    const err = await cpiError(configA, 'delete_stemcell', [stemcell2]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(HAND);
    expect(volumes()).toEqual(expect.arrayContaining([stemcell2, `${stemcell2}.meta`]));
  });

  it("delete_vm removes the VM but keeps the volume another domain uses; orphans --delete keeps it too", async () => {
    await cpi(configA, 'delete_vm', [vm]);
    expect(virsh('dominfo', vm).status).not.toBe(0);
    expect(volumes().filter((v) => v.startsWith(vm))).toEqual([`${vm}.ephemeral`]);
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/cli.mjs'), 'orphans', '--config', configA, '--min-age', '0', '--delete'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout).toMatch(new RegExp(`could not delete ${vm}\\.ephemeral: in use by domain\\(s\\) ${HAND}`));
    expect(volumes()).toContain(`${vm}.ephemeral`);
  });

  it('once the domain is gone, the same deletes succeed', async () => {
    virsh('undefine', HAND);
    await cpi(configA, 'delete_disk', [disk]);
    await cpi(configA, 'delete_snapshot', [snap]);
    virsh('vol-delete', overlay, '--pool', POOL);
    await cpi(configA, 'delete_stemcell', [stemcell2]);
    expect(volumes()).not.toEqual(expect.arrayContaining([disk]));
    expect(volumes().filter((v) => [disk, snap, stemcell2].some((c) => v.startsWith(c)))).toEqual([]);
  });
});

describe('create_stemcell refuses an image_path that is not a regular file', () => {
  // Without the check a FIFO blocks the read forever: the child is killed after a
  // bounded wait, and runCpi then fails the test for want of an answer.
  async function refused(path: string) {
    const run = await runCpi({ method: 'create_stemcell', arguments: [path, {}], context: { director_uuid: 'test' }, api_version: 2 }, { config: configA, timeoutMs: 30_000 });
    expect(run.code).toBe(0);
    return run.response.error;
  }

  it('a FIFO, naming the path and what it is, leaving no volume', async () => {
    const before = volumes();
    const fifo = join(scratchDir('t-iso-fifo-'), 'image');
    execFileSync('mkfifo', [fifo]);
    const err = await refused(fifo);
    expect(err?.type).toBe('Bosh::Clouds::CloudError');
    expect(err?.message).toBe(`Invalid image_path: ${JSON.stringify(fifo)} is a FIFO (named pipe), expected a regular file (a gzipped tarball holding root.img)`);
    expect(volumes()).toEqual(before);
  });

  it('so does the operator CLI\'s import-stemcell, for the tarball it is given', () => {
    const fifo = join(scratchDir('t-iso-fifo-'), 'stemcell.tgz');
    execFileSync('mkfifo', [fifo]);
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/cli.mjs'), 'import-stemcell', fifo, '--config', configA], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${fifo} is a FIFO (named pipe), expected a stemcell tarball (a regular file)`);
  });

  it('a directory', async () => {
    const dir = join(scratchDir('t-iso-dir-'), 'image');
    mkdirSync(dir);
    const err = await refused(dir);
    expect(err?.type).toBe('Bosh::Clouds::CloudError');
    expect(err?.message).toContain(`${JSON.stringify(dir)} is a directory, expected a regular file`);
  });
});

describe('bin/cpi caps the request it reads from stdin', () => {
  const MiB = 1024 * 1024;
  const CAP = 16 * MiB;

  /** Feeds `head` and then `total` bytes of padding, honouring backpressure; counts what the CPI took before it hung up. */
  async function feed(head: string, total: number, tail: string): Promise<{ accepted: number; stdout: string; code: number | null }> {
    const child = spawn(process.execPath, [CPI_BUNDLE, configA], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    const closed = new Promise<number | null>((res) => child.on('close', res));
    let gone = false;
    child.stdin.on('error', () => { gone = true; }); // EPIPE once the CPI stops reading
    child.stdin.on('close', () => { gone = true; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    let accepted = 0;
    const chunk = Buffer.alloc(MiB, 'x');
    const write = async (b: Buffer) => {
      if (gone) return;
      accepted += b.length;
      if (!child.stdin.write(b)) await new Promise<void>((res) => { child.stdin.once('drain', res); child.stdin.once('close', res); child.stdin.once('error', () => res()); });
    };
    await write(Buffer.from(head));
    for (let sent = 0; sent < total && !gone; sent += MiB) await write(chunk.subarray(0, Math.min(MiB, total - sent)));
    await write(Buffer.from(tail));
    if (!gone) child.stdin.end();
    const code = await closed;
    clearTimeout(timer);
    return { accepted, stdout: Buffer.concat(out).toString('utf8'), code };
  }

  it('a request over 16 MiB is refused with one CpiError line, exit 0, without reading the rest', async () => {
    const r = await feed('{"method":"info","arguments":[],"context":{"director_uuid":"', 4 * CAP, '"}}');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    const res = JSON.parse(lines[0]!);
    expect(res.result).toBeNull();
    expect(res.error.type).toBe('Bosh::Clouds::CpiError');
    expect(res.error.message).toMatch(/^Request too large: more than 16777216 bytes \(16 MiB\)/);
    // It stopped reading near the cap: what it took is bounded by the cap plus what the
    // pipe and this writer's buffer held, not the 64 MiB offered.
    expect(r.accepted).toBeLessThan(CAP + 4 * MiB);
  });

  it('a large request under the cap is still answered', async () => {
    const r = await feed('{"method":"info","arguments":[],"context":{"director_uuid":"', CAP - MiB, '"}}');
    const res = JSON.parse(r.stdout.trim());
    expect(res.error).toBeNull();
    expect(res.result.api_version).toBe(3);
  });
});

describe('create_vm refuses an address that is taken or that the network keeps', () => {
  const bStemcell = () => [stemcellB, `${stemcellB}.meta`].sort();
  let vmA: string;

  beforeAll(async () => {
    vmA = await createVM(configA, '198.18.110.20', { v6: 'fd00:110::20' });
  });

  it("another director's VM's IPv4 address (a DHCP reservation): CloudError naming the address and its holder, nothing created", async () => {
    const err = await createVMError(configB, { default: manual('198.18.110.20') });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain('ip 198.18.110.20 is already taken on libvirt network "t-iso-net"');
    expect(err.message).toContain(vmA);
    expect(leftovers('t-iso-b-', POOL)).toEqual(bStemcell());
  });

  it('an IPv6 address on a subnet without DHCP, in another spelling, is known from the holder\'s metadata', async () => {
    const err = await createVMError(configB, { v6: manual6('fd00:0110:0000:0000:0000:0000:0000:0020') });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(`ip fd00:110::20 is already taken on libvirt network "t-iso-net" by VM ${vmA}`);
    expect(leftovers('t-iso-b-', POOL)).toEqual(bStemcell());
  });

  it('the same director cannot give one address twice either', async () => {
    const err = await createVMError(configA, { default: manual('198.18.110.20') });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(vmA);
  });

  it.each([
    { ip: '198.18.110.1', networks: { default: manual('198.18.110.1') }, reason: 'the gateway' },
    { ip: '198.18.110.0', networks: { default: manual('198.18.110.0') }, reason: 'the network address of 198.18.110.0/24' },
    { ip: '198.18.110.255', networks: { default: manual('198.18.110.255') }, reason: 'the broadcast address of 198.18.110.0/24' },
    { ip: 'fd00:110::', networks: { v6: manual6('fd00:110::') }, reason: 'the subnet-router anycast address of fd00:110::/64' },
    { ip: 'fd00:110::1', networks: { v6: manual6('fd00:110::1') }, reason: 'the gateway' },
  ])('$ip is refused as $reason', async ({ ip, networks, reason }) => {
    const err = await createVMError(configB, networks);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(`field "ip" is ${JSON.stringify(ip)}, which is ${reason}`);
    expect(leftovers('t-iso-b-', POOL)).toEqual(bStemcell());
  });

  it('two create_vm racing for one address on a subnet without DHCP: exactly one gets it, the other leaves nothing', async () => {
    // Both pass the check made before anything exists; the last check and the claim run
    // under the pool's address lock, so the second sees the first one's claim (or domain).
    for (let round = 0; round < 4; round++) {
      const ip = `fd00:110::4${round}`;
      const before = [leftovers('t-iso-a-', POOL), leftovers('t-iso-b-', POOL)];
      const runs = await Promise.allSettled([configA, configB].map((c) => cpi(c, 'create_vm', ['agent-race', stemcellOf(c), {}, { v6: manual6(ip) }, [], {}])));
      const won = runs.flatMap((r) => (r.status === 'fulfilled' ? [(r.value as [string])[0]] : []));
      const lost = runs.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
      for (const vm of won) await cpi(vm.startsWith('t-iso-a-') ? configA : configB, 'delete_vm', [vm]);
      expect(won.length, `round ${round}: ${won.length} VMs got ${ip}; ${lost.join(' | ')}`).toBe(1);
      expect(lost[0]).toMatch(new RegExp(`ip ${ip} is already taken on libvirt network "t-iso-net" by VM t-iso-[ab]-vm-`));
      expect([leftovers('t-iso-a-', POOL), leftovers('t-iso-b-', POOL)]).toEqual(before);
    }
  });

  /**
   * Forces the order that gave one address to two VMs before the address lock: `first`
   * begins first and waits 3 s before defining its domain; `second` defines its own
   * meanwhile and waits 3 s after its last check, still in creation. Each call checked
   * other domains again after defining its own, and the one whose create_vm began later
   * gave way: `second`'s check saw nothing yet, `first`'s saw `second` still in creation
   * and kept the address as the earlier one. Both won.
   */
  async function forcedRace(first: string, second: string, ip: string): Promise<{ won: string[]; lost: string[] }> {
    const delay = (point: string) => ({ ...process.env, BOSH_LIBVIRT_CPI_FAULTS: `delay:${point}`, BOSH_LIBVIRT_CPI_FAULT_DELAY_MS: '3000' });
    const call = (config: string, point: string) => cpi(config, 'create_vm', ['agent-race', stemcellOf(config), {}, { v6: manual6(ip) }, [], {}], { env: delay(point) });
    const a = call(first, 'create_vm:before-define');
    await sleep(300); // a head start for `first`; the check `second` makes before anything exists passes all the same
    const b = call(second, 'create_vm:after-define');
    const runs = await Promise.allSettled([a, b]);
    const won = runs.flatMap((r) => (r.status === 'fulfilled' ? [(r.value as [string])[0]] : []));
    const lost = runs.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
    for (const vm of won) await cpi([configA, configB, configC].find((c) => vm.startsWith(prefixOf(c)))!, 'delete_vm', [vm]);
    return { won, lost };
  }

  it('the order that gave one address to two VMs: the first to take the pool\'s address lock keeps it, the other gives way', async () => {
    const ip = 'fd00:110::50';
    const before = [leftovers('t-iso-a-', POOL), leftovers('t-iso-b-', POOL)];
    const { won, lost } = await forcedRace(configA, configB, ip);
    expect(won.length, `${won.length} VMs got ${ip}; ${lost.join(' | ')}`).toBe(1);
    // Whoever takes the lock first keeps the address (A, unless its start was slower by more than the head start).
    expect(lost[0]).toContain(`ip ${ip} is already taken on libvirt network "t-iso-net" by VM ${won[0]}`);
    expect([leftovers('t-iso-a-', POOL), leftovers('t-iso-b-', POOL)]).toEqual(before);
  });

  it('the same order between directors with different storage pools (different locks): never two VMs; the one that sees the other gives way', async () => {
    const ip = 'fd00:110::51';
    const before = [leftovers('t-iso-a-', POOL), leftovers('t-iso-c-', POOL_C)];
    const { won, lost } = await forcedRace(configA, configC, ip);
    expect(won.length, `${won.length} VMs got ${ip}; ${lost.join(' | ')}`).toBe(1);
    // C defines first and sees nothing; A, defined later under its own pool's lock, sees C still in creation.
    expect(lost[0]).toContain(`ip ${ip} is already taken on libvirt network "t-iso-net" by VM ${won[0]}`);
    expect([leftovers('t-iso-a-', POOL), leftovers('t-iso-c-', POOL_C)]).toEqual(before);
  });

  it('a create_vm retried after a failed one gets the address', async () => {
    const err = await createVMError(configB, { default: manual('198.18.110.30') }, { BOSH_LIBVIRT_CPI_FAULTS: 'create_vm:after-define' });
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    const vm = await createVM(configB, '198.18.110.30');
    await cpi(configB, 'delete_vm', [vm]);
  });

  it('an address whose VM was removed behind the CPI\'s back is free again (its stale reservation is reclaimed)', async () => {
    const gone = await createVM(configA, '198.18.110.31', { v6: 'fd00:110::31' });
    virsh('destroy', gone);
    virsh('undefine', gone);
    const vm = await createVM(configB, '198.18.110.31', { v6: 'fd00:110::31' });
    expect(virsh('net-dumpxml', NET).stdout).toContain("ip='198.18.110.31'");
    await cpi(configB, 'delete_vm', [vm]);
  });
});
