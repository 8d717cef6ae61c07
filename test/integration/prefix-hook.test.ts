// Delegated prefixes (RFC-0038) reach a VM through a host route via the VM's own
// address, which the libvirt qemu hook (scripts/libvirt-hook-qemu, installed as
// /etc/libvirt/hooks/qemu by scripts/setup-host.sh) adds when the domain starts and
// removes when it stops. Prefixes inside the bridge's subnet are on-link and get no
// route. The hook script is also run directly, in dry-run mode, on hand-made domain XML.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROOT, requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, defineIsolatedNetwork, domainXml, removeNetwork, testConfig, tinyStemcell, type IsolatedNetwork } from '../helpers/driver-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';

const URI = 'qemu:///system';
const HOOK = join(ROOT, 'scripts/libvirt-hook-qemu');
const INSTALLED = '/etc/libvirt/hooks/qemu';
const PREFIX = 't-net-p-';
const NET = { name: 't-net-p74', bridge: 't-net-br74', third: 74 };
const V6_NETMASK = 'ffff:ffff:ffff:ffff:0000:0000:0000:0000';
const NS = 'urn:bosh-libvirt-cpi:vm:1';

const virsh = (...args: string[]) => execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });
const routes = (family: '-4' | '-6', prefix: string) => execFileSync('ip', [family, 'route', 'show', prefix], { encoding: 'utf8' }).trim();
const scratch = scratchDir('t-net-p-');

/** Runs the hook script from the checkout in dry-run mode; returns its output. */
function dryRun(xml: string, op: string, env: Record<string, string> = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync('sh', [HOOK, 'vm-test', op, 'begin', '-'], {
    input: xml,
    encoding: 'utf8',
    env: { ...process.env, BOSH_LIBVIRT_HOOK_DRY_RUN: '1', BOSH_LIBVIRT_HOOK_NETWORK_DIRS: join(scratch, 'no-such-dir'), ...env },
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/** A domain as libvirt hands it to the hook: <bosh:vm> inside <metadata>, interfaces with their live <source>. */
function domain(prefixes: string, interfaces = `<interface type='network'><mac address='52:54:00:12:34:56'/><source network='t-net-x' portid='0b6e6b8e-8f0e-4f55-8d6e-3b1b3b1b3b1b' bridge='virbr-x'/><target dev='vnet7'/><model type='virtio'/></interface>`): string {
  return `<domain type='qemu' id='7'>
  <name>vm-test</name>
  <metadata>
    <bosh:vm xmlns:bosh="${NS}">
      <bosh:agent-id>agent</bosh:agent-id>
      <bosh:stemcell-cid>sc-1</bosh:stemcell-cid>
      <bosh:volumes/><bosh:disks/><bosh:macs><bosh:mac address="52:54:00:12:34:56"/></bosh:macs>
      <bosh:prefixes>${prefixes}</bosh:prefixes>
      <bosh:reservations/><bosh:tags/>
    </bosh:vm>
  </metadata>
  <devices>${interfaces}</devices>
</domain>`;
}

const V6 = `<bosh:prefix prefix="fd00:7400:1::/80" via="fd00:74::10" network="t-net-x"/>`;
const V4 = `<bosh:prefix prefix="198.19.74.16/28" via="198.18.74.10" network="t-net-x"/>`;

describe('libvirt-hook-qemu (dry run)', () => {
  test.each(['started', 'reconnect'])('%s: replaces a route per prefix via the VM address on the network\'s bridge', (op) => {
    const r = dryRun(domain(V6 + V4), op);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'ip -6 route replace fd00:7400:1::/80 via fd00:74::10 dev virbr-x',
      'ip -4 route replace 198.19.74.16/28 via 198.18.74.10 dev virbr-x',
    ]);
    expect(r.stderr).toBe('');
  });

  test.each(['stopped', 'release'])('%s: deletes exactly the VM\'s routes (by via, the bridge may be gone)', (op) => {
    const r = dryRun(domain(V6 + V4), op);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['ip -6 route del fd00:7400:1::/80 via fd00:74::10', 'ip -4 route del 198.19.74.16/28 via 198.18.74.10']);
  });

  test.each(['prepare', 'start', 'migrate', 'restore', 'attach', ''])('operation %j changes nothing', (op) => {
    const r = dryRun(domain(V6 + V4), op);
    expect(r).toMatchObject({ status: 0, stdout: '' });
  });

  test('domains without bosh metadata, or with no prefixes, change nothing', () => {
    expect(dryRun(`<domain type='kvm'><name>other</name><devices/></domain>`, 'started')).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(dryRun(`<domain type='kvm'><name>other</name><metadata><app:x xmlns:app="urn:other"/></metadata></domain>`, 'stopped')).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(dryRun(domain(''), 'started')).toEqual({ status: 0, stdout: '', stderr: '' });
  });

  test('the bridge comes from the network status or config file when the interface does not name it', () => {
    const dirs = [join(scratch, 'run'), join(scratch, 'etc')];
    for (const d of dirs) mkdirSync(d, { recursive: true });
    writeFileSync(join(dirs[0]!, 't-net-x.xml'), `<networkstatus><class_id bitmap='0-2'/><network><name>t-net-x</name><bridge name='virbr-run' stp='on' delay='0'/></network></networkstatus>`);
    writeFileSync(join(dirs[1]!, 't-net-y.xml'), `<network><name>t-net-y</name><bridge name='virbr-etc'/></network>`);
    const xml = domain(V6 + `<bosh:prefix prefix="fd00:7400:2::/80" via="fd00:75::10" network="t-net-y"/>`, `<interface type='network'><source network='t-net-x'/></interface>`);
    const r = dryRun(xml, 'started', { BOSH_LIBVIRT_HOOK_NETWORK_DIRS: dirs.join(' ') });
    expect(r.stdout.trim().split('\n')).toEqual(['ip -6 route replace fd00:7400:1::/80 via fd00:74::10 dev virbr-run', 'ip -6 route replace fd00:7400:2::/80 via fd00:75::10 dev virbr-etc']);
  });

  test('a NIC on a host bridge: the recorded network is the bridge', () => {
    const xml = domain(`<bosh:prefix prefix="fd00:7400:3::/80" via="fd00:74::10" network="br-host"/>`, `<interface type='bridge'><source bridge='br-host'/><target dev='vnet9'/></interface>`);
    expect(dryRun(xml, 'started').stdout).toBe('ip -6 route replace fd00:7400:3::/80 via fd00:74::10 dev br-host\n');
  });

  test('no bridge to be found: logged, skipped, exit 0', () => {
    const xml = domain(`<bosh:prefix prefix="fd00:7400:4::/80" via="fd00:74::10" network="t-net-gone"/>`);
    const r = dryRun(xml, 'started');
    expect(r).toMatchObject({ status: 0, stdout: '' });
    expect(r.stderr).toContain('no bridge found for network "t-net-gone"');
  });

  test('parse problems and hostile values never fail libvirt and never reach ip', () => {
    const hostile = [
      `<bosh:prefix prefix="fd00:7400:1::/80;reboot" via="fd00:74::10" network="t-net-x"/>`,
      `<bosh:prefix prefix="-fd00::/80" via="fd00:74::10" network="t-net-x"/>`,
      `<bosh:prefix prefix="fd00:7400:1::/80" via="198.18.74.10" network="t-net-x"/>`,
      `<bosh:prefix prefix="fd00:7400:1::/200" via="fd00:74::10" network="t-net-x"/>`,
      `<bosh:prefix prefix="fd00:7400:1::" via="fd00:74::10" network="t-net-x"/>`,
      `<bosh:prefix prefix="fd00:7400:1::/80" via="fd00:74::10" network="x']|//*[@a='"/>`,
      `<bosh:prefix prefix="fd00:7400:1::/80" via="fd00:74::10" network="../../etc/passwd"/>`,
      `<bosh:prefix prefix="ZmQwMA==" prefix-encoding="base64" via="fd00:74::10" network="t-net-x"/>`,
    ];
    for (const p of hostile) {
      const r = dryRun(domain(p), 'started');
      expect({ p, status: r.status, stdout: r.stdout }).toEqual({ p, status: 0, stdout: '' });
      expect(r.stderr).toMatch(/skipped|not added/);
    }
    // a good entry after a bad one still applies
    expect(dryRun(domain(hostile[0]! + V6), 'started').stdout).toBe('ip -6 route replace fd00:7400:1::/80 via fd00:74::10 dev virbr-x\n');
    for (const broken of [`<domain><metadata><bosh:vm xmlns:bosh="${NS}"><bosh:prefixes>`, `${NS}`, '']) {
      const r = dryRun(broken, 'started');
      expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: '' });
    }
  });
});

describe('delegated prefix routes on a real host (qemu:///system, hook installed)', () => {
  let config = '';
  let stemcell = '';
  let net: IsolatedNetwork;
  const vms: string[] = [];

  beforeAll(async () => {
    if (!existsSync(INSTALLED) || !readFileSync(INSTALLED).equals(readFileSync(HOOK))) {
      throw new Error(`${INSTALLED} is missing or differs from scripts/libvirt-hook-qemu: run scripts/setup-host.sh (as root) to install it; it restarts libvirtd, which reads hooks only at start`);
    }
    requireBundle();
    cleanupPrefix(PREFIX);
    net = defineIsolatedNetwork(NET.name, NET.bridge, NET.third);
    config = testConfig({ prefix: PREFIX, network: NET.name }).path;
    stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
  });

  afterAll(() => {
    cleanupPrefix(PREFIX); // destroying the domains runs the hook, which removes the routes
    removeNetwork(NET.name);
    // should anything survive (hook not run), do not leave routes to a deleted bridge behind
    spawnSync('ip', ['-6', 'route', 'del', 'fd00:7400:1::/80']);
    spawnSync('ip', ['-4', 'route', 'del', '198.19.74.16/28']);
    rmSync(scratch, { recursive: true, force: true });
  });

  const dualStack = (ip6: string, ip4: string) => ({
    v4: { type: 'manual', ip: ip4, netmask: '255.255.255.0', gateway: net.v4.gateway, dns: [], default: ['dns', 'gateway'], nic_group: 'g', cloud_properties: { name: NET.name } },
    v6: { type: 'manual', ip: ip6, netmask: V6_NETMASK, gateway: net.v6.gateway, dns: [], nic_group: 'g', cloud_properties: { name: NET.name } },
  });

  test('a prefix outside the bridge subnets is routed via the VM while it runs, and only then', async () => {
    const networks = {
      ...dualStack('fd00:74::10', '198.18.74.10'),
      pfx6: { type: 'manual', ip: 'fd00:7400:1::', prefix: '80', nic_group: 'g', cloud_properties: { name: NET.name } },
      pfx4: { type: 'manual', ip: '198.19.74.16', prefix: '28', nic_group: 'g', cloud_properties: { name: NET.name } },
    };
    const [vm, returned] = (await cpi(config, 'create_vm', ['agent-t-net-p', stemcell, {}, networks, [], {}])) as [string, Record<string, Record<string, unknown>>];
    vms.push(vm);
    // the agent must not configure a prefix as an address: no mac on prefix networks
    expect(returned.pfx6!.mac).toBeUndefined();
    expect(returned.v6!.mac).toBe(returned.v4!.mac);

    const xml = domainXml(vm);
    expect(xml).toContain(`<bosh:prefix prefix="fd00:7400:1::/80" via="fd00:74::10" network="${NET.name}"/>`);
    expect(xml).toContain(`<bosh:prefix prefix="198.19.74.16/28" via="198.18.74.10" network="${NET.name}"/>`);

    const hint = ' (is /etc/libvirt/hooks/qemu the one libvirtd loaded at start? scripts/setup-host.sh restarts it after installing)';
    const present = () => {
      expect(routes('-6', 'fd00:7400:1::/80'), `IPv6 route${hint}`).toMatch(new RegExp(`^fd00:7400:1::/80 via fd00:74::10 dev ${NET.bridge}\\b`));
      expect(routes('-4', '198.19.74.16/28'), `IPv4 route${hint}`).toMatch(new RegExp(`^198\\.19\\.74\\.16/28 via 198\\.18\\.74\\.10 dev ${NET.bridge}\\b`));
    };
    const absent = () => {
      expect(routes('-6', 'fd00:7400:1::/80')).toBe('');
      expect(routes('-4', '198.19.74.16/28')).toBe('');
    };
    present();

    virsh('destroy', vm);
    absent();
    virsh('start', vm);
    present();

    // the hook is idempotent: running it again (as libvirtd does on reconnect) keeps one route
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(INSTALLED, [vm, 'reconnect', 'begin', '-'], { input: domainXml(vm), encoding: 'utf8' });
      expect(r.status).toBe(0);
    }
    present();
    expect(routes('-6', 'fd00:7400:1::/80').split('\n')).toHaveLength(1);

    await cpi(config, 'delete_vm', [vm]);
    vms.splice(vms.indexOf(vm), 1);
    absent();
  });

  test('a prefix inside the bridge subnet is on-link: no <bosh:prefix> record for the hook, no route', async () => {
    const networks = {
      ...dualStack('fd00:0074:0000:0000:0000:0000:0000:0011', '198.18.74.11'),
      pfx6: { type: 'manual', ip: 'fd00:74:0:0:2::', prefix: '80', nic_group: 'g', cloud_properties: { name: NET.name } },
    };
    const [vm] = (await cpi(config, 'create_vm', ['agent-t-net-p', stemcell, {}, networks, [], {}])) as [string, unknown];
    vms.push(vm);
    expect(domainXml(vm)).not.toMatch(/<bosh:prefix /);
    expect(routes('-6', 'fd00:74:0:0:2::/80')).toBe('');
    // the bridge's own connected route is what delivers it
    expect(routes('-6', 'fd00:74::/64')).toContain(`dev ${NET.bridge}`);
    await cpi(config, 'delete_vm', [vm]);
    vms.splice(vms.indexOf(vm), 1);
  });
});
