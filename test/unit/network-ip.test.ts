import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CloudError } from '../../src/errors.js';
import {
  expandIp,
  formatCidr,
  inSubnet,
  netmaskToPrefix,
  networkBase,
  parseIp,
  prefixToNetmask,
  sameIp,
  tryParseIp,
} from '../../src/network/ip.js';

const RUNS = { numRuns: 100 };

/** Eight random 16-bit groups. */
const ipv6Groups = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });
const expanded = (groups: number[]) => groups.map((g) => g.toString(16).padStart(4, '0')).join(':');
/** A naive compression: drop leading zeros only (still a valid IPv6 spelling). */
const unpadded = (groups: number[]) => groups.map((g) => g.toString(16)).join(':');
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));

describe('parseIp', () => {
  it('reads IPv4 and gives the dotted form back', () => {
    expect(parseIp('10.0.0.5')).toEqual({ family: 'ipv4', canonical: '10.0.0.5' });
  });

  it('reads IPv6 compressed and expanded (leading zeros) to the same RFC 5952 form', () => {
    const a = parseIp('2001:db8::1');
    const b = parseIp('2001:0db8:0000:0000:0000:0000:0000:0001');
    expect(a).toEqual({ family: 'ipv6', canonical: '2001:db8::1' });
    expect(b).toEqual(a);
    expect(parseIp('2001:DB8:0:0:1::').canonical).toBe('2001:db8:0:0:1::');
  });

  it.each(['010.0.0.1', '10.1', '0x0a.0.0.1', '1.2.3.256', ' 10.0.0.1', 'fe80::1%eth0', '1::2::3', '2001:00db8::1', '', 'x'])(
    'refuses %j with a CloudError naming the value',
    (s) => {
      expect(tryParseIp(s)).toBeUndefined();
      expect(() => parseIp(s)).toThrow(CloudError);
      expect(() => parseIp(s)).toThrow(JSON.stringify(s));
    },
  );

  it('refuses non-strings', () => {
    expect(tryParseIp(42)).toBeUndefined();
    expect(tryParseIp(null)).toBeUndefined();
  });

  it('property: expanded and compressed spellings of any IPv6 address parse to one canonical form', () => {
    fc.assert(
      fc.property(ipv6Groups, (groups) => {
        const long = parseIp(expanded(groups));
        const short = parseIp(unpadded(groups));
        const roundTrip = parseIp(long.canonical);
        expect(short).toEqual(long);
        expect(roundTrip).toEqual(long);
        expect(expandIp(long.canonical)).toBe(expanded(groups));
        expect(long.canonical).toBe(long.canonical.toLowerCase());
      }),
      RUNS,
    );
  });
});

describe('sameIp', () => {
  it('compares canonically across spellings and case', () => {
    expect(sameIp('2001:db8::1', '2001:0db8:0:0:0:0:0:1')).toBe(true);
    expect(sameIp('2001:DB8::A', '2001:db8::a')).toBe(true);
    expect(sameIp('2001:db8::1', '2001:db8::2')).toBe(false);
    expect(sameIp('10.0.0.1', '10.0.0.1')).toBe(true);
  });

  it('is false for an invalid operand and across families', () => {
    expect(sameIp('x', 'x')).toBe(false);
    expect(sameIp('::ffff:10.0.0.1', '10.0.0.1')).toBe(false);
  });
});

describe('netmaskToPrefix / prefixToNetmask', () => {
  it('reads IPv4 dotted and IPv6 masks in both spellings', () => {
    expect(netmaskToPrefix('255.255.255.0')).toBe(24);
    expect(netmaskToPrefix('255.255.255.255')).toBe(32);
    expect(netmaskToPrefix('0.0.0.0')).toBe(0);
    expect(netmaskToPrefix('ffff:ffff:ffff:ffff:0000:0000:0000:0000')).toBe(64);
    expect(netmaskToPrefix('ffff:ffff:ffff:ffff::')).toBe(64);
    expect(netmaskToPrefix('ffff:ffff:ffff:ffff:ffff:0000:0000:0000')).toBe(80);
  });

  it('refuses non-contiguous masks and non-addresses', () => {
    expect(() => netmaskToPrefix('255.0.255.0')).toThrow(/netmask.*"255\.0\.255\.0".*contiguous/);
    expect(() => netmaskToPrefix('ffff::ffff')).toThrow(CloudError);
    expect(() => netmaskToPrefix('24')).toThrow(CloudError);
  });

  it('writes IPv6 masks full length, as the director does', () => {
    expect(prefixToNetmask(24, 'ipv4')).toBe('255.255.255.0');
    expect(prefixToNetmask(64, 'ipv6')).toBe('ffff:ffff:ffff:ffff:0000:0000:0000:0000');
    expect(() => prefixToNetmask(33, 'ipv4')).toThrow(CloudError);
    expect(() => prefixToNetmask(-1, 'ipv6')).toThrow(CloudError);
  });

  it('property: prefix → netmask → prefix is the identity for both families', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 128 }), (p4, p6) => {
        expect(netmaskToPrefix(prefixToNetmask(p4, 'ipv4'))).toBe(p4);
        expect(netmaskToPrefix(prefixToNetmask(p6, 'ipv6'))).toBe(p6);
      }),
      RUNS,
    );
  });
});

describe('inSubnet / networkBase / formatCidr', () => {
  it('answers membership for both families and both spellings', () => {
    expect(inSubnet('192.168.1.5', '192.168.1.0', 24)).toBe(true);
    expect(inSubnet('10.0.0.1', '192.168.1.0', 24)).toBe(false);
    expect(inSubnet('2001:0db8:0000:0000:0000:0000:0000:0002', '2001:db8::', 64)).toBe(true);
    expect(inSubnet('2001:db8:0:1::2', '2001:db8::', 64)).toBe(false);
    expect(inSubnet('10.0.0.1', '2001:db8::', 64)).toBe(false);
  });

  it('finds the base of a prefix', () => {
    expect(networkBase('10.0.1.17', 28)).toBe('10.0.1.16');
    expect(networkBase('2001:0db8:0000:0000:0001:0000:0000:0005', 80)).toBe('2001:db8:0:0:1::');
    expect(networkBase('10.0.0.9', 32)).toBe('10.0.0.9');
  });

  it('formats canonical CIDRs', () => {
    expect(formatCidr('2001:0db8:0000:0000:0000:0000:0000:0000', 64)).toBe('2001:db8::/64');
    expect(formatCidr('10.0.0.0', 8)).toBe('10.0.0.0/8');
    expect(() => formatCidr('10.0.0.0', 40)).toThrow(CloudError);
  });

  it('property: an address is in the subnet its base and prefix describe, and the base is idempotent', () => {
    fc.assert(
      fc.property(ipv4, fc.integer({ min: 0, max: 32 }), ipv6Groups, fc.integer({ min: 0, max: 128 }), (a4, p4, g6, p6) => {
        const a6 = expanded(g6);
        const b4 = networkBase(a4, p4);
        const b6 = networkBase(a6, p6);
        expect(inSubnet(a4, b4, p4)).toBe(true);
        expect(inSubnet(a6, b6, p6)).toBe(true);
        expect(networkBase(b4, p4)).toBe(b4);
        expect(networkBase(b6, p6)).toBe(b6);
      }),
      RUNS,
    );
  });
});
