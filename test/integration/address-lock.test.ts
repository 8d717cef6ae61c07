// The pool's address lock (bosh-libvirt-cpi-addresses.lock) against the real
// qemu:///system: create_vm holds it only while it checks its static addresses and records
// its claim, not while libvirtd defines the domain, so a daemon slow at defines does not
// make other create_vm calls give up waiting; and a waiter that gives up says who holds
// the lock and for how long. The slow daemon is real: the project's cutting proxy
// (test/helpers/cutting-proxy.ts) holds every DOMAIN_DEFINE_XML_FLAGS call for a while
// before passing it on to libvirtd.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle, runCpi } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';
import { processStart } from '../../src/driver/shared/creator.js';
import { ADDRESS_LOCK_VOLUME } from '../../src/driver/shared/names.js';
import { Proc } from '../../src/libvirt/procedures.js';

const PREFIX = 't-addrlock-';
const NET = { name: 't-al-n123', bridge: 't-al-br123', third: 123 };
const DOMAIN_DEFINE_XML_FLAGS = Proc.DOMAIN_DEFINE_XML_FLAGS.proc;
const LOCK = ADDRESS_LOCK_VOLUME;

let proxy: CuttingProxy;
let direct: string;
let viaProxy: string;
let pool: string;
let stemcell: string;

const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });
function manual(ip: string) {
  return { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.123.1', dns: [], default: ['dns', 'gateway'], cloud_properties: { name: NET.name } };
}
const createArgs = (ip: string) => ['agent-addrlock', stemcell, {}, { default: manual(ip) }, [], {}];

beforeAll(async () => {
  requireBundle();
  requireDaemon();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET.name, NET.bridge, NET.third, { dhcp: true });
  proxy = await startCuttingProxy();
  ({ path: direct, pool } = testConfig({ prefix: PREFIX, network: NET.name }));
  viaProxy = testConfig({ prefix: PREFIX, network: NET.name, overrides: { libvirt: { uri: proxy.uri } } }).path;
  stemcell = (await cpi(direct, 'create_stemcell', [tinyStemcell(), {}])) as string;
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  cleanupPrefix(PREFIX);
  removeNetwork(NET.name);
});

describe('the address lock', () => {
  it('is not held while a slow daemon defines: 5 parallel create_vm, each define held 16 s by the daemon, all succeed', async () => {
    // Were the lock held over the define, the 5 defines would follow one another: 80 s,
    // past the 60 s a create_vm waits for the lock.
    proxy.arm({ procedure: DOMAIN_DEFINE_XML_FLAGS, when: 'late', holdMs: 16_000, every: true });
    const runs = await Promise.all(
      [20, 21, 22, 23, 24].map((n) => runCpi({ method: 'create_vm', arguments: createArgs(`198.18.123.${n}`), context: { director_uuid: 'test', request_id: `addrlock-${n}` }, api_version: 2 }, { config: viaProxy, timeoutMs: 240_000 })),
    );
    proxy.disarm();
    const vms = runs.flatMap((r) => (r.response.error ? [] : [(r.response.result as [string])[0]]));
    try {
      expect(proxy.cuts).toBe(5);
      expect(runs.map((r) => r.response.error?.message ?? null)).toEqual([null, null, null, null, null]);
      // How long each held the lock, from its own log line.
      const held = runs.map((r) => Number(/"lock":"bosh-libvirt-cpi-addresses.lock","held_ms":(\d+)/.exec(r.stderr)?.[1]));
      expect(held.every((ms) => Number.isInteger(ms))).toBe(true);
      // Every lock names its call: the stemcell's lock by the method and request.
      for (const [i, r] of runs.entries()) expect(r.stderr).toMatch(new RegExp(`"lock":"${stemcell}.lock","held_ms":\\d+,"waited_ms":-?\\d+,"what":"create_vm agent-addrlock, request addrlock-${20 + i}"`));
      console.log(`address lock held (ms) by each create_vm while its define took 16 s: ${held.join(', ')}`);
    } finally {
      for (const vm of vms) await cpi(direct, 'delete_vm', [vm]);
    }
    expect(leftovers(PREFIX).filter((n) => !n.startsWith(stemcell))).toEqual([]);
    expect(virsh('vol-list', pool).stdout).not.toMatch(/bosh-libvirt-cpi-addresses/);
  }, 300_000);

  it('a create_vm that gives up waiting names the holder (pid, host, what it does) and how long it has held the lock', async () => {
    // A holder that runs (this test's own process) and says what it does, as create_vm's marker does.
    const since = new Date(Date.now() - 5000).toISOString();
    const file = join(scratchDir('t-addrlock-'), 'marker');
    writeFileSync(file, JSON.stringify({ host: hostname(), pid: process.pid, start: processStart(process.pid), at: since, what: `create_vm of ${PREFIX}vm-00000000-0000-4000-8000-000000000001: checking its static addresses` }));
    for (const args of [['vol-create-as', pool, LOCK, '8192', '--format', 'raw'], ['vol-upload', '--pool', pool, LOCK, file]]) {
      const r = virsh(...args);
      if (r.status !== 0) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
    }
    try {
      const err = await cpiError(direct, 'create_vm', createArgs('198.18.123.30'));
      expect(err.ok_to_retry).toBe(true);
      const m = new RegExp(`waiting for lock ${LOCK.replace(/\./g, '\\.')}, held by pid ${process.pid} on ${hostname()} \\(create_vm of ${PREFIX}vm-0+-0000-4000-8000-0+1: checking its static addresses\\) for (\\d+) s \\(since ${since}; that process still runs\\)`).exec(err.message);
      expect(m, err.message).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThanOrEqual(245); // 5 s before the call, plus the 240 s it waited
      expect(leftovers(PREFIX).filter((n) => !n.startsWith(stemcell))).toEqual([]);
    } finally {
      virsh('vol-delete', '--pool', pool, LOCK);
    }
  }, 360_000);
});
