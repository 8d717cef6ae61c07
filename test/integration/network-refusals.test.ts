// create_vm against qemu:///system refuses network settings the libvirt network cannot
// honour, naming both sides, before anything exists: a netmask other than the subnet's
// (a /16 for an address on a /24), a delegated prefix that is (or covers) the network's
// own subnet or holds the host's address. And a delegated prefix is held like an address:
// recorded in the VM's metadata, no later VM gets an address inside it, and no prefix is
// given over an address or prefix another VM holds. The tiny stemcell never boots.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';

const PREFIX = 't-nref-';
const NET = { name: 't-nref-n187', bridge: 't-nref-br187', third: 187 };
// with DHCP (range 198.18.188.100-200): only for the prefix-meets-the-range refusal
const DHCP = { name: 't-nref-d188', bridge: 't-nref-br188', third: 188 };
const V6_MASK = 'ffff:ffff:ffff:ffff:0000:0000:0000:0000';

let config = '';
let stemcell = '';

type Networks = Record<string, Record<string, unknown>>;
const v4 = (ip: string, extra: Record<string, unknown> = {}) => ({ type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.187.1', dns: [], default: ['dns', 'gateway'], cloud_properties: { name: NET.name }, ...extra });
const v6 = (ip: string, extra: Record<string, unknown> = {}) => ({ type: 'manual', ip, netmask: V6_MASK, gateway: 'fd00:187::1', dns: [], cloud_properties: { name: NET.name }, ...extra });
const pd = (ip: string, prefix: string) => ({ type: 'manual', ip, prefix, nic_group: 'g', cloud_properties: { name: NET.name } });

async function createVm(networks: Networks): Promise<string> {
  const [vm] = (await cpi(config, 'create_vm', ['agent-t-nref', stemcell, {}, networks, [], {}])) as [string];
  return vm;
}
const refusal = (networks: Networks) => cpiError(config, 'create_vm', ['agent-t-nref', stemcell, {}, networks, [], {}]);
/** Everything of this prefix but the shared stemcell: what a refused create_vm must leave as it was. */
const vmsAndVolumes = () => leftovers(PREFIX).filter((n) => !n.startsWith(stemcell));

beforeAll(async () => {
  requireBundle();
  requireDaemon();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET.name, NET.bridge, NET.third);
  defineIsolatedNetwork(DHCP.name, DHCP.bridge, DHCP.third, { dhcp: true });
  config = testConfig({ prefix: PREFIX, network: NET.name }).path;
  stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(), {}])) as string;
}, 120_000);

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET.name);
  removeNetwork(DHCP.name);
});

describe('a static address\'s netmask must be its libvirt subnet\'s', () => {
  it.each([
    ['IPv4 /16 on the /24', { a: v4('198.18.187.10', { netmask: '255.255.0.0' }) }, /^Invalid network "a": field "netmask" is "255\.255\.0\.0" but on libvirt network "t-nref-n187" ip 198\.18\.187\.10 lies in the subnet 198\.18\.187\.0\/24 \(\/24\), not in a \/16; the netmask must be 255\.255\.255\.0 \(\/24\)/],
    ['IPv4 /25 on the /24', { a: v4('198.18.187.10', { netmask: '255.255.255.128' }) }, /field "netmask" is "255\.255\.255\.128" .* not in a \/25; the netmask must be 255\.255\.255\.0/],
    ['IPv6 /48 on the /64', { a: v4('198.18.187.10'), b: v6('fd00:187::10', { netmask: 'ffff:ffff:ffff::' }) }, /^Invalid network "b": field "netmask" is "ffff:ffff:ffff::" .* fd00:187::\/64 .* must be ffff:ffff:ffff:ffff:0000:0000:0000:0000 \(\/64\)/],
  ])('%s is refused, naming both, and nothing is created', async (_label, networks, message) => {
    const before = vmsAndVolumes();
    const err = await refusal(networks);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toMatch(message);
    expect(vmsAndVolumes()).toEqual(before);
  }, 60_000);
});

describe('a delegated prefix must stay clear of the network\'s own subnet', () => {
  it.each([
    ['equal to the IPv6 subnet', pd('fd00:187::', '64'), /delegated prefix fd00:187::\/64 \(ip "fd00:187::", prefix "64"\) on libvirt network "t-nref-n187" is the network's own subnet fd00:187::\/64/],
    ['covering it', pd('fd00:187::', '48'), /delegated prefix fd00:187::\/48 .* covers the network's own subnet fd00:187::\/64/],
    ['on-link but holding the host\'s address', pd('fd00:187::', '96'), /delegated prefix fd00:187::\/96 .* holds fd00:187::1, the host's own address/],
  ])('%s is refused', async (_label, prefix, message) => {
    const before = vmsAndVolumes();
    const err = await refusal({ a: v6('fd00:187::30', { nic_group: 'g', default: ['dns', 'gateway'] }), p: prefix });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toMatch(/^Invalid network "p": /);
    expect(err.message).toMatch(message);
    expect(vmsAndVolumes()).toEqual(before);
  }, 60_000);
});

describe('an on-link delegated prefix must stay clear of the network\'s DHCP range', () => {
  it('is refused when it meets the range dnsmasq leases from', async () => {
    const on = { cloud_properties: { name: DHCP.name } };
    const err = await refusal({
      a: { type: 'manual', ip: '198.18.188.10', netmask: '255.255.255.0', gateway: '198.18.188.1', dns: [], default: ['dns', 'gateway'], nic_group: 'g', ...on },
      p: { type: 'manual', ip: '198.18.188.192', prefix: '28', nic_group: 'g', ...on },
    });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toBe(
      `Invalid network "p": delegated prefix 198.18.188.192/28 (ip "198.18.188.192", prefix "28") on libvirt network "${DHCP.name}" overlaps the network's DHCP range 198.18.188.100-198.18.188.200, whose addresses dnsmasq leases to other guests; an on-link delegated prefix must lie outside it`,
    );
  }, 60_000);
});

describe('a delegated prefix is held like an address', () => {
  let holder = '';

  it('is recorded in the VM\'s metadata (on-link prefixes too)', async () => {
    holder = await createVm({ a: v6('fd00:187::10', { nic_group: 'g', default: ['dns', 'gateway'] }), p: pd('fd00:187:0:0:5::', '80') });
    expect(domainXml(holder)).toMatch(/<bosh:address network="t-nref-n187" ip="fd00:187:0:0:5::" prefix="80"\/>/);
  }, 120_000);

  it('a later static address inside it is refused, naming the holder', async () => {
    const err = await refusal({ a: v6('fd00:187:0:0:5::7', { default: ['dns', 'gateway'] }) });
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toBe(`Invalid network "a": ip fd00:187::5:0:0:7 lies in the delegated prefix fd00:187:0:0:5::/80 that VM ${holder} holds on "t-nref-n187" (its bosh-libvirt-cpi metadata); give this VM an address outside it`);
  }, 60_000);

  it('a later prefix over a held address or inside a held prefix is refused', async () => {
    const overAddress = await refusal({ a: v6('fd00:187::20', { nic_group: 'g', default: ['dns', 'gateway'] }), p: pd('fd00:187::10', '124') });
    expect(overAddress.message).toBe(`Invalid network "p": delegated prefix fd00:187::10/124 overlaps ip fd00:187::10, which VM ${holder} holds on "t-nref-n187" (its bosh-libvirt-cpi metadata); give this VM a prefix no other VM uses`);
    const inPrefix = await refusal({ a: v6('fd00:187::21', { nic_group: 'g', default: ['dns', 'gateway'] }), p: pd('fd00:187:0:0:5:1::', '96') });
    expect(inPrefix.message).toMatch(/^Invalid network "p": delegated prefix fd00:187::5:1:0:0\/96 overlaps the delegated prefix fd00:187:0:0:5::\/80, which VM t-nref-vm-/);
  }, 60_000);

  it('is free again once its VM is deleted', async () => {
    await cpi(config, 'delete_vm', [holder]);
    const vm = await createVm({ a: v6('fd00:187:0:0:5::7', { default: ['dns', 'gateway'] }) });
    await cpi(config, 'delete_vm', [vm]);
    expect(vmsAndVolumes()).toEqual([]);
  }, 120_000);
});
