// create_vm networking against qemu:///system, through the built bin/cpi: dual-stack
// NICs (nic_group) and dual-homed ones (one NIC per network without it), both IPv6 spellings, checks against
// the libvirt network, DHCP reservations (also under 10 concurrent calls), and which
// networks run dnsmasq (router advertisements). The tiny stemcell never boots an OS:
// everything asserted is host-side state.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell, type IsolatedNetwork } from '../helpers/driver-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';

const URI = 'qemu:///system';
const PREFIX = 't-net-n-';
const QUIET = { name: 't-net-q71', bridge: 't-net-br71', third: 71 };
const DHCP = { name: 't-net-d72', bridge: 't-net-br72', third: 72 };
const MANY = { name: 't-net-c73', bridge: 't-net-br73', third: 73 };
const NETWORKS = [QUIET, DHCP, MANY];

const virsh = (...args: string[]) => execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });
const V6_NETMASK = 'ffff:ffff:ffff:ffff:0000:0000:0000:0000';

let config = '';
let pool = '';
let stemcell = '';
let quiet: IsolatedNetwork;
const scratch = scratchDir('t-net-n-');

type Networks = Record<string, Record<string, unknown>>;

/** A manual network on libvirt network `net` (IPv4 or IPv6 by the spelling of `ip`). */
function manual(net: string, ip: string, gateway: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const v6 = ip.includes(':');
  return { type: 'manual', ip, netmask: v6 ? V6_NETMASK : '255.255.255.0', gateway, dns: [], cloud_properties: { name: net }, ...extra };
}

async function createVm(networks: Networks): Promise<[string, Networks]> {
  const result = (await cpi(config, 'create_vm', ['agent-t-net', stemcell, {}, networks, [], {}])) as [string, Networks];
  return result;
}

function interfaces(vm: string): Array<{ mac: string; network: string }> {
  const xml = domainXml(vm);
  return [...xml.matchAll(/<interface type='network'>[\s\S]*?<\/interface>/g)].map((m) => ({
    mac: /<mac address='([^']+)'/.exec(m[0])![1]!,
    network: /<source network='([^']+)'/.exec(m[0])![1]!,
  }));
}

/** The agent settings on the VM's config drive (ec2/latest/user-data of the ISO volume). */
function configDriveSettings(vm: string): { networks: Networks } {
  const iso = virsh('vol-path', '--pool', pool, `${vm}.config`).trim();
  const out = join(scratch, `${vm}.user-data`);
  rmSync(out, { force: true });
  execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/ec2/latest/user-data', out], { stdio: 'ignore' });
  return JSON.parse(readFileSync(out, 'utf8')) as { networks: Networks };
}

/** DHCP <host> entries of a network as `virsh net-dumpxml` shows them. */
function dhcpHosts(net: string): string[] {
  return [...virsh('net-dumpxml', net).matchAll(/<host [^>]*\/>/g)].map((m) => m[0]);
}

function defineDhcpNetwork(n: { name: string; bridge: string; third: number }): void {
  // DHCPv4 and DHCPv6: IPv4 hosts are reserved by MAC, IPv6 hosts by name.
  const xml = `<network><name>${n.name}</name><bridge name='${n.bridge}' stp='on' delay='0'/>
    <ip address='198.18.${n.third}.1' prefix='24'><dhcp><range start='198.18.${n.third}.100' end='198.18.${n.third}.200'/></dhcp></ip>
    <ip family='ipv6' address='fd00:${n.third}::1' prefix='64'><dhcp><range start='fd00:${n.third}::100' end='fd00:${n.third}::1ff'/></dhcp></ip></network>`;
  removeNetwork(n.name);
  const file = join(scratch, `${n.name}.xml`);
  writeFileSync(file, xml);
  virsh('net-define', file);
  virsh('net-start', n.name);
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX);
  quiet = defineIsolatedNetwork(QUIET.name, QUIET.bridge, QUIET.third);
  defineDhcpNetwork(DHCP);
  defineIsolatedNetwork(MANY.name, MANY.bridge, MANY.third, { dhcp: true });
  const cfg = testConfig({ prefix: PREFIX, network: QUIET.name });
  config = cfg.path;
  pool = cfg.pool;
  stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
});

afterAll(() => {
  cleanupPrefix(PREFIX);
  for (const n of NETWORKS) removeNetwork(n.name);
  rmSync(scratch, { recursive: true, force: true });
});

describe('create_vm: dual stack', () => {
  test('no nic_group, same libvirt network: one NIC per network (dual-homed), each MAC returned and on the config drive', async () => {
    const [vm, returned] = await createVm({
      v4: manual(QUIET.name, '198.18.71.11', quiet.v4.gateway, { default: ['dns', 'gateway'] }),
      v6: manual(QUIET.name, 'fd00:0071:0000:0000:0000:0000:0000:0011', quiet.v6.gateway),
    });
    try {
      const nics = interfaces(vm);
      expect(nics.map((n) => n.network)).toEqual([QUIET.name, QUIET.name]);
      expect(nics[0]!.mac).not.toBe(nics[1]!.mac);
      expect([returned.v4!.mac, returned.v6!.mac]).toEqual(nics.map((n) => n.mac));
      const settings = configDriveSettings(vm);
      expect(settings.networks.v4!.mac).toBe(nics[0]!.mac);
      expect(settings.networks.v6!.mac).toBe(nics[1]!.mac);
      expect(settings.networks.v6!.ip).toBe('fd00:0071:0000:0000:0000:0000:0000:0011');
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
    expect(leftovers(PREFIX).filter((n) => n.startsWith(vm))).toEqual([]);
  });

  test.each([
    ['nic_group', { nic_group: 'dual' }, '198.18.71.10', 'fd00:71::10'],
  ])('%s: one NIC whose MAC both networks carry, returned and on the config drive', async (_label, group, ip4, ip6) => {
    const networks: Networks = {
      v4: manual(QUIET.name, ip4, quiet.v4.gateway, { default: ['dns', 'gateway'], ...group }),
      v6: manual(QUIET.name, ip6, quiet.v6.gateway, group),
    };
    const [vm, returned] = await createVm(networks);
    try {
      const nics = interfaces(vm);
      expect(nics).toHaveLength(1);
      const mac = nics[0]!.mac;
      expect(nics[0]!.network).toBe(QUIET.name);
      expect(mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
      expect(returned.v4!.mac).toBe(mac);
      expect(returned.v6!.mac).toBe(mac);
      // the director's spelling comes back unchanged
      expect(returned.v4!.ip).toBe(ip4);
      expect(returned.v6!.ip).toBe(ip6);
      expect(returned.v6!.netmask).toBe(V6_NETMASK);

      const settings = configDriveSettings(vm);
      expect(settings.networks.v4!.mac).toBe(mac);
      expect(settings.networks.v6!.mac).toBe(mac);
      expect(settings.networks.v6!.ip).toBe(ip6);
      expect(settings.networks.v6!.gateway).toBe(quiet.v6.gateway);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
    expect(leftovers(PREFIX).filter((n) => n.startsWith(vm))).toEqual([]);
  });

  test('compressed and expanded IPv6 spellings of one address plan the same and each comes back as sent', async () => {
    const spellings = ['fd00:71::a:12', 'fd00:0071:0000:0000:0000:0000:000a:0012'];
    const shapes: unknown[] = [];
    for (const ip6 of spellings) {
      const gateway = ip6.includes('::') ? 'fd00:71::1' : 'fd00:0071:0000:0000:0000:0000:0000:0001';
      const [vm, returned] = await createVm({
        v4: manual(QUIET.name, '198.18.71.12', quiet.v4.gateway, { nic_group: 1 }),
        v6: manual(QUIET.name, ip6, gateway, { nic_group: '1' }),
      });
      try {
        expect(returned.v6!.ip).toBe(ip6);
        expect(returned.v6!.gateway).toBe(gateway);
        expect(configDriveSettings(vm).networks.v6!.ip).toBe(ip6);
        const nics = interfaces(vm);
        shapes.push({ nics: nics.length, sameMac: returned.v4!.mac === returned.v6!.mac && returned.v6!.mac === nics[0]!.mac });
      } finally {
        await cpi(config, 'delete_vm', [vm]);
      }
    }
    expect(shapes).toEqual([{ nics: 1, sameMac: true }, { nics: 1, sameMac: true }]);
  });
});

describe('create_vm: checks against the libvirt network', () => {
  test.each([
    ['IPv4', { net: manual(QUIET.name, '198.18.99.10', '198.18.99.1') }, '198.18.99.10'],
    ['IPv6 compressed', { net: manual(QUIET.name, 'fd00:99::10', 'fd00:99::1') }, 'fd00:99::10'],
    ['IPv6 expanded', { net: manual(QUIET.name, 'fd00:0099:0000:0000:0000:0000:0000:0010', 'fd00:0099:0000:0000:0000:0000:0000:0001') }, 'fd00:0099:0000:0000:0000:0000:0000:0010'],
  ])('%s address outside the network\'s subnets: a clear CloudError, nothing left behind', async (_label, networks, ip) => {
    const before = leftovers(PREFIX);
    const err = await cpiError(config, 'create_vm', ['agent-t-net', stemcell, {}, networks, [], {}]);
    expect(err.type).toMatch(/^Bosh::Clouds::(CloudError|VMCreationFailed)$/);
    expect(err.ok_to_retry).toBe(false);
    // names the BOSH network, the field, the director's spelling and the network's subnets
    expect(err.message).toContain('Invalid network "net"');
    expect(err.message).toContain(`"ip" is "${ip}"`);
    expect(err.message).toContain(`libvirt network "${QUIET.name}" has`);
    expect(err.message).toMatch(ip.includes(':') ? /fd00:71::\/64/ : /198\.18\.71\.0\/24/);
    expect(leftovers(PREFIX)).toEqual(before);
    expect(virsh('list', '--all', '--name').split('\n').filter((n) => n.startsWith(`${PREFIX}vm-`))).toEqual([]);
  });

  test('a libvirt network that does not exist is NetworkNotFound, nothing left behind', async () => {
    const before = leftovers(PREFIX);
    const err = await cpiError(config, 'create_vm', ['agent-t-net', stemcell, {}, { private: manual('t-net-missing', '198.18.71.20', '198.18.71.1') }, [], {}]);
    expect(err.type).toBe('Bosh::Clouds::NetworkNotFound');
    expect(err.message).toContain('"t-net-missing"');
    expect(err.message).toContain('"private"');
    expect(leftovers(PREFIX)).toEqual(before);
  });
});

describe('create_vm / delete_vm: DHCP reservations', () => {
  test('IPv4 by MAC and IPv6 by name appear after create_vm and disappear after delete_vm', async () => {
    const [vm, returned] = await createVm({
      v4: manual(DHCP.name, '198.18.72.10', '198.18.72.1', { nic_group: 'a', default: ['dns', 'gateway'] }),
      v6: manual(DHCP.name, 'fd00:0072:0000:0000:0000:0000:0000:0010', 'fd00:72::1', { nic_group: 'a' }),
    });
    let deleted = false;
    try {
      const mac = returned.v4!.mac as string;
      const hosts = dhcpHosts(DHCP.name);
      expect(hosts).toContainEqual(`<host mac='${mac}' ip='198.18.72.10'/>`);
      // libvirt's IPv6 <host> has no MAC: the VM's name identifies it
      expect(hosts).toContainEqual(`<host name='${vm}' ip='fd00:72::10'/>`);
      expect(hosts).toHaveLength(2);
      await cpi(config, 'delete_vm', [vm]);
      deleted = true;
      expect(dhcpHosts(DHCP.name)).toEqual([]);
    } finally {
      if (!deleted) await cpi(config, 'delete_vm', [vm]).catch(() => undefined);
    }
  });

  test('use_dhcp: the address is reserved, so DHCP hands the guest exactly that address', async () => {
    const [vm, returned] = await createVm({ net: manual(DHCP.name, '198.18.72.20', '198.18.72.1', { use_dhcp: true, default: ['dns', 'gateway'] }) });
    try {
      expect(dhcpHosts(DHCP.name)).toEqual([`<host mac='${returned.net!.mac as string}' ip='198.18.72.20'/>`]);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
    expect(dhcpHosts(DHCP.name)).toEqual([]);
  });

  test('a dynamic network gets no reservation', async () => {
    const [vm] = await createVm({ d: { type: 'dynamic', dns: [], cloud_properties: { name: DHCP.name }, default: ['dns', 'gateway'] } });
    try {
      expect(dhcpHosts(DHCP.name)).toEqual([]);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
    }
  });

  test('10 concurrent create_vm keep all 10 reservations; 10 concurrent delete_vm remove them all', { timeout: 900_000 }, async () => {
    const ips = Array.from({ length: 10 }, (_, i) => `198.18.73.${10 + i}`);
    const created = await Promise.allSettled(ips.map((ip) => createVm({ net: manual(MANY.name, ip, '198.18.73.1', { default: ['dns', 'gateway'] }) })));
    const vms = created.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      expect(created.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
      const hosts = dhcpHosts(MANY.name);
      expect(hosts).toHaveLength(10);
      for (const [, returned] of vms) {
        expect(hosts).toContainEqual(`<host mac='${returned.net!.mac as string}' ip='${returned.net!.ip as string}'/>`);
      }
      // dnsmasq got them too, not only the persistent definition
      const hostsfile = `/var/lib/libvirt/dnsmasq/${MANY.name}.hostsfile`;
      if (existsSync(hostsfile)) expect(readFileSync(hostsfile, 'utf8').trim().split('\n')).toHaveLength(10);
      expect(virsh('net-dumpxml', '--inactive', MANY.name).match(/<host /g)).toHaveLength(10);
    } finally {
      const deleted = await Promise.allSettled(vms.map(([vm]) => cpi(config, 'delete_vm', [vm])));
      expect(deleted.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    }
    expect(dhcpHosts(MANY.name)).toEqual([]);
    expect(virsh('net-dumpxml', '--inactive', MANY.name)).not.toMatch(/<host /);
    expect(leftovers(PREFIX).filter((n) => n.includes('vm-'))).toEqual([]);
  });
});

describe('router advertisement hardening', () => {
  const dnsmasqFor = (net: string) => spawnSync('pgrep', ['-af', 'dnsmasq'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(`/${net}.conf`));

  test('a quiet network (no DHCP, DNS off) runs no dnsmasq, so nothing sends RAs on its bridge', () => {
    expect(virsh('net-dumpxml', QUIET.name)).toContain("<dns enable='no'/>");
    expect(existsSync(`/var/lib/libvirt/dnsmasq/${QUIET.name}.conf`)).toBe(false);
    expect(dnsmasqFor(QUIET.name)).toEqual([]);
  });

  test('a DHCP network runs dnsmasq, and it advertises on the IPv6 subnet', () => {
    for (const net of [DHCP.name, MANY.name]) {
      const conf = readFileSync(`/var/lib/libvirt/dnsmasq/${net}.conf`, 'utf8');
      expect(conf).toMatch(/^(enable-ra|dhcp-range=.*ra-only.*)$/m);
      // libvirt's dnsmasq forks a helper for its lease script: one or two processes
      expect(dnsmasqFor(net).length).toBeGreaterThan(0);
    }
  });
});
