// A booted guest on one libvirt host reads a persistent disk that was born on another
// host and moved by attach_disk (two independent daemons on this machine): the guest
// sees the bytes written into the disk on the first host.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireBundle, writeConfig, ROOT } from '../helpers/cpi.js';
import { cpi, defineIsolatedNetwork, removeNetwork } from '../helpers/driver-fixtures.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { requireSecondDaemon, SECOND_URI } from '../helpers/second-daemon.js';
import { AGENT_ID_RULES, agentUrl, buildTestStemcell, inGuest, readGuestReport, resolveGuestDisk, serialLog } from '../helpers/stemcell.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 'mh-e2e-';
const POOL = `${PREFIX}pool`;
const PATH_A = `/var/tmp/${PREFIX}pool-a`;
const PATH_B = `/var/tmp/${PREFIX}pool-b`;
const NET = `${PREFIX}net`;
const BOOT_TIMEOUT_MS = 180_000;
const MiB = 1024 * 1024;
const FIRST = 'qemu:///system';
let config: string;
const virshOn = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

function cleanup(uri: string, path: string): void {
  for (const d of virshOn(uri, 'list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX))) {
    virshOn(uri, 'destroy', d);
    virshOn(uri, 'undefine', d, '--nvram');
  }
  for (const v of virshOn(uri, 'vol-list', POOL).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((n) => n.startsWith(PREFIX))) virshOn(uri, 'vol-delete', v, '--pool', POOL);
  virshOn(uri, 'pool-destroy', POOL);
  virshOn(uri, 'pool-undefine', POOL);
  rmSync(path, { recursive: true, force: true });
}

beforeAll(() => {
  requireBundle();
  requireDaemon();
  requireSecondDaemon();
  cleanup(FIRST, PATH_A);
  cleanup(SECOND_URI, PATH_B);
  removeNetwork(NET);
  defineIsolatedNetwork(NET, 'mh0', 230);
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')) as Record<string, unknown>;
  config = writeConfig({
    ...base,
    name_prefix: PREFIX,
    storage: { pool: POOL, path: PATH_A, create_pool: true },
    network: { name: NET, model: 'virtio' },
    hosts: [{ name: 'host-a' }, { name: 'host-b', libvirt: { uri: SECOND_URI }, storage: { path: PATH_B }, network: { name: 'bosh-cpi' } }],
    vm: { ...(base.vm as object), ram: 256, ephemeral_disk_size: 64 },
  });
});

afterAll(() => {
  cleanup(FIRST, PATH_A);
  cleanup(SECOND_URI, PATH_B);
  removeNetwork(NET);
});

it('a disk written on host-b, attached to a guest on host-a, reads the same in the guest', async () => {
  const tarball = await buildTestStemcell();
  const dir = scratchDir(`${PREFIX}sc-`);
  execFileSync('tar', ['-xzf', tarball, '-C', dir, 'image']);
  const stemcell = (await cpi(config, 'create_stemcell', [join(dir, 'image'), { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }])) as string;

  // a disk on host-b with a known first MiB, written into its qcow2 file on that host
  const disk = (await cpi(config, 'create_disk', [32, { host: 'host-b' }, null])) as string;
  // bare, 20 characters: the agent must see the whole CID to find it by ID (no `@host-b`)
  expect(disk).toMatch(new RegExp(`^${PREFIX}d-[0-9a-z]+$`));
  expect(disk).toHaveLength(20);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', join(PATH_B, disk)], { stdio: 'ignore' });
  const expected = createHash('sha256').update(Buffer.alloc(MiB, 0x5a)).digest('hex');

  const net = { private: { type: 'manual', ip: '198.18.230.11', netmask: '255.255.255.0', gateway: '198.18.230.1', dns: ['198.18.230.1'], default: ['dns', 'gateway'], cloud_properties: { name: NET } } };
  const [vm] = (await cpi(config, 'create_vm', ['agent-mh', stemcell, { host: 'host-a' }, net, [], {}], { context: { vm: { stemcell: { api_version: 3 } } } })) as [string];
  expect(vm).toMatch(/@host-a$/);
  const name = vm.split('@')[0]!;
  await inGuest(name, async () => {
    const report = await readGuestReport(serialLog(name), BOOT_TIMEOUT_MS);
    expect(report.errors).toEqual([]);
    const hint = (await cpi(config, 'attach_disk', [vm, disk])) as { id?: string; path?: string };
    // moved: on host-a now, gone from host-b, CID unchanged
    expect(virshOn(FIRST, 'vol-list', POOL).stdout).toContain(disk.split('@')[0]!);
    expect(virshOn(SECOND_URI, 'vol-list', POOL).stdout).not.toContain(`${disk.split('@')[0]!} `);
    const url = new URL('/cgi-bin/read', agentUrl('198.18.230.11'));
    url.searchParams.set('cid', disk);
    if (hint.path !== undefined) url.searchParams.set('path', hint.path);
    url.searchParams.set('bytes', String(MiB));
    let seen: { sha256?: string } | null = null;
    for (let i = 0; i < 60 && !seen; i++) {
      const res = await fetch(url, { signal: AbortSignal.timeout(15_000) }).catch(() => null);
      if (res?.ok) seen = (await res.json()) as { sha256: string };
      else await new Promise((r) => setTimeout(r, 500));
    }
    expect(seen?.sha256).toBe(expected);
    // by ID with both agent generations' rules, though the disk moved hosts
    for (const rule of AGENT_ID_RULES) {
      expect({ rule, seen: await resolveGuestDisk(agentUrl('198.18.230.11'), { cid: disk, path: hint.path!, rule }) }).toMatchObject({ rule, seen: { resolved_by: 'id', device: hint.path } });
    }
  });
  await cpi(config, 'delete_vm', [vm]);
  await cpi(config, 'delete_disk', [disk]);
  // the move's records (`.born` next to it on host-a, `.moved` on host-b) go with it
  expect(virshOn(FIRST, 'vol-list', POOL).stdout).not.toContain(disk);
  expect(virshOn(SECOND_URI, 'vol-list', POOL).stdout).not.toContain(disk);
  await cpi(config, 'delete_stemcell', [stemcell]);
}, 900_000);
