// bin/cpi with a two-host config against two independent libvirt daemons on this
// machine: placement by AZ (host/hosts) and by memory, no volume taken for one of another
// kind (a disk as stemcell_cid, a metadata volume as disk_cid), a VM created with disk_cids lands
// with its disk, attach_disk across hosts moves the disk (CID unchanged), and with the
// second daemon stopped the first host's calls pass while the second host's are
// retryable errors (never VMNotFound).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { cpi, cpiError, defineIsolatedNetwork, removeNetwork, tinyStemcell } from '../helpers/driver-fixtures.js';
import { writeConfig, ROOT } from '../helpers/cpi.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { Proc } from '../../src/libvirt/procedures.js';
import { requireSecondDaemon, secondDaemon, SECOND_URI } from '../helpers/second-daemon.js';
import { join } from 'node:path';

// Longer than a 20-character disk CID can hold a prefix in (cids.ts): this file's disks
// get the long form, which carries its birth host (`@host-b`); test/e2e/multi-host-disk
// covers the bare 20-character form.
const PREFIX = `mhc-${String(process.pid).padStart(7, '0')}-`;
const POOL = `${PREFIX}pool`;
const PATH_A = `/var/tmp/${PREFIX}pool-a`;
const PATH_B = `/var/tmp/${PREFIX}pool-b`;
const NET_A = `${PREFIX}net`;
let config: string;
/** host-a is reached through this proxy, so a connection can be cut in the middle of a move */
let proxy: CuttingProxy;

const virshOn = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const FIRST = 'qemu:///system';
const names = (uri: string, what: 'domains' | 'volumes') =>
  (what === 'domains' ? virshOn(uri, 'list', '--all', '--name').stdout : virshOn(uri, 'vol-list', POOL).stdout)
    .split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((n) => n.startsWith(PREFIX));

function cleanup(uri: string, path: string): void {
  for (const d of names(uri, 'domains')) {
    virshOn(uri, 'destroy', d);
    virshOn(uri, 'undefine', d, '--nvram');
  }
  for (const v of names(uri, 'volumes')) virshOn(uri, 'vol-delete', v, '--pool', POOL);
  virshOn(uri, 'pool-destroy', POOL);
  virshOn(uri, 'pool-undefine', POOL);
  rmSync(path, { recursive: true, force: true });
}

/** The operator CLI (dist/cli.mjs) on the test config; asynchronous, so the proxy in this process keeps forwarding. */
function cli(...args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist/cli.mjs'), '--config', config, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

const dynamic = { default: { type: 'dynamic', cloud_properties: {} } };
const errorOf = async (method: string, args: unknown[]) => cpiError(config, method, args);

beforeAll(async () => {
  requireDaemon();
  requireSecondDaemon();
  defineIsolatedNetwork(NET_A, 'mh0', 230);
  proxy = await startCuttingProxy();
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')) as Record<string, unknown>;
  config = writeConfig({
    ...base,
    name_prefix: PREFIX,
    storage: { pool: POOL, path: PATH_A, create_pool: true },
    network: { name: NET_A, model: 'virtio' },
    hosts: [
      { name: 'host-a', libvirt: { uri: proxy.uri } },
      // the second daemon's own isolated network (scripts/second-libvirtd.sh)
      { name: 'host-b', libvirt: { uri: SECOND_URI }, storage: { path: PATH_B }, network: { name: 'bosh-cpi' } },
    ],
    vm: { ...(base.vm as object), ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 5 },
  });
});

afterAll(async () => {
  await proxy?.close();
  secondDaemon('start');
  cleanup(FIRST, PATH_A);
  cleanup(SECOND_URI, PATH_B);
  removeNetwork(NET_A);
});

describe('one CPI, two libvirt daemons', () => {
  let stemcell: string;
  let vmB: string;
  let vmA: string;
  let disk: string;
  let late: string;

  it('create_stemcell gives one CID usable on both hosts', async () => {
    stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
    expect(stemcell).not.toContain('@');
    for (const uri of [FIRST, SECOND_URI]) expect(names(uri, 'volumes')).toEqual(expect.arrayContaining([stemcell, `${stemcell}.meta`]));
  });

  it('an AZ naming host-b puts the VM there; its CID says so; an unknown host is a clear error', async () => {
    [vmB] = (await cpi(config, 'create_vm', ['agent-b', stemcell, { host: 'host-b' }, dynamic, [], {}])) as [string];
    expect(vmB).toMatch(/@host-b$/);
    expect(names(SECOND_URI, 'domains')).toContain(vmB.split('@')[0]);
    expect(names(FIRST, 'domains')).not.toContain(vmB.split('@')[0]);
    const err = await errorOf('create_vm', ['agent-x', stemcell, { host: 'host-c' }, dynamic, [], {}]);
    expect(err.message).toMatch(/cloud_properties\.host: expected one of the configured hosts \(host-a, host-b\), got "host-c"/);
  });

  it('a volume of one kind is never taken for another: a disk named as stemcell_cid is not copied to the VM\'s host, its tags volume named as disk_cid is not moved there', async () => {
    // A disk with tags looks like a stemcell from outside: a volume and a `.meta` beside it.
    // Under the bare volume name (as the director sends a 20-character disk CID), a
    // create_vm placed on host-a copied it from host-b as "the stemcell", then failed and
    // left the copy (the conformance battery's "existing CID of another kind"); and
    // attach_disk moved any volume found under the disk CID it was given to the VM's host
    // before asking whether it was a disk.
    const other = (await cpi(config, 'create_disk', [16, { host: 'host-b' }, null])) as string;
    const base = other.split('@')[0]!;
    let sc = '';
    let vm = '';
    try {
      expect(await cpi(config, 'set_disk_metadata', [other, { deployment: 'd' }])).toBeNull();
      expect(names(SECOND_URI, 'volumes')).toEqual(expect.arrayContaining([base, `${base}.meta`]));
      const onA = names(FIRST, 'volumes');
      const err = await errorOf('create_vm', ['agent-not-a-stemcell', base, { host: 'host-a' }, dynamic, [], {}]);
      expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
      expect(err.message).toContain(`Stemcell ${base} does not exist`);
      expect(names(FIRST, 'volumes')).toEqual(onA);

      sc = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
      [vm] = (await cpi(config, 'create_vm', ['agent-not-a-disk', sc, { host: 'host-a' }, dynamic, [], {}])) as [string];
      const tagsOf = `${base}.meta`;
      expect((await errorOf('attach_disk', [vm, tagsOf])).type).toBe('Bosh::Clouds::DiskNotFound');
      expect(names(FIRST, 'volumes')).not.toContain(tagsOf);
      expect(names(SECOND_URI, 'volumes')).toEqual(expect.arrayContaining([base, tagsOf]));
    } finally {
      if (vm) await cpi(config, 'delete_vm', [vm]);
      if (sc) await cpi(config, 'delete_stemcell', [sc]);
      await cpi(config, 'delete_disk', [other]);
    }
    expect(names(FIRST, 'volumes').filter((n) => n.startsWith(base))).toEqual([]);
    expect(names(SECOND_URI, 'volumes').filter((n) => n.startsWith(base))).toEqual([]);
  });

  it('without a host, memory decides: what the CPI placed on host-b counts, so the next VM goes to host-a', async () => {
    // both daemons run on this machine and report the same free memory: only the CPI's own placement differs
    [vmA] = (await cpi(config, 'create_vm', ['agent-a', stemcell, { hosts: ['host-a', 'host-b'] }, dynamic, [], {}])) as [string];
    expect(vmA).toMatch(/@host-a$/);
  });

  it('a static address decides the host when only one host\'s network has its subnet (one subnet per AZ)', async () => {
    // No host named: host-a's network (198.18.230.0/24) cannot have 198.18.231.20, host-b's can.
    const manual = { default: { type: 'manual', ip: '198.18.231.20', netmask: '255.255.255.0', gateway: '198.18.231.1', cloud_properties: {} } };
    const [vm] = (await cpi(config, 'create_vm', ['agent-static', stemcell, {}, manual, [], {}])) as [string];
    expect(vm).toMatch(/@host-b$/);
    await cpi(config, 'delete_vm', [vm]);
    // An address no host has: a clear error naming each host's reason, nothing created.
    const nowhere = { default: { ...manual.default, ip: '198.18.232.20', gateway: '198.18.232.1' } };
    const err = await errorOf('create_vm', ['agent-nowhere', stemcell, {}, nowhere, [], {}]);
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).toMatch(/host-a skipped: its networks do not fit .*198\.18\.232\.20.*host-b skipped: its networks do not fit/);
    expect(err.ok_to_retry).toBe(false);
  });

  it('VM and disk CIDs from before the config listed hosts (no @host) are still found, on whichever host has them', async () => {
    const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')) as Record<string, unknown>;
    const { hosts: _hosts, ...single } = base;
    const one = writeConfig({ ...single, name_prefix: PREFIX, libvirt: { uri: FIRST }, storage: { pool: POOL, path: PATH_A, create_pool: true }, network: { name: NET_A, model: 'virtio' }, vm: { ...(base.vm as object), ram: 256, ephemeral_disk_size: 64 } });
    const [old] = (await cpi(one, 'create_vm', ['agent-old', stemcell, {}, dynamic, [], {}])) as [string];
    const oldDisk = (await cpi(one, 'create_disk', [16, {}, null])) as string;
    expect(old).not.toContain('@');
    expect(oldDisk).not.toContain('@');
    expect(await cpi(config, 'has_vm', [old])).toBe(true);
    expect(await cpi(config, 'set_vm_metadata', [old, { deployment: 'd' }])).toBeNull();
    // its disks too, under the CIDs the director holds (the VM powered off: the tiny
    // stemcell's guest never answers a hot-unplug)
    virshOn(FIRST, 'destroy', old);
    expect(await cpi(config, 'has_disk', [oldDisk])).toBe(true);
    await cpi(config, 'attach_disk', [old, oldDisk]);
    expect(await cpi(config, 'get_disks', [old])).toEqual([oldDisk]);
    await cpi(config, 'detach_disk', [old, oldDisk]);
    // attached to a VM made since, the old disk is still given back under its bare CID
    const [since] = (await cpi(config, 'create_vm', ['agent-since', stemcell, { host: 'host-a' }, dynamic, [], {}])) as [string];
    virshOn(FIRST, 'destroy', since.split('@')[0]!);
    await cpi(config, 'attach_disk', [since, oldDisk]);
    expect(await cpi(config, 'get_disks', [since])).toEqual([oldDisk]);
    await cpi(config, 'detach_disk', [since, oldDisk]);
    await cpi(config, 'delete_vm', [since]);
    await cpi(config, 'delete_disk', [oldDisk]);
    expect(await cpi(config, 'has_disk', [oldDisk])).toBe(false);
    await cpi(config, 'delete_vm', [old]);
    expect(names(FIRST, 'domains')).not.toContain(old);
    expect(await cpi(config, 'has_vm', [old])).toBe(false);
  });

  it('a disk made for the VM on host-b lives there; a VM created with it as disk_cids lands on host-b', async () => {
    disk = (await cpi(config, 'create_disk', [64, {}, vmB])) as string;
    expect(disk).toMatch(/@host-b$/);
    expect(names(SECOND_URI, 'volumes')).toContain(disk.split('@')[0]);
    const [vm] = (await cpi(config, 'create_vm', ['agent-c', stemcell, {}, dynamic, [disk], {}])) as [string];
    expect(vm).toMatch(/@host-b$/);
    await cpi(config, 'delete_vm', [vm]);
  });

  it('attach_disk cut in the middle of moving the disk fails retryably and keeps the disk on host-b', async () => {
    proxy.arm({ procedure: Proc.STORAGE_VOL_UPLOAD.proc, when: 'mid-stream', afterBytes: 16 * 1024 });
    const err = await errorOf('attach_disk', [vmA, disk]);
    expect(proxy.cuts).toBe(1);
    expect(err).toMatchObject({ type: 'Bosh::Clouds::CloudError', ok_to_retry: true });
    expect(err.message).toMatch(/interrupted.*the original is kept on host-b/);
    const base = disk.split('@')[0]!;
    expect(names(SECOND_URI, 'volumes')).toContain(base);
    expect(await cpi(config, 'has_disk', [disk])).toBe(true);
  });

  it('attach_disk (the retry) moves the disk to the VM on host-a, CID unchanged; get_disks and has_disk still know it', async () => {
    const hint = await cpi(config, 'attach_disk', [vmA, disk]);
    expect(hint).toBeTruthy();
    const base = disk.split('@')[0]!;
    expect(names(FIRST, 'volumes')).toContain(base);
    expect(names(SECOND_URI, 'volumes')).not.toContain(base);
    expect(await cpi(config, 'get_disks', [vmA])).toEqual([disk]);
    expect(await cpi(config, 'has_disk', [disk])).toBe(true);
  });

  it('the CLI covers both hosts: hosts shows what the CPI placed on each, doctor checks each, orphans reports each', async () => {
    const hosts = await cli('hosts', '--json');
    expect(hosts.code).toBe(0);
    const rows = JSON.parse(hosts.stdout) as Array<{ name: string; down: string | null; placedVms: number; placedMemoryMiB: number; totalMemoryMiB: number }>;
    expect(rows.map((r) => [r.name, r.down, r.placedVms, r.placedMemoryMiB])).toEqual([['host-a', null, 1, 256], ['host-b', null, 1, 256]]);
    expect(rows[0]!.totalMemoryMiB).toBeGreaterThan(0);
    const doctor = await cli('doctor', '--json');
    const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; status: string }> }).checks;
    for (const h of ['host-a', 'host-b']) expect(checks).toContainEqual(expect.objectContaining({ name: `${h}: connection`, status: 'OK' }));
    const orphans = await cli('orphans', '--json');
    expect(Object.keys(JSON.parse(orphans.stdout) as object)).toEqual(['host-a', 'host-b']);
  });

  it('with the second daemon stopped: host-a calls pass, host-b calls are retryable errors, never VMNotFound; create_vm skips host-b', async () => {
    secondDaemon('stop');
    try {
      expect(await cpi(config, 'has_vm', [vmA])).toBe(true);
      expect(await cpi(config, 'has_disk', [disk])).toBe(true);
      // the disk born on host-b keeps its CID, from the birth record next to it on host-a
      expect(await cpi(config, 'get_disks', [vmA])).toEqual([disk]);
      for (const [method, args] of [['has_vm', [vmB]], ['delete_vm', [vmB]], ['reboot_vm', [vmB]]] as const) {
        const err = await errorOf(method, [...args]);
        expect(err.type, method).toBe('Bosh::Clouds::CloudError');
        expect(err.ok_to_retry, method).toBe(true);
        expect(err.message, method).toMatch(/Cannot reach libvirt host host-b/);
      }
      const pinned = await errorOf('create_vm', ['agent-d', stemcell, { host: 'host-b' }, dynamic, [], {}]);
      expect(pinned).toMatchObject({ type: 'Bosh::Clouds::VMCreationFailed', ok_to_retry: true });
      expect(pinned.message).toMatch(/host-b skipped: unreachable/);
      const hosts = await cli('hosts', '--json');
      expect(hosts.code).toBe(1);
      expect((JSON.parse(hosts.stdout) as Array<{ name: string; down: string | null }>).map((r) => [r.name, r.down !== null])).toEqual([['host-a', false], ['host-b', true]]);
      const [vm] = (await cpi(config, 'create_vm', ['agent-d', stemcell, {}, dynamic, [], {}])) as [string];
      expect(vm).toMatch(/@host-a$/);
      await cpi(config, 'delete_vm', [vm]);
      // a stemcell uploaded now reaches host-a only…
      late = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
      expect(names(FIRST, 'volumes')).toContain(late);
    } finally {
      secondDaemon('start');
    }
    expect(await cpi(config, 'has_vm', [vmB])).toBe(true);
    // …and is copied to host-b by the first create_vm there
    expect(names(SECOND_URI, 'volumes')).not.toContain(late);
    const [vm] = (await cpi(config, 'create_vm', ['agent-e', late, { host: 'host-b' }, dynamic, [], {}])) as [string];
    expect(names(SECOND_URI, 'volumes')).toEqual(expect.arrayContaining([late, `${late}.meta`]));
    await cpi(config, 'delete_vm', [vm]);
  });

  it('a disk deleted while its birth host is down leaves a forwarding record there; orphans names it and --delete removes it', async () => {
    const moved = (await cpi(config, 'create_disk', [64, {}, vmB])) as string;
    const base = moved.split('@')[0]!;
    await cpi(config, 'attach_disk', [vmA, moved]); // moves it to host-a: host-b keeps <cid>.moved
    expect(names(SECOND_URI, 'volumes')).toContain(`${base}.moved`);
    virshOn(FIRST, 'destroy', vmA.split('@')[0]!); // the guest answers no hot-unplug: detach from the saved config
    await cpi(config, 'detach_disk', [vmA, moved]);
    secondDaemon('stop');
    try {
      await cpi(config, 'delete_disk', [moved]);
    } finally {
      secondDaemon('start');
    }
    expect(names(FIRST, 'volumes')).not.toContain(base);
    expect(names(SECOND_URI, 'volumes')).toContain(`${base}.moved`);
    const listed = JSON.parse((await cli('orphans', '--json', '--min-age', '0')).stdout) as Record<string, { orphans: Array<{ name: string; reason: string }> }>;
    expect(listed['host-a']!.orphans.map((o) => o.name)).not.toContain(`${base}.moved`);
    expect(listed['host-b']!.orphans).toContainEqual(expect.objectContaining({ kind: 'volume', name: `${base}.moved`, reason: expect.stringMatching(/points at host host-a, which does not hold the disk/) }));
    const removed = await cli('orphans', '--delete', '--min-age', '0');
    expect(removed.stdout).toMatch(new RegExp(`deleted\\s+volume\\s+${base}\\.moved`));
    expect(names(SECOND_URI, 'volumes')).not.toContain(`${base}.moved`);
    expect(await cpi(config, 'has_disk', [moved])).toBe(false);
  });

  it('a verified copy left on host-b by a move stopped before removing the original (still on host-a) is listed by orphans and removed copy first; the disk stays', async () => {
    const disk2 = (await cpi(config, 'create_disk', [16, {}, vmA])) as string;
    const base = disk2.split('@')[0]!;
    expect(names(FIRST, 'volumes')).toContain(base);
    // what such a move leaves on host-b (src/hosts/move.ts): the copy, its marker saying 'verified'
    const word = join(tmpdir(), `${PREFIX}verified`);
    writeFileSync(word, 'verified');
    for (const args of [['vol-create-as', POOL, base, '16M', '--format', 'qcow2'], ['vol-create-as', POOL, `${base}.partial`, '512', '--format', 'raw'], ['vol-upload', '--pool', POOL, `${base}.partial`, word]]) {
      const r = virshOn(SECOND_URI, ...args);
      expect(r.status, r.stderr).toBe(0);
    }
    rmSync(word);
    const listed = JSON.parse((await cli('orphans', '--json', '--min-age', '0')).stdout) as Record<string, { orphans: Array<{ name: string; reason: string }> }>;
    expect(listed['host-b']!.orphans.filter((o) => o.name.startsWith(base)).map((o) => [o.name, o.reason])).toEqual([
      [base, expect.stringMatching(/^verified copy from a move .* which lives on at host host-a; removed before its marker$/)],
      [`${base}.partial`, expect.stringMatching(/^marker of a move/)],
    ]);
    expect(listed['host-a']!.orphans.map((o) => o.name)).not.toContain(base);
    await cli('orphans', '--delete', '--min-age', '0');
    expect(names(SECOND_URI, 'volumes').filter((v) => v.startsWith(base))).toEqual([]);
    expect(names(FIRST, 'volumes')).toContain(base);
    expect(await cpi(config, 'has_disk', [disk2])).toBe(true);
    await cpi(config, 'delete_disk', [disk2]);
  });

  it('everything is deleted again on both hosts', async () => {
    // (the test guest runs no OS that would release a hot-unplugged disk: delete_vm keeps it instead)
    await cpi(config, 'delete_vm', [vmA]);
    expect(await cpi(config, 'has_disk', [disk])).toBe(true);
    await cpi(config, 'delete_disk', [disk]);
    expect(await cpi(config, 'has_disk', [disk])).toBe(false);
    await cpi(config, 'delete_vm', [vmB]);
    await cpi(config, 'delete_stemcell', [stemcell]);
    await cpi(config, 'delete_stemcell', [late]);
    expect(names(FIRST, 'domains')).toEqual([]);
    expect(names(SECOND_URI, 'domains')).toEqual([]);
    expect(names(FIRST, 'volumes')).toEqual([]);
    expect(names(SECOND_URI, 'volumes')).toEqual([]);
  });
});
