// Whether address blocks meet: a static address's netmask and a delegated prefix against
// the libvirt network's own subnets, and blocks against what other VMs hold. Pure.
import ipaddr from 'ipaddr.js';
import { formatCidr, inSubnet, networkBase, prefixToNetmask, type IpFamily } from './ip.js';

export interface Block {
  address: string;
  prefix: number;
}

/** Whether two blocks share any address (one holds the other); false across families. */
export function overlaps(a: Block, b: Block): boolean {
  return inSubnet(a.address, b.address, Math.min(a.prefix, b.prefix));
}

/** Whether the block shares an address with the range start–end (inclusive); false across families or for bad input. */
export function meetsRange(block: Block, start: string, end: string): boolean {
  const [b, lo, hi] = [block.address, start, end].map(toNumber);
  if (b === undefined || lo === undefined || hi === undefined || b.family !== lo.family || b.family !== hi.family) return false;
  const bits = b.family === 'ipv4' ? 32 : 128;
  const size = 1n << BigInt(bits - block.prefix);
  const first = (b.value / size) * size;
  return first <= hi.value && lo.value <= first + size - 1n;
}

function toNumber(ip: string): { family: IpFamily; value: bigint } | undefined {
  if (!ipaddr.isValid(ip)) return undefined;
  const addr = ipaddr.parse(ip);
  const value = addr.toByteArray().reduce((n, byte) => (n << 8n) | BigInt(byte), 0n);
  return { family: addr.kind() === 'ipv4' ? 'ipv4' : 'ipv6', value };
}

/** One `<ip>` of a libvirt network: the host's own address on it and the subnet's length. */
export interface SubnetOfNetwork {
  family: IpFamily;
  address: string;
  prefix: number;
}

export function subnetCidr(s: Block): string {
  return formatCidr(networkBase(s.address, s.prefix), s.prefix);
}

/**
 * How a static address's netmask (as a prefix length) disagrees with the network's subnet
 * that holds the address; undefined when it agrees or no subnet holds the address (that is
 * refused on its own). Worded to follow `field "netmask" is "…" but `.
 */
export function netmaskMismatch(ip: string, maskPrefix: number, family: IpFamily, subnets: SubnetOfNetwork[]): string | undefined {
  const holding = subnets.filter((s) => s.family === family && inSubnet(ip, s.address, s.prefix));
  if (holding.length === 0 || holding.some((s) => s.prefix === maskPrefix)) return undefined;
  const s = holding[0]!;
  return `ip ${ip} lies in the subnet ${subnetCidr(s)} (/${s.prefix}), not in a /${maskPrefix}; the netmask must be ${prefixToNetmask(s.prefix, family)} (/${s.prefix}), so that the VM and the network agree on what is on-link`;
}

/**
 * Why a delegated prefix cannot be given out on a network with these subnets, or
 * undefined. A prefix lies either outside every subnet (routed to the VM) or inside one
 * and longer than it (on-link); it never is or covers a subnet, and an on-link one never
 * holds an address in use: the host's own, one of `inUse` (the VM's own, its gateway), or
 * one the network's DHCP may lease (`ranges`).
 */
export function prefixAgainstSubnets(
  p: Block & { family: IpFamily },
  subnets: SubnetOfNetwork[],
  inUse: Array<{ ip: string; what: string }> = [],
  ranges: Array<{ family: IpFamily; start: string; end: string }> = [],
): string | undefined {
  for (const s of subnets) {
    if (s.family !== p.family) continue;
    const subnet = subnetCidr(s);
    if (p.prefix <= s.prefix && inSubnet(s.address, p.address, p.prefix)) {
      return `${p.prefix === s.prefix ? 'is' : 'covers'} the network's own subnet ${subnet} (the host's address, every VM on it, its DHCP range); a delegated prefix must lie outside the network's subnets (routed to the VM) or inside one and be longer than /${s.prefix} (on-link)`;
    }
    if (!overlaps(p, s)) continue;
    for (const u of [{ ip: s.address, what: `the host's own address on the network` }, ...inUse]) {
      if (inSubnet(u.ip, p.address, p.prefix)) return `holds ${u.ip}, ${u.what}; an on-link delegated prefix must not hold an address in use`;
    }
  }
  const range = ranges.find((r) => r.family === p.family && meetsRange(p, r.start, r.end));
  if (range) return `overlaps the network's DHCP range ${range.start}-${range.end}, whose addresses dnsmasq leases to other guests; an on-link delegated prefix must lie outside it`;
  return undefined;
}
