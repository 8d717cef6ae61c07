// IP address helpers shared by the planner and the driver. Directors send IPv6 both
// compressed (`2001:db8::1`, since 2024) and expanded with leading zeros
// (`2001:0db8:0000:0000:0000:0000:0000:0001`, what older directors demanded), so
// nothing here may depend on the spelling: everything compares canonical forms.
import ipaddr from 'ipaddr.js';
import { badInput } from '../errors.js';

export type IpFamily = 'ipv4' | 'ipv6';

export interface ParsedIp {
  family: IpFamily;
  /** dotted decimal for IPv4, RFC 5952 (lowercase, compressed) for IPv6 */
  canonical: string;
}

/** Parse an IPv4 or IPv6 address in any accepted spelling; throws a CloudError otherwise. */
export function parseIp(s: unknown): ParsedIp {
  const addr = toAddress(s);
  if (addr === undefined) throw badInput('IP address', s, 'an IPv4 address (a.b.c.d) or an IPv6 address (compressed or expanded)');
  return { family: addr.kind(), canonical: canonicalOf(addr) };
}

/** Like parseIp, but undefined instead of an error (for callers that word their own error). */
export function tryParseIp(s: unknown): ParsedIp | undefined {
  const addr = toAddress(s);
  return addr === undefined ? undefined : { family: addr.kind(), canonical: canonicalOf(addr) };
}

/** True when both are valid addresses of the same family denoting the same address. */
export function sameIp(a: unknown, b: unknown): boolean {
  const pa = tryParseIp(a);
  const pb = tryParseIp(b);
  return pa !== undefined && pb !== undefined && pa.family === pb.family && pa.canonical === pb.canonical;
}

/**
 * Prefix length of a netmask: IPv4 dotted (`255.255.255.0`) or IPv6 in either spelling
 * (`ffff:ffff:ffff:ffff:0000:0000:0000:0000` or `ffff:ffff:ffff:ffff::`).
 * Throws a CloudError for anything that is not a contiguous mask.
 */
export function netmaskToPrefix(mask: unknown): number {
  const addr = toAddress(mask);
  const prefix = addr?.prefixLengthFromSubnetMask() ?? null;
  if (prefix === null) {
    throw badInput('netmask', mask, 'a contiguous netmask such as 255.255.255.0 or ffff:ffff:ffff:ffff:0000:0000:0000:0000');
  }
  return prefix;
}

/** The netmask of a prefix length, spelled as the director spells it (IPv6 full length). */
export function prefixToNetmask(prefix: number, family: IpFamily): string {
  checkPrefix(prefix, family);
  if (family === 'ipv4') return ipaddr.IPv4.subnetMaskFromPrefixLength(prefix).toString();
  return fixedLength(ipaddr.IPv6.subnetMaskFromPrefixLength(prefix));
}

/** The full-length spelling: IPv4 unchanged, IPv6 as eight 4-digit groups with leading zeros. */
export function expandIp(s: string): string {
  const addr = toAddress(s);
  if (addr === undefined) throw badInput('IP address', s, 'an IPv4 or IPv6 address');
  return addr.kind() === 'ipv4' ? addr.toString() : fixedLength(addr as ipaddr.IPv6);
}

/** Whether `ip` lies in `base/prefix`; false when the families differ or either is not an IP. */
export function inSubnet(ip: string, base: string, prefix: number): boolean {
  const a = toAddress(ip);
  const b = toAddress(base);
  if (a === undefined || b === undefined || a.kind() !== b.kind()) return false;
  checkPrefix(prefix, a.kind());
  // match() needs both operands of one class; the kinds were compared above.
  return (a as ipaddr.IPv4).match(b as ipaddr.IPv4, prefix);
}

/** The first address of the prefix that holds `ip`, canonical. */
export function networkBase(ip: string, prefix: number): string {
  const addr = toAddress(ip);
  if (addr === undefined) throw badInput('IP address', ip, 'an IPv4 or IPv6 address');
  checkPrefix(prefix, addr.kind());
  const cidr = `${addr.toString()}/${prefix}`;
  const base = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return canonicalOf(base);
}

/** `address/prefix` with the address canonical. */
export function formatCidr(ip: string, prefix: number): string {
  const { family, canonical } = parseIp(ip);
  checkPrefix(prefix, family);
  return `${canonical}/${prefix}`;
}

/** Largest prefix length of a family. */
export function maxPrefix(family: IpFamily): number {
  return family === 'ipv4' ? 32 : 128;
}

// ipaddr.parse is deliberately lax for IPv4 ("10.1", "0x0a.0.0.1", and "010.0.0.1" read as
// octal 8.0.0.1); a BOSH manifest never means those, so IPv4 must be four plain decimal
// parts. IPv6 zone ids ("fe80::1%eth0") name a host interface and mean nothing in a VM's
// settings, so they are refused too.
function toAddress(s: unknown): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > 64) return undefined;
  if (s.includes(':')) {
    if (s.includes('%') || !ipaddr.IPv6.isValid(s)) return undefined;
    return ipaddr.IPv6.parse(s);
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(s)) return undefined;
  return ipaddr.IPv4.parse(s);
}

function canonicalOf(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  return addr.kind() === 'ipv4' ? addr.toString() : (addr as ipaddr.IPv6).toRFC5952String();
}

function fixedLength(addr: ipaddr.IPv6): string {
  return addr.parts.map((p) => p.toString(16).padStart(4, '0')).join(':');
}

function checkPrefix(prefix: number, family: IpFamily): void {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix(family)) {
    throw badInput(`${family} prefix length`, prefix, `a whole number from 0 to ${maxPrefix(family)}`);
  }
}
