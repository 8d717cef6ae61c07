// Isolated networks: never a <forward>; DHCP hosts per family as libvirt accepts them;
// router advertisements suppressed only where libvirt 9.0 can (see src/xml/network.ts).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as specs from '../../fixtures/xml/specs.js';
import { parseNetwork, renderDhcpHost, renderNetwork, XmlParseError, XmlRenderError } from '../../src/xml/index.js';
import type { DhcpHostSpec, NetworkSpec } from '../../src/xml/index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/xml');

const expectedIps = (n: NetworkSpec) =>
  n.ips.map((ip) => ({ family: ip.family, address: ip.address, prefix: ip.prefix, hasDhcp: ip.dhcp !== undefined, hosts: ip.dhcp?.hosts ?? [] }));

describe('renderNetwork', () => {
  it('round-trips the dual-stack network, with no <forward> and a bridge without STP delay', () => {
    const xml = renderNetwork(specs.dualStackNetwork);
    expect(xml).not.toContain('<forward');
    expect(xml).toContain('<bridge name="t-xml-br0" stp="on" delay="0"/>');
    expect(xml).toContain('<route family="ipv6" address="fd00:40:0:100::" prefix="64" gateway="fd00:40::10"/>');
    const parsed = parseNetwork(xml);
    expect(parsed).toEqual({ name: 't-xml-net', bridge: 't-xml-br0', ips: expectedIps(specs.dualStackNetwork) });
  });

  it('marks networks with an IPv6 address ipv6="yes" unless told otherwise', () => {
    expect(renderNetwork(specs.dualStackNetwork)).toMatch(/^<network ipv6="yes">/);
    expect(renderNetwork({ ...specs.dualStackNetwork, ipv6: false })).toMatch(/^<network>/);
    expect(renderNetwork({ ...specs.dualStackNetwork, ips: [specs.dualStackNetwork.ips[0]!] })).toMatch(/^<network>/);
  });

  it('suppresses router advertisements by keeping dnsmasq off: no DHCP anywhere, DNS disabled', () => {
    const xml = renderNetwork(specs.quietNetwork);
    expect(xml).toContain('<dns enable="no"/>');
    expect(xml).not.toContain('<dhcp');
  });

  it('refuses RA suppression where libvirt would advertise anyway (any DHCP on the network)', () => {
    expect(() => renderNetwork({ ...specs.dualStackNetwork, ipv6RouterAdvertisements: false })).toThrow(/router advertisements/);
    const dhcpv4Only: NetworkSpec = {
      ...specs.quietNetwork,
      ips: [{ ...specs.quietNetwork.ips[0]!, dhcp: { ranges: [{ start: '198.18.41.10', end: '198.18.41.20' }] } }, specs.quietNetwork.ips[1]!],
    };
    expect(() => renderNetwork(dhcpv4Only)).toThrow(XmlRenderError);
  });

  it('refuses a second DHCP block in one family and IPv4 hosts without a MAC', () => {
    const v4 = specs.dualStackNetwork.ips[0]!;
    expect(() => renderNetwork({ ...specs.dualStackNetwork, ips: [v4, { ...v4, address: '198.18.42.1' }] })).toThrow(/one <ip> per family/);
    expect(() => renderNetwork({ ...specs.dualStackNetwork, ips: [{ ...v4, dhcp: { ranges: [], hosts: [{ ip: '198.18.40.5' }] } }] })).toThrow(/MAC/);
    expect(() => renderNetwork({ ...specs.dualStackNetwork, ips: [{ ...v4, prefix: 33 }] })).toThrow(/prefix/);
  });

  it('property: arbitrary network names either round-trip or are refused', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (name) => {
        let xml: string;
        try {
          xml = renderNetwork({ ...specs.dualStackNetwork, name });
        } catch (e) {
          expect(e).toBeInstanceOf(XmlRenderError);
          return;
        }
        expect(parseNetwork(xml).name).toBe(name);
      }),
    );
  });
});

describe('renderDhcpHost', () => {
  it('IPv4 hosts are mac + ip (+ name)', () => {
    expect(renderDhcpHost(specs.dhcpHosts['dhcp-host-ipv4']!)).toBe('<host mac="52:54:00:0a:00:03" name="vm-3" ip="198.18.40.12"/>\n');
  });

  it('IPv6 hosts are name or DUID + ip, never a mac', () => {
    expect(renderDhcpHost(specs.dhcpHosts['dhcp-host-ipv6-name']!)).toBe('<host name="vm-3" ip="fd00:40::12"/>\n');
    expect(renderDhcpHost(specs.dhcpHosts['dhcp-host-ipv6-id']!)).toBe('<host id="0:3:0:1:52:54:0:a:0:3" ip="fd00:40::13"/>\n');
    const withMac = { family: 'ipv6', ip: 'fd00::1', name: 'n', mac: '52:54:00:00:00:01' } as unknown as DhcpHostSpec;
    expect(renderDhcpHost(withMac)).not.toContain('mac=');
    expect(() => renderDhcpHost({ family: 'ipv6', ip: 'fd00::1' })).toThrow(/DUID or a name/);
  });
});

describe('parseNetwork', () => {
  it('reads libvirt net-dumpxml output', () => {
    const parsed = parseNetwork(readFileSync(join(FIXTURES, 'libvirt-network-dual-stack.dumpxml.xml'), 'utf8'));
    expect(parsed).toEqual({ name: 't-xml-net', bridge: 't-xml-br0', ips: expectedIps(specs.dualStackNetwork) });
  });

  it('reads netmasks, the implicit IPv4 family, forward modes and empty DHCP blocks', () => {
    const xml = `<network connections='2'>
      <name>default</name><uuid>x</uuid>
      <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
      <bridge name='virbr0' stp='on' delay='0'/>
      <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp/></ip>
      <ip family='ipv6' address='2001:db8::1' prefix='64'/>
    </network>`;
    expect(parseNetwork(xml)).toEqual({
      name: 'default',
      bridge: 'virbr0',
      forwardMode: 'nat',
      ips: [
        { family: 'ipv4', address: '192.168.122.1', prefix: 24, hasDhcp: false, hosts: [] },
        { family: 'ipv6', address: '2001:db8::1', prefix: 64, hasDhcp: false, hosts: [] },
      ],
    });
    expect(parseNetwork('<network><name>n</name><forward/></network>').forwardMode).toBe('nat');
    expect(parseNetwork(`<network><name>n</name><ip address='10.1.2.3'/></network>`).ips[0]?.prefix).toBe(8);
    expect(() => parseNetwork(`<network><name>n</name><ip address='10.0.0.1' netmask='255.0.255.0'/></network>`)).toThrow(XmlParseError);
  });
});
