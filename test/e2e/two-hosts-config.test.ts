// The ready multi-host config, fixtures/config/two-hosts.json, as an operator starts from
// it: unchanged, against the two daemons the scripts start (the system one and
// scripts/second-libvirtd.sh), with the pools and networks it names. Only the name
// prefix comes from the request context, as a director's cpi-config properties would, so
// everything the CPI creates carries this test's prefix. A VM on each host boots the test
// stemcell and its agent reports back; then everything is deleted.
//
// Runs in the alone phase of scripts/test (it uses the second daemon, which the
// multi-host files stop and start).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBundle, ROOT } from '../helpers/cpi.js';
import { cpi } from '../helpers/driver-fixtures.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { requireSecondDaemon, SECOND_DIR, SECOND_URI } from '../helpers/second-daemon.js';
import { agentUrl, buildTestStemcell, fetchGuestReport, readGuestReport, type GuestReport } from '../helpers/stemcell.js';
import { scratchDir } from '../helpers/scratch.js';

const CONFIG = join(ROOT, 'fixtures/config/two-hosts.json');
const PREFIX = 't-2h-';
const FIRST = 'qemu:///system';
const BOOT_TIMEOUT_MS = 300_000;
const ready = JSON.parse(readFileSync(CONFIG, 'utf8')) as { storage: { pool: string }; network: { name: string }; vm: { serial_log_dir: string } };
const POOL = ready.storage.pool;
const context = { name_prefix: PREFIX };

const virshOn = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);

// Each host as the ready config and the scripts lay it out: its network (the address
// chosen in its subnet) and where its serial logs land as seen from this machine (the
// second daemon's /var/log/libvirt is its own directory under SECOND_DIR).
const HOSTS = [
  { name: 'host-a', uri: FIRST, net: '198.18.250', serialDir: ready.vm.serial_log_dir },
  { name: 'host-b', uri: SECOND_URI, net: '198.18.231', serialDir: join(SECOND_DIR, 'log', 'qemu') },
] as const;

/** Pools that existed before this file ran are left in place; the ones the CPI created here go. */
const poolExisted = new Map<string, boolean>();

function cleanup(uri: string): void {
  for (const d of lines(virshOn(uri, 'list', '--all', '--name').stdout).filter((s) => s.startsWith(PREFIX))) {
    virshOn(uri, 'destroy', d);
    virshOn(uri, 'undefine', d, '--nvram');
  }
  for (const v of lines(virshOn(uri, 'vol-list', POOL).stdout).map((l) => l.split(/\s+/)[0]!).filter((n) => n.startsWith(PREFIX))) virshOn(uri, 'vol-delete', v, '--pool', POOL);
  if (poolExisted.get(uri) === false) {
    virshOn(uri, 'pool-destroy', POOL);
    virshOn(uri, 'pool-delete', POOL); // only the emptied directory the CPI made
    virshOn(uri, 'pool-undefine', POOL);
  }
}

beforeAll(() => {
  requireBundle();
  requireDaemon();
  requireSecondDaemon();
  for (const h of HOSTS) {
    poolExisted.set(h.uri, virshOn(h.uri, 'pool-info', POOL).status === 0);
    cleanup(h.uri);
    // the networks the ready config names: the scripts define them on each daemon
    expect(virshOn(h.uri, 'net-info', ready.network.name).stdout, `network ${ready.network.name} on ${h.name}`).toMatch(/Active:\s+yes/);
  }
});

afterAll(() => {
  for (const h of HOSTS) cleanup(h.uri);
});

describe('fixtures/config/two-hosts.json as it is', () => {
  it('boots a VM of the test stemcell on each host; each agent reports its settings; everything is deleted after', async () => {
    const tarball = await buildTestStemcell();
    const dir = scratchDir(`${PREFIX}sc-`);
    execFileSync('tar', ['-xzf', tarball, '-C', dir, 'image']);
    const stemcell = (await cpi(CONFIG, 'create_stemcell', [join(dir, 'image'), { disk_format: 'qcow2', infrastructure: 'openstack', hypervisor: 'kvm' }], { context })) as string;
    expect(stemcell.startsWith(PREFIX)).toBe(true);

    const vms: string[] = [];
    let failure: unknown = null;
    try {
      for (const h of HOSTS) {
        const ip = `${h.net}.31`;
        const networks = { private: { type: 'manual', ip, netmask: '255.255.255.0', gateway: `${h.net}.1`, dns: [`${h.net}.1`], default: ['dns', 'gateway'], cloud_properties: {} } };
        const [vm] = (await cpi(CONFIG, 'create_vm', [`agent-${h.name}`, stemcell, { host: h.name }, networks, [], {}], { context: { ...context, vm: { stemcell: { api_version: 3 } } } })) as [string];
        vms.push(vm);
        expect(vm).toMatch(new RegExp(`^${PREFIX}.*@${h.name}$`));
      }
      for (const [i, h] of HOSTS.entries()) {
        const name = vms[i]!.split('@')[0]!;
        const log = join(h.serialDir, `${name}-console.log`);
        let report: GuestReport;
        try {
          report = await readGuestReport(log, BOOT_TIMEOUT_MS);
        } catch (e) {
          throw new Error(`${h.name}: ${(e as Error).message}`);
        }
        expect(report.errors, h.name).toEqual([]);
        expect(report.agent_id).toBe(`agent-${h.name}`);
        expect(report.networks.private).toMatchObject({ mode: 'static', ip: `${h.net}.31` });
        // and over the host's bridge, from this machine
        expect((await fetchGuestReport(agentUrl(`${h.net}.31`))).agent_id).toBe(`agent-${h.name}`);
        expect(lines(virshOn(h.uri, 'list', '--name').stdout)).toContain(name);
      }
    } catch (e) {
      failure = e;
    }
    // Deleted through the CPI also after a failure (whose error then comes first).
    const deleteErrors: string[] = [];
    for (const [method, cid] of [...vms.map((vm) => ['delete_vm', vm] as const), ['delete_stemcell', stemcell] as const]) {
      await cpi(CONFIG, method, [cid], { context }).catch((e: Error) => deleteErrors.push(e.message));
    }
    if (failure) throw failure;
    expect(deleteErrors).toEqual([]);
    for (const h of HOSTS) {
      expect(lines(virshOn(h.uri, 'list', '--all', '--name').stdout).filter((n) => n.startsWith(PREFIX)), h.name).toEqual([]);
      expect(lines(virshOn(h.uri, 'vol-list', POOL).stdout).filter((l) => l.startsWith(PREFIX)), h.name).toEqual([]);
    }
  }, 900_000);
});
