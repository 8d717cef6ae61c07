// The pure rules behind create_vm's checks against a libvirt network: a static address's
// netmask must be its subnet's, and a delegated prefix must neither be nor cover one of
// the network's subnets, nor (on-link) hold an address in use; blocks overlap when one
// holds the other. And the metadata that records a held prefix reads back the same.
import { describe, expect, it } from 'vitest';
import { meetsRange, netmaskMismatch, overlaps, prefixAgainstSubnets, type SubnetOfNetwork } from '../../src/network/index.js';
import { parseVmMetadata, renderVmMetadata, type VmMetadata } from '../../src/xml/index.js';

const SUBNETS: SubnetOfNetwork[] = [
  { family: 'ipv4', address: '198.18.250.1', prefix: 24 },
  { family: 'ipv6', address: 'fd00:250::1', prefix: 64 },
];

describe('overlaps', () => {
  it('is true when one block holds the other, false for neighbours and across families', () => {
    expect(overlaps({ address: 'fd00:250::', prefix: 64 }, { address: 'fd00:250:0:0:5::', prefix: 80 })).toBe(true);
    expect(overlaps({ address: 'fd00:250:0:0:5::', prefix: 80 }, { address: 'fd00:250::', prefix: 64 })).toBe(true);
    expect(overlaps({ address: 'fd00:250:0:0:5::7', prefix: 128 }, { address: 'fd00:250:0:0:5::', prefix: 80 })).toBe(true);
    expect(overlaps({ address: 'fd00:250:0:0:6::', prefix: 80 }, { address: 'fd00:250:0:0:5::', prefix: 80 })).toBe(false);
    expect(overlaps({ address: '10.0.0.0', prefix: 8 }, { address: '::a00:0', prefix: 104 })).toBe(false);
  });
});

describe('meetsRange', () => {
  it('is true when the block shares an address with the range, at either end', () => {
    expect(meetsRange({ address: '198.18.250.96', prefix: 28 }, '198.18.250.100', '198.18.250.200')).toBe(true);
    expect(meetsRange({ address: '198.18.250.192', prefix: 28 }, '198.18.250.100', '198.18.250.200')).toBe(true);
    expect(meetsRange({ address: '198.18.250.208', prefix: 28 }, '198.18.250.100', '198.18.250.200')).toBe(false);
    expect(meetsRange({ address: '198.18.250.80', prefix: 28 }, '198.18.250.100', '198.18.250.200')).toBe(false);
    expect(meetsRange({ address: 'fd00:250::100', prefix: 120 }, 'fd00:250::100', 'fd00:250::1ff')).toBe(true);
    expect(meetsRange({ address: 'fd00:250::100', prefix: 120 }, '198.18.250.100', '198.18.250.200')).toBe(false);
  });
});

describe('netmaskMismatch', () => {
  it('refuses a /16 for an address on a /24 network, naming the subnet and the right netmask', () => {
    expect(netmaskMismatch('198.18.250.10', 16, 'ipv4', SUBNETS)).toBe(
      'ip 198.18.250.10 lies in the subnet 198.18.250.0/24 (/24), not in a /16; the netmask must be 255.255.255.0 (/24), so that the VM and the network agree on what is on-link',
    );
    expect(netmaskMismatch('198.18.250.10', 25, 'ipv4', SUBNETS)).toMatch(/must be 255\.255\.255\.0 \(\/24\)/);
    expect(netmaskMismatch('fd00:250::10', 48, 'ipv6', SUBNETS)).toMatch(/fd00:250::\/64 .* must be ffff:ffff:ffff:ffff:0000:0000:0000:0000 \(\/64\)/);
  });

  it('accepts the subnet\'s own netmask, and leaves an address in no subnet to its own check', () => {
    expect(netmaskMismatch('198.18.250.10', 24, 'ipv4', SUBNETS)).toBeUndefined();
    expect(netmaskMismatch('fd00:250::10', 64, 'ipv6', SUBNETS)).toBeUndefined();
    expect(netmaskMismatch('10.0.0.5', 16, 'ipv4', SUBNETS)).toBeUndefined();
  });
});

describe('prefixAgainstSubnets', () => {
  it('refuses a prefix that is the network\'s own subnet, or covers it', () => {
    expect(prefixAgainstSubnets({ family: 'ipv6', address: 'fd00:250::', prefix: 64 }, SUBNETS)).toMatch(/^is the network's own subnet fd00:250::\/64 /);
    expect(prefixAgainstSubnets({ family: 'ipv6', address: 'fd00:250::', prefix: 48 }, SUBNETS)).toMatch(/^covers the network's own subnet fd00:250::\/64 /);
    expect(prefixAgainstSubnets({ family: 'ipv4', address: '198.18.250.0', prefix: 24 }, SUBNETS)).toMatch(/^is the network's own subnet 198\.18\.250\.0\/24 /);
  });

  it('refuses an on-link prefix holding the host\'s address or one in use', () => {
    expect(prefixAgainstSubnets({ family: 'ipv6', address: 'fd00:250::', prefix: 80 }, SUBNETS)).toBe(
      "holds fd00:250::1, the host's own address on the network; an on-link delegated prefix must not hold an address in use",
    );
    expect(prefixAgainstSubnets({ family: 'ipv4', address: '198.18.250.16', prefix: 28 }, SUBNETS, [{ ip: '198.18.250.20', what: "this VM's own address" }])).toMatch(/^holds 198\.18\.250\.20, this VM's own address/);
  });

  it('refuses an on-link prefix that meets the network\'s DHCP range', () => {
    const ranges = [{ family: 'ipv4' as const, start: '198.18.250.100', end: '198.18.250.200' }];
    expect(prefixAgainstSubnets({ family: 'ipv4', address: '198.18.250.192', prefix: 28 }, SUBNETS, [], ranges)).toBe(
      "overlaps the network's DHCP range 198.18.250.100-198.18.250.200, whose addresses dnsmasq leases to other guests; an on-link delegated prefix must lie outside it",
    );
    expect(prefixAgainstSubnets({ family: 'ipv4', address: '198.18.250.208', prefix: 28 }, SUBNETS, [], ranges)).toBeUndefined();
  });

  it('accepts an on-link prefix inside a subnet and a routed one outside every subnet', () => {
    expect(prefixAgainstSubnets({ family: 'ipv6', address: 'fd00:250:0:0:5::', prefix: 80 }, SUBNETS, [{ ip: 'fd00:250::10', what: 'x' }])).toBeUndefined();
    expect(prefixAgainstSubnets({ family: 'ipv6', address: 'fd00:2500:1::', prefix: 80 }, SUBNETS)).toBeUndefined();
    expect(prefixAgainstSubnets({ family: 'ipv4', address: '198.19.250.16', prefix: 28 }, SUBNETS)).toBeUndefined();
  });
});

describe('VM metadata', () => {
  it('records a held prefix in <bosh:addresses> and reads it back', () => {
    const m: VmMetadata = {
      agentId: 'a', stemcellCid: 'sc', volumes: [], disks: [], macs: [], prefixes: [], reservations: [], tags: {},
      addresses: [{ network: 'n', ip: 'fd00:250::10' }, { network: 'n', ip: 'fd00:250:0:0:5::', prefix: 80 }],
    };
    const xml = renderVmMetadata(m);
    expect(xml).toContain('<address network="n" ip="fd00:250:0:0:5::" prefix="80"/>');
    expect(parseVmMetadata(xml)).toEqual(m);
  });
});
