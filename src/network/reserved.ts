// Addresses of a subnet that no VM may take: the subnet's own address and, for IPv4,
// its broadcast address (RFC 919/922), the IPv6 subnet-router anycast address (the
// all-zeros host, RFC 4291 2.6.1), and whatever the network itself uses (the gateway,
// the host's address on the bridge). Point-to-point lengths (/31, /32, /127, /128) have
// no such addresses (RFC 3021, RFC 6164).
import ipaddr from 'ipaddr.js';
import { formatCidr, inSubnet, networkBase, parseIp, sameIp } from './ip.js';

export interface TakenByNetwork {
  ip: string;
  /** how the message names it, e.g. "the gateway" */
  what: string;
}

/** Why `ip` cannot be a VM's own address in `subnet`, or undefined when it can. */
export function reservedAddressReason(ip: string, subnet: { address: string; prefix: number }, taken: TakenByNetwork[] = []): string | undefined {
  const hit = taken.find((t) => sameIp(t.ip, ip));
  if (hit) return hit.what;
  if (!inSubnet(ip, subnet.address, subnet.prefix)) return undefined;
  const { family, canonical } = parseIp(ip);
  const cidr = formatCidr(networkBase(subnet.address, subnet.prefix), subnet.prefix);
  if (family === 'ipv4' && subnet.prefix <= 30) {
    if (canonical === networkBase(subnet.address, subnet.prefix)) return `the network address of ${cidr}`;
    if (canonical === ipaddr.IPv4.broadcastAddressFromCIDR(`${subnet.address}/${subnet.prefix}`).toString()) return `the broadcast address of ${cidr}`;
  }
  if (family === 'ipv6' && subnet.prefix <= 126 && canonical === networkBase(subnet.address, subnet.prefix)) {
    return `the subnet-router anycast address of ${cidr}`;
  }
  return undefined;
}
