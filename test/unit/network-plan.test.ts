import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CloudError } from '../../src/errors.js';
import { MAX_NICS, type NetworkDefaults, planNetworks } from '../../src/network/index.js';
import { expandIp, parseIp } from '../../src/network/ip.js';
import { checkMac, randomQemuMac } from '../../src/network/mac.js';

const RUNS = { numRuns: 60 };
const defaults: NetworkDefaults = { name: 'default', model: 'virtio' };

/** Deterministic MACs 52:54:00:00:00:01, :02, … */
function seqMacs(start = 1): () => string {
  let n = start;
  return () => `52:54:00:00:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n++ & 0xff).toString(16).padStart(2, '0')}`;
}
const plan = (networks: unknown, d: NetworkDefaults = defaults) => planNetworks(networks, d, { macGenerator: seqMacs() });

const v4 = (ip = '10.0.0.5', extra: Record<string, unknown> = {}) => ({
  type: 'manual',
  ip,
  netmask: '255.255.255.0',
  prefix: '32',
  gateway: '10.0.0.1',
  dns: ['10.0.0.2'],
  cloud_properties: {},
  ...extra,
});
const v6 = (ip = '2001:db8::5', extra: Record<string, unknown> = {}) => ({
  type: 'manual',
  ip,
  netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000',
  prefix: '128',
  gateway: '2001:db8::1',
  dns: ['2001:db8::2'],
  cloud_properties: {},
  ...extra,
});

/** The CloudError message planNetworks throws for `networks`. */
function errorOf(networks: unknown, d: NetworkDefaults = defaults): string {
  try {
    plan(networks, d);
  } catch (e) {
    expect(e).toBeInstanceOf(CloudError);
    return (e as Error).message;
  }
  throw new Error('expected planNetworks to throw');
}

describe('planNetworks: one manual network', () => {
  it('gives it one NIC on the default libvirt network with a generated lowercase MAC', () => {
    const p = plan({ private: v4() });
    expect(p.nics).toEqual([
      {
        index: 0,
        mac: '52:54:00:00:00:01',
        model: 'virtio',
        source: { kind: 'network', network: 'default' },
        networkNames: ['private'],
        dhcp: false,
        ipv4: { address: '10.0.0.5', prefix: 24, gateway: '10.0.0.1', network: 'private' },
        prefixes: [],
      },
    ]);
    expect(p.agentNetworks).toEqual({ private: { ...v4(), mac: '52:54:00:00:00:01' } });
  });

  it('uses cloud_properties name, bridge and model over the defaults', () => {
    const p = plan({
      a: v4('10.0.0.5', { cloud_properties: { name: 'other', model: 'e1000' } }),
      b: v4('10.1.0.5', { gateway: '10.1.0.1', cloud_properties: { bridge: 'br0' } }),
    });
    expect(p.nics.map((n) => [n.source, n.model])).toEqual([
      [{ kind: 'network', network: 'other' }, 'e1000'],
      [{ kind: 'bridge', bridge: 'br0' }, 'virtio'],
    ]);
  });

  it('falls back to the configured bridge when no libvirt network is configured', () => {
    const p = plan({ a: v4() }, { bridge: 'br1', model: 'virtio' });
    expect(p.nics[0]?.source).toEqual({ kind: 'bridge', bridge: 'br1' });
  });

  it('takes a single address with only prefix "32" (no netmask) as a /32', () => {
    const p = plan({ a: { type: 'manual', ip: '10.0.0.5', prefix: 32 } });
    expect(p.nics[0]?.ipv4).toEqual({ address: '10.0.0.5', prefix: 32, network: 'a' });
  });

  it('accepts old-director input without prefix, and nulls for absent fields', () => {
    const p = plan({ a: { type: 'manual', ip: '10.0.0.5', netmask: '255.255.0.0', gateway: null, dns: null, cloud_properties: null } });
    expect(p.nics[0]?.ipv4).toEqual({ address: '10.0.0.5', prefix: 16, network: 'a' });
  });

  it('keeps unknown keys and does not mutate the input', () => {
    const input = { a: v4('10.0.0.5', { routes: [{ destination: '0.0.0.0' }], alias: 'eth0:1', resolved: false, future_key: { x: 1 } }) };
    const copy = structuredClone(input);
    const p = plan(input);
    expect(input).toEqual(copy);
    expect(p.agentNetworks.a).toMatchObject({ routes: [{ destination: '0.0.0.0' }], alias: 'eth0:1', resolved: false, future_key: { x: 1 } });
    expect(p.agentNetworks.a).not.toBe(input.a);
  });
});

describe('planNetworks: without nic_group, one NIC per network (dual-homed)', () => {
  it('gives one IPv4 and one IPv6 manual network on the same libvirt network a NIC each: no BOSH agent takes two networks on one NIC unasked', () => {
    const p = plan({ v4: v4(), v6: v6() });
    expect(p.nics.map((n) => n.networkNames)).toEqual([['v4'], ['v6']]);
    const [a, b] = p.nics;
    expect(a!.ipv4?.address).toBe('10.0.0.5');
    expect(a!.ipv6).toBeUndefined();
    expect(b!.ipv6).toEqual({ address: '2001:db8::5', prefix: 64, gateway: '2001:db8::1', network: 'v6' });
    expect(b!.ipv4).toBeUndefined();
    expect(a!.mac).not.toBe(b!.mac);
    expect(p.agentNetworks.v4?.mac).toBe(a!.mac);
    expect(p.agentNetworks.v6?.mac).toBe(b!.mac);
  });

  it('keeps networks on different libvirt networks on separate NICs', () => {
    const p = plan({ v4: v4(), v6: v6('2001:db8::5', { cloud_properties: { name: 'v6net' } }) });
    expect(p.nics.map((n) => n.networkNames)).toEqual([['v4'], ['v6']]);
    expect(p.nics[0]?.mac).not.toBe(p.nics[1]?.mac);
  });

  it('gives a second IPv4 network its own NIC too', () => {
    const p = plan({ a: v4('10.0.0.5'), b: v4('10.0.0.6'), c: v6() });
    expect(p.nics.map((n) => n.networkNames)).toEqual([['a'], ['b'], ['c']]);
  });

  it('refuses two networks without nic_group asking for the same MAC (sharing a NIC takes a nic_group)', () => {
    expect(() => plan({ a: v4('10.0.0.5', { mac: '52:54:00:00:00:a1' }), b: v6('2001:db8::5', { mac: '52:54:00:00:00:a1' }) })).toThrow(/52:54:00:00:00:a1/);
  });
});

describe('planNetworks: nic_group', () => {
  it('puts the networks of one nic_group on one NIC, other networks on their own', () => {
    const p = plan({
      a: v4('10.0.0.5', { nic_group: 'g' }),
      other: v4('10.0.0.7'),
      b: v6('2001:db8::5', { nic_group: 'g' }),
    });
    expect(p.nics.map((n) => n.networkNames)).toEqual([['a', 'b'], ['other']]);
    expect(p.agentNetworks.a?.mac).toBe(p.agentNetworks.b?.mac);
    expect(p.agentNetworks.other?.mac).not.toBe(p.agentNetworks.a?.mac);
  });

  it('treats nic_group 1 and "1" as the same group', () => {
    const p = plan({ a: v4('10.0.0.5', { nic_group: 1 }), b: v6('2001:db8::5', { nic_group: '1' }) });
    expect(p.nics).toHaveLength(1);
  });

  it('refuses two IPv4 addresses in one group, naming both networks', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { nic_group: 'g' }), b: v4('10.0.0.6', { nic_group: 'g' }) });
    expect(msg).toBe(
      'Invalid network "b": field "ip" is "10.0.0.6" but must not be a second IPv4 address in nic_group "g": network "a" already has 10.0.0.5, and a NIC group holds at most one IPv4 address',
    );
  });

  it('refuses two IPv6 prefixes in one group', () => {
    const msg = errorOf({
      a: v6('2001:db8::5', { nic_group: 'g' }),
      p1: v6('2001:db8:0:0:1::', { nic_group: 'g', prefix: '80' }),
      p2: v6('2001:db8:0:0:2::', { nic_group: 'g', prefix: '80' }),
    });
    expect(msg).toMatch(/^Invalid network "p2": field "prefix" is "80" but must not be a second IPv6 delegated prefix in nic_group "g": network "p1" already has 2001:db8:0:0:1::\/80/);
  });

  it('refuses networks of one group on different libvirt networks', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { nic_group: 'g' }), b: v6('2001:db8::5', { nic_group: 'g', cloud_properties: { name: 'elsewhere' } }) });
    expect(msg).toBe(
      'Invalid network "b": field "cloud_properties" is {"name":"elsewhere"} but must select the same libvirt network "default" as network "a" in nic_group "g", not libvirt network "elsewhere": the networks of a NIC group share one NIC',
    );
  });

  it('refuses networks of one group with different NIC models', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { nic_group: 'g' }), b: v6('2001:db8::5', { nic_group: 'g', cloud_properties: { model: 'e1000' } }) });
    expect(msg).toMatch(/^Invalid network "b": field "cloud_properties.model" is "e1000" but must be "virtio" like network "a"/);
  });

  it('refuses two dynamic networks in one group', () => {
    const msg = errorOf({ a: { type: 'dynamic', nic_group: 'g' }, b: { type: 'dynamic', nic_group: 'g' } });
    expect(msg).toMatch(/^Invalid network "b": field "type" is "dynamic" but must not be a second dynamic network in nic_group "g"/);
  });
});

describe('planNetworks: delegated prefixes', () => {
  const prefixed = {
    addr: v6('2001:db8::5', { nic_group: 'g' }),
    pd: { type: 'manual', ip: '2001:db8:0:0:1::', prefix: '80', netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', nic_group: 'g', cloud_properties: {} },
    pd4: { type: 'manual', ip: '10.0.1.16', prefix: 28, netmask: '255.255.255.0', gateway: '10.0.1.1', nic_group: 'g', cloud_properties: {} },
  };

  it('attaches IPv4 and IPv6 prefixes to the NIC of their group, not as addresses', () => {
    const p = plan(prefixed);
    expect(p.nics).toHaveLength(1);
    const nic = p.nics[0]!;
    expect(nic.ipv6?.address).toBe('2001:db8::5');
    expect(nic.ipv4).toBeUndefined();
    expect(nic.prefixes).toEqual([
      { family: 'ipv6', address: '2001:db8:0:0:1::', prefix: 80, network: 'pd' },
      { family: 'ipv4', address: '10.0.1.16', prefix: 28, network: 'pd4' },
    ]);
  });

  it('gives prefix networks no mac (so the agent leaves them alone) unless use_dhcp is set', () => {
    const p = plan({ ...prefixed, pd4: { ...prefixed.pd4, use_dhcp: true }, pd: { ...prefixed.pd, mac: '52:54:00:aa:bb:cc' } });
    const mac = p.nics[0]!.mac;
    expect(mac).toBe('52:54:00:aa:bb:cc');
    expect(p.agentNetworks.pd).not.toHaveProperty('mac');
    expect(p.agentNetworks.pd4?.mac).toBe(mac);
    expect(p.agentNetworks.addr?.mac).toBe(mac);
    expect(p.nics[0]!.dhcp).toBe(true);
  });

  it('refuses a group with only a prefix: a prefix network can only be a secondary network', () => {
    const msg = errorOf({ a: v4(), pd: prefixed.pd });
    expect(msg).toContain('a prefix network can only be a secondary network');
    expect(msg).toMatch(/^Invalid network "pd": field "nic_group" is "g"/);
  });

  it('refuses a prefix without nic_group when no address NIC is there to carry it', () => {
    const { nic_group: _, ...alone } = prefixed.pd;
    const msg = errorOf({ pd: alone });
    expect(msg).toMatch(/^Invalid network "pd": field "prefix" is "80" but a prefix network can only be a secondary network/);
  });

  it('lets a prefix without nic_group join the address NIC of its family on the same libvirt network, wherever it is listed', () => {
    const { nic_group: _, ...pd } = prefixed.pd;
    const p = plan({ pd, a: v4(), b: v6() });
    expect(p.nics).toHaveLength(2);
    expect(p.nics.map((n) => n.networkNames)).toEqual([['a'], ['pd', 'b']]);
    expect(p.nics[1]?.prefixes.map((x) => x.network)).toEqual(['pd']);
  });

  it('prefers, for a prefix without nic_group, the NIC that has an address of its family', () => {
    const { nic_group: _, ...pd } = prefixed.pd;
    const p = plan({ a: v4('10.0.0.5'), b: v4('10.0.0.6'), c: v6('2001:db8::5'), pd });
    expect(p.nics.map((n) => n.networkNames)).toEqual([['a'], ['b'], ['c', 'pd']]);
  });

  it('lets a prefix without nic_group ride on an address NIC of the other family when there is no better one', () => {
    const { nic_group: _, ...pd4 } = prefixed.pd4;
    const p = plan({ b: v6(), pd4 });
    expect(p.nics[0]?.prefixes).toEqual([{ family: 'ipv4', address: '10.0.1.16', prefix: 28, network: 'pd4' }]);
  });

  it('allows a prefix as secondary to a dynamic network', () => {
    const p = plan({ d: { type: 'dynamic', nic_group: 'g', cloud_properties: {} }, pd: prefixed.pd });
    expect(p.nics[0]).toMatchObject({ dhcp: true, networkNames: ['d', 'pd'] });
  });

  it('requires the ip of a prefix to be its base address', () => {
    const msg = errorOf({ addr: prefixed.addr, pd: { ...prefixed.pd, ip: '2001:db8:0:0:1::7' } });
    expect(msg).toBe(
      'Invalid network "pd": field "ip" is "2001:db8:0:0:1::7" but must be the base address of its delegated prefix (2001:db8:0:0:1::/80), because prefix "80" marks a delegated prefix',
    );
  });

  it('refuses prefix 0', () => {
    expect(errorOf({ a: v4(), z: { type: 'manual', ip: '0.0.0.0', prefix: '0' } })).toMatch(/^Invalid network "z": field "prefix" is "0"/);
  });
});

describe('planNetworks: netmask and prefix', () => {
  it('reports the subnet length sent as prefix, with a hint', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { prefix: '24' }) });
    expect(msg).toContain('Invalid network "a": field "ip" is "10.0.0.5" but must be the base address of its delegated prefix (10.0.0.0/24)');
    expect(msg).toContain('a single address has prefix 32');
  });

  it('refuses a netmask of the other family', () => {
    expect(errorOf({ a: v4('10.0.0.5', { netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000' }) })).toBe(
      'Invalid network "a": field "netmask" is "ffff:ffff:ffff:ffff:0000:0000:0000:0000" but must be an IPv4 netmask, like the ip "10.0.0.5"',
    );
    expect(errorOf({ a: v6('2001:db8::5', { netmask: '255.255.255.0' }) })).toMatch(/field "netmask" is "255.255.255.0" but must be an IPv6 netmask/);
  });

  it('refuses a prefix beyond the family of the ip', () => {
    expect(errorOf({ a: v4('10.0.0.5', { prefix: '128' }) })).toMatch(/^Invalid network "a": field "prefix" is "128" but must be at most 32 for the IPv4 ip "10.0.0.5"/);
  });

  it('reads prefix 32 on an IPv6 ip as a delegated /32, not a single address', () => {
    const p = plan({ a: v4(), b: { type: 'manual', ip: '2001:db8::', prefix: '32', nic_group: 'x' }, c: v6('2001:db9::5', { nic_group: 'x', gateway: '2001:db9::1' }) });
    expect(p.nics.find((n) => n.networkNames.includes('b'))?.prefixes).toEqual([{ family: 'ipv6', address: '2001:db8::', prefix: 32, network: 'b' }]);
  });

  it('refuses non-contiguous netmasks', () => {
    expect(errorOf({ a: v4('10.0.0.5', { netmask: '255.0.255.0' }) })).toMatch(/field "netmask" is "255.0.255.0" but must be a contiguous netmask/);
  });

  it('requires a netmask or prefix on a manual network', () => {
    expect(errorOf({ a: { type: 'manual', ip: '10.0.0.5' } })).toBe('Invalid network "a": field "netmask" is missing but must be set (or prefix) for a manual network');
  });
});

describe('planNetworks: gateway and dns', () => {
  it('refuses a gateway outside the subnet of a single address', () => {
    expect(errorOf({ private: v4('192.168.1.5', { gateway: '10.0.0.1' }) })).toBe(
      'Invalid network "private": field "gateway" is "10.0.0.1" but must be inside 192.168.1.0/24 (the network of ip 192.168.1.5 with netmask 255.255.255.0)',
    );
  });

  it('refuses a gateway of the other family', () => {
    expect(errorOf({ a: v4('10.0.0.5', { gateway: '2001:db8::1' }) })).toMatch(/field "gateway" is "2001:db8::1" but must be an IPv4 address/);
  });

  it('compares gateway and subnet across IPv6 spellings', () => {
    const p = plan({ a: v6('2001:0db8:0000:0000:0000:0000:0000:0005', { gateway: '2001:db8::1' }) });
    expect(p.nics[0]?.ipv6).toMatchObject({ address: '2001:db8::5', gateway: '2001:db8::1' });
  });

  it('refuses dns entries that are not IPs, naming the entry', () => {
    expect(errorOf({ a: v4('10.0.0.5', { dns: ['10.0.0.2', 'dns.example.com'] }) })).toMatch(
      /^Invalid network "a": field "dns\[1\]" is "dns.example.com" but must be an IPv4 address/,
    );
  });
});

describe('planNetworks: duplicate IPs', () => {
  it('refuses the same IPv6 address in two spellings', () => {
    const msg = errorOf({ a: v6('2001:db8::1', { gateway: '2001:db8::ff' }), b: v6('2001:0db8:0:0:0:0:0:1', { gateway: '2001:db8::ff', cloud_properties: { name: 'n2' } }) });
    expect(msg).toBe('Invalid network "b": field "ip" is "2001:0db8:0:0:0:0:0:1" but must differ from the ip of network "a" ("2001:db8::1"): both are 2001:db8::1');
  });

  it('refuses a vip equal to a manual address', () => {
    expect(errorOf({ a: v4(), pub: { type: 'vip', ip: '10.0.0.5', cloud_properties: {} } })).toMatch(/^Invalid network "pub": field "ip" is "10.0.0.5" but must differ/);
  });
});

describe('planNetworks: dynamic and vip', () => {
  it('gives a dynamic network a DHCP NIC and a manual one a static NIC', () => {
    const p = plan({ dyn: { type: 'dynamic', dns: ['8.8.8.8'], default: ['dns', 'gateway'], cloud_properties: {} }, man: v4() });
    expect(p.nics.map((n) => [n.networkNames, n.dhcp])).toEqual([
      [['dyn'], true],
      [['man'], false],
    ]);
    expect(p.nics[0]?.ipv4).toBeUndefined();
    expect(p.agentNetworks.dyn).toEqual({ type: 'dynamic', dns: ['8.8.8.8'], default: ['dns', 'gateway'], cloud_properties: {}, mac: p.nics[0]?.mac });
  });

  it('marks a manual network with use_dhcp as DHCP but keeps its address for a reservation', () => {
    const p = plan({ a: v4('10.0.0.5', { use_dhcp: true }) });
    expect(p.nics[0]).toMatchObject({ dhcp: true, ipv4: { address: '10.0.0.5' } });
  });

  it('gives a vip no NIC and passes it through unchanged, without mac', () => {
    const vip = { type: 'vip', ip: '203.0.113.10', cloud_properties: { whatever: 1 }, prefix: '32' };
    const p = plan({ a: v4(), pub: vip });
    expect(p.nics).toHaveLength(1);
    expect(p.nics[0]?.networkNames).toEqual(['a']);
    expect(p.agentNetworks.pub).toEqual(vip);
  });

  it('refuses a vip ip that is not an address', () => {
    expect(errorOf({ pub: { type: 'vip', ip: 'public' } })).toMatch(/^Invalid network "pub": field "ip" is "public"/);
  });
});

describe('planNetworks: MACs', () => {
  it('honours a MAC the director sent, lowercased, in NIC and agent settings', () => {
    const p = plan({ a: v4('10.0.0.5', { mac: '52:54:00:AB:CD:EF' }), b: v4('10.0.0.6') });
    expect(p.nics.map((n) => n.mac)).toEqual(['52:54:00:ab:cd:ef', '52:54:00:00:00:01']);
    expect(p.agentNetworks.a?.mac).toBe('52:54:00:ab:cd:ef');
  });

  it('skips generated MACs that are already in use', () => {
    const p = plan({ a: v4('10.0.0.5', { mac: '52:54:00:00:00:01' }), b: v4('10.0.0.6') });
    expect(p.nics.map((n) => n.mac)).toEqual(['52:54:00:00:00:01', '52:54:00:00:00:02']);
  });

  it.each([
    ['52-54-00-ab-cd-ef', 'be six colon-separated hex pairs'],
    ['01:00:5e:00:00:01', 'be a unicast MAC'],
    ['00:1a:2b:3c:4d:5e', 'start with the QEMU prefix 52:54:00 or be locally administered'],
  ])('refuses mac %s', (mac, rule) => {
    expect(errorOf({ a: v4('10.0.0.5', { mac }) })).toBe(`Invalid network "a": field "mac" is "${mac}" but must ${checkMacRule(mac)}`);
    expect(errorOf({ a: v4('10.0.0.5', { mac }) })).toContain(rule);
  });

  it('accepts a locally administered MAC outside the QEMU OUI', () => {
    expect(plan({ a: v4('10.0.0.5', { mac: '02:00:00:00:00:01' }) }).nics[0]?.mac).toBe('02:00:00:00:00:01');
  });

  it('refuses the same MAC on two NICs', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { mac: '52:54:00:00:00:09' }), b: v4('10.0.0.6', { mac: '52:54:00:00:00:09' }) });
    expect(msg).toBe('Invalid network "b": field "mac" is "52:54:00:00:00:09" but must be unique in the VM, but network "a" on another NIC has the same MAC');
  });

  it('refuses different MACs within one NIC group', () => {
    const msg = errorOf({ a: v4('10.0.0.5', { nic_group: 'g', mac: '52:54:00:00:00:09' }), b: v6('2001:db8::5', { nic_group: 'g', mac: '52:54:00:00:00:0a' }) });
    expect(msg).toMatch(/^Invalid network "b": field "mac" is "52:54:00:00:00:0a" but must equal 52:54:00:00:00:09, the mac of network "a"/);
  });

  it('does not auto-pair networks whose MACs differ', () => {
    const p = plan({ a: v4('10.0.0.5', { mac: '52:54:00:00:00:09' }), b: v6('2001:db8::5', { mac: '52:54:00:00:00:0a' }) });
    expect(p.nics).toHaveLength(2);
  });

  it('rejects a generator that returns an unusable MAC, and one that never returns a free MAC', () => {
    expect(() => planNetworks({ a: v4() }, defaults, { macGenerator: () => 'nope' })).toThrow(/MAC generator returned "nope" for the NIC of network "a"/);
    expect(() => planNetworks({ a: v4('10.0.0.5'), b: v4('10.0.0.6') }, defaults, { macGenerator: () => '52:54:00:00:00:01' })).toThrow(
      /Could not find a free MAC for the NIC of network "b"/,
    );
  });

  it('generates QEMU MACs by default', () => {
    const p = planNetworks({ a: v4(), b: v4('10.0.0.6') }, defaults);
    for (const nic of p.nics) expect(nic.mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(randomQemuMac()).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
  });

  it('property: MACs are lowercase, well formed, QEMU or locally administered, and unique per VM', () => {
    // A tiny MAC space forces collisions, so uniqueness is really exercised.
    const genMac = fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3 })).map(([qemu, n]) => (qemu ? `52:54:00:00:00:0${n}` : `02:AA:00:00:00:0${n}`));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.option(genMac, { nil: undefined }), { minLength: 6, maxLength: 6 }), (count, given) => {
        const networks: Record<string, unknown> = {};
        for (let i = 0; i < count; i++) networks[`n${i}`] = v4(`10.0.0.${i + 10}`, given[i] === undefined ? {} : { mac: given[i] });
        let p;
        try {
          p = plan(networks);
        } catch (e) {
          // Only a repeated director MAC may fail the plan.
          expect((e as Error).message).toMatch(/field "mac" .* must be unique in the VM/);
          const sent = given.slice(0, count).filter((m): m is string => m !== undefined).map((m) => m.toLowerCase());
          expect(new Set(sent).size).toBeLessThan(sent.length);
          return;
        }
        const macs = p.nics.map((n) => n.mac);
        expect(new Set(macs).size).toBe(macs.length);
        for (const mac of macs) {
          expect(mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
          expect(checkMac(mac)).toEqual({ ok: true, mac });
        }
        for (const [name, net] of Object.entries(p.agentNetworks)) {
          expect(macs).toContain(net.mac);
          const sent = (networks[name] as { mac?: string }).mac;
          if (sent !== undefined) expect(net.mac).toBe(sent.toLowerCase());
        }
      }),
      RUNS,
    );
  });
});

function checkMacRule(mac: string): string {
  const c = checkMac(mac);
  if (c.ok) throw new Error(`${mac} unexpectedly valid`);
  return c.rule;
}

describe('planNetworks: limits and shape', () => {
  it(`refuses more than ${MAX_NICS} NICs`, () => {
    const networks = Object.fromEntries(Array.from({ length: MAX_NICS + 1 }, (_, i) => [`n${i}`, v4(`10.0.0.${i + 10}`)]));
    expect(errorOf(networks)).toMatch(new RegExp(`^Invalid networks: they need ${MAX_NICS + 1} NICs .* but a VM gets at most ${MAX_NICS}$`));
    const ok = Object.fromEntries(Array.from({ length: MAX_NICS }, (_, i) => [`n${i}`, v4(`10.0.0.${i + 10}`)]));
    expect(plan(ok).nics).toHaveLength(MAX_NICS);
  });

  it('refuses absurd numbers of networks before looking at them', () => {
    const networks = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`n${i}`, { type: 'vip' }]));
    expect(errorOf(networks)).toMatch(/^Invalid networks: 1000 networks given but a VM can have at most 64/);
  });

  it.each([null, [], 'x', 3])('refuses networks = %j', (networks) => {
    expect(errorOf(networks)).toMatch(/^Invalid networks: got .*, expected an object mapping each BOSH network name to its settings$/);
  });

  it('accepts an empty networks object as no NICs', () => {
    expect(plan({})).toEqual({ nics: [], agentNetworks: {} });
  });

  it('keeps a network named __proto__ as data', () => {
    const networks = JSON.parse('{"__proto__": {"type":"manual","ip":"10.0.0.5","netmask":"255.255.255.0"}}');
    const p = plan(networks);
    expect(Object.keys(p.agentNetworks)).toEqual(['__proto__']);
    expect(p.nics[0]?.networkNames).toEqual(['__proto__']);
  });

  it('is deterministic and orders NICs as the networks are listed', () => {
    const networks = { z: v4('10.0.0.9', { cloud_properties: { name: 'b' } }), a: { type: 'dynamic' }, m: v6() };
    const one = plan(networks);
    expect(plan(networks)).toEqual(one);
    expect(one.nics.map((n) => [n.index, n.networkNames])).toEqual([
      [0, ['z']],
      [1, ['a']],
      [2, ['m']],
    ]);
    expect(Object.keys(one.agentNetworks)).toEqual(['z', 'a', 'm']);
  });
});

describe('planNetworks: every error names network, field and value', () => {
  it.each<[string, Record<string, unknown>, string, string]>([
    ['missing type', { cloud_properties: {} }, 'type', 'is missing but must be one of "manual", "dynamic", "vip"'],
    ['unknown type', { type: 'static' }, 'type', 'is "static" but must be one of "manual", "dynamic", "vip"'],
    ['manual without ip', { type: 'manual', netmask: '255.255.255.0' }, 'ip', 'is missing but must be set for a manual network'],
    ['ip not an address', { type: 'manual', ip: '10.0.0', netmask: '255.255.255.0' }, 'ip', 'is "10.0.0" but must be an IPv4 address'],
    ['prefix not a number', { type: 'manual', ip: '10.0.0.5', prefix: 'x' }, 'prefix', 'is "x" but must be a prefix length'],
    ['dns not a list', { type: 'manual', ip: '10.0.0.5', prefix: '32', dns: '8.8.8.8' }, 'dns', 'is "8.8.8.8" but must be a list of IP addresses'],
    ['bad use_dhcp', { type: 'dynamic', use_dhcp: 'yes' }, 'use_dhcp', 'is "yes" but must be true or false'],
    ['bad model', { type: 'dynamic', cloud_properties: { model: 'vir tio' } }, 'cloud_properties.model', 'is "vir tio" but must be a NIC model name'],
    ['slash in name', { type: 'dynamic', cloud_properties: { name: 'a/b' } }, 'cloud_properties.name', 'is "a/b" but must name a libvirt network without slashes'],
    ['name and bridge', { type: 'dynamic', cloud_properties: { name: 'n', bridge: 'b' } }, 'cloud_properties', 'must set only one of name'],
  ])('%s', (_label, settings, field, rest) => {
    const msg = errorOf({ mynet: settings });
    expect(msg).toContain(`Invalid network "mynet": field "${field}" `);
    expect(msg).toContain(rest);
  });

  it('says which setting to add when neither cloud_properties nor the config name a network', () => {
    expect(errorOf({ a: { type: 'dynamic' } }, { model: 'virtio' })).toBe(
      'Invalid network "a": field "cloud_properties.name" is missing but must name a libvirt network (or cloud_properties.bridge a host bridge), because the CPI config sets no default network.name or network.bridge',
    );
    expect(errorOf({ a: { type: 'dynamic' } }, { name: 'n', bridge: 'b', model: 'virtio' })).toMatch(/because the CPI config's network defaults set both name "n" and bridge "b"/);
  });

  it('refuses settings that are not an object', () => {
    expect(errorOf({ a: 'manual' })).toMatch(/^Invalid network "a": its settings are "manual" but must be an object/);
  });
});

describe('planNetworks: IPv6 spelling does not matter', () => {
  const groups = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 4, maxLength: 4 });
  const compressedOrExpanded = (canonical: string, expand: boolean) => (expand ? expandIp(canonical) : canonical);

  it('property: expanded vs compressed input yields the same NICs, and agentNetworks keep each input spelling', () => {
    fc.assert(
      fc.property(groups, fc.integer({ min: 2, max: 0xfffe }), fc.boolean(), fc.boolean(), fc.boolean(), (net, host, e1, e2, e3) => {
        // A /64 from random upper groups, the VM's address, its gateway and a /80 prefix in it.
        const addr = `${net.map((g) => g.toString(16)).join(':')}::${host.toString(16)}`;
        const gw = `${net.map((g) => g.toString(16)).join(':')}::1`;
        const pd = `${net.map((g) => g.toString(16)).join(':')}:1::`;
        const build = (ea: boolean, eg: boolean, ep: boolean) => ({
          v4: v4(),
          v6: {
            type: 'manual',
            ip: compressedOrExpanded(addr, ea),
            netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000',
            prefix: '128',
            gateway: compressedOrExpanded(gw, eg),
            dns: [compressedOrExpanded(gw, eg)],
            cloud_properties: {},
          },
          pd: { type: 'manual', ip: compressedOrExpanded(pd, ep), prefix: '80', cloud_properties: {} },
        });
        const compressed = plan(build(false, false, false));
        const input = build(e1, e2, e3);
        const mixed = plan(input);
        expect(mixed.nics).toEqual(compressed.nics);
        // v4 and v6 on a NIC each (no nic_group); the prefix rides on the IPv6 one
        expect(mixed.nics).toHaveLength(2);
        expect(mixed.nics[1]?.ipv6).toMatchObject({ address: parseIp(addr).canonical, gateway: parseIp(gw).canonical });
        expect(mixed.nics[1]?.prefixes).toEqual([{ family: 'ipv6', address: parseIp(pd).canonical, prefix: 80, network: 'pd' }]);
        expect(mixed.agentNetworks.v6?.ip).toBe(input.v6.ip);
        expect(mixed.agentNetworks.v6?.gateway).toBe(input.v6.gateway);
        expect(mixed.agentNetworks.v6?.dns).toEqual(input.v6.dns);
        expect(mixed.agentNetworks.pd?.ip).toBe(input.pd.ip);
        expect(mixed.agentNetworks.pd).not.toHaveProperty('mac');
      }),
      RUNS,
    );
  });
});
