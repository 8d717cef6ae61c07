// A fresh host, recreated: CI never starts from one, so this test puts the one piece of
// libvirt state a fresh Debian host lacks back into its fresh condition and proves that
// `doctor` names it, that create_vm then fails the way a newcomer saw it fail, and that
// the set-up the README's commands run repairs it.
//
// The piece: /var/lib/libvirt/dnsmasq. libvirt writes a network's MAC map there whenever
// a VM joins the network, but creates the directory only when a network with DHCP or DNS
// first starts — which the project's quiet networks never do. The directory is moved
// aside for the duration of this file and put back afterwards, also after a failure.
// (Test files run one at a time, so no other test's DHCP network is running meanwhile.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';

const PREFIX = 't-fresh-';
const NET = 't-fresh-net';
const STATE_DIR = '/var/lib/libvirt/dnsmasq';
const ASIDE = `${STATE_DIR}.t-fresh-aside`;
const CLI = join(ROOT, 'dist/cli.mjs');

let config: string;
let stemcell: string;

function putStateDirBack(): void {
  if (!existsSync(ASIDE)) return;
  rmSync(STATE_DIR, { recursive: true, force: true });
  renameSync(ASIDE, STATE_DIR);
}

function doctor(): { code: number | null; checks: Array<{ name: string; status: string; message: string }> } {
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--config', config, '--json'], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, checks: (JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; message: string }> }).checks };
}

function createVmArgs(ip: string) {
  return [
    't-fresh-agent',
    stemcell,
    { cpu: 1, ram: 128 },
    { default: { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.160.1', default: ['dns', 'gateway'], cloud_properties: { name: NET } } },
    [],
    {},
  ];
}

beforeAll(async () => {
  putStateDirBack(); // a run that was killed before its afterAll
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-fresh-br0', 160); // no DHCP, DNS off: libvirt runs no dnsmasq
  ({ path: config } = testConfig({ prefix: PREFIX, network: NET }));
  stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
  if (existsSync(STATE_DIR)) renameSync(STATE_DIR, ASIDE);
});

afterAll(() => {
  putStateDirBack();
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
  if (config) rmSync(dirname(config), { recursive: true, force: true });
});

describe('a fresh host', () => {
  it('doctor FAILs naming the missing directory and how to create it', () => {
    const r = doctor();
    expect(r.code).toBe(1);
    const check = r.checks.find((c) => c.name === 'network_state_dir');
    expect(check?.status).toBe('FAIL');
    expect(check?.message).toMatch(/\/var\/lib\/libvirt\/dnsmasq does not exist.*mkdir -p \/var\/lib\/libvirt\/dnsmasq/);
  });

  it('create_vm on a network without DHCP fails there, and leaves nothing behind', async () => {
    const err = await cpiError(config, 'create_vm', createVmArgs('198.18.160.10'));
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).toMatch(/dnsmasq\/t-fresh-br0\.macs/);
    // libvirt's words alone do not say what to do: the CPI adds the remedy.
    expect(err.message).toMatch(/lacks the directory \/var\/lib\/libvirt\/dnsmasq.*mkdir -p \/var\/lib\/libvirt\/dnsmasq/);
    expect(leftovers(PREFIX).filter((n) => !n.startsWith(`${PREFIX}sc-`))).toEqual([]);
  });

  it('the set-up the README commands run repairs it: doctor passes the check and create_vm works', async () => {
    const setup = spawnSync(join(ROOT, 'scripts/setup-host.sh'), { encoding: 'utf8', timeout: 600_000 });
    expect(setup.status, setup.stderr).toBe(0);
    expect(existsSync(STATE_DIR)).toBe(true);
    expect(doctor().checks.find((c) => c.name === 'network_state_dir')?.status).toBe('OK');

    const [vm] = (await cpi(config, 'create_vm', createVmArgs('198.18.160.11'))) as [string];
    expect(await cpi(config, 'has_vm', [vm])).toBe(true);
    await cpi(config, 'delete_vm', [vm]);
    await cpi(config, 'delete_stemcell', [stemcell]);
    expect(leftovers(PREFIX)).toEqual([]);
  });
});
