// A static address belongs to one VM per libvirt network, whichever director made it.
// Who holds an address is known twice on the host: the network's DHCP reservations
// (IPv4 by MAC, IPv6 by VM name) and the CPI's metadata in every VM it made (any
// prefix). create_vm asks both before it creates anything. A reservation whose VM is
// gone holds nothing (addReservation reclaims it), so a create_vm retried after a failed
// or half-cleaned one still gets its address.
import type { Host } from './host.js';
import { parseDomain, parseVmMetadata, type ParsedNetwork, type VmMetadata } from '../../xml/index.js';
import { sameIp, type NetworkPlan, type NicAddress } from '../../network/index.js';
import { ErrorCode, isLibvirtError } from '../../libvirt/index.js';
import { CloudError } from '../../rpc/errors.js';

/** The static addresses a plan puts on libvirt networks, as the VM's metadata records them. */
export function staticAddresses(plan: NetworkPlan): NonNullable<VmMetadata['addresses']> {
  const out: NonNullable<VmMetadata['addresses']> = [];
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    for (const addr of [nic.ipv4, nic.ipv6]) if (addr) out.push({ network: nic.source.network, ip: addr.address });
  }
  return out;
}

interface HostDomains {
  names: Set<string>;
  macOwner: Map<string, string>;
  claims: Array<{ network: string; ip: string; vm: string }>;
}

/** Refuses an address of the plan that a defined domain already holds on the same libvirt network. */
export async function refuseTakenAddresses(host: Host, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>): Promise<void> {
  const wanted: Array<{ addr: NicAddress; network: string }> = [];
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    for (const addr of [nic.ipv4, nic.ipv6]) if (addr) wanted.push({ addr, network: nic.source.network });
  }
  if (wanted.length === 0) return;
  const doms = await scanDomains(host);
  for (const { addr, network } of wanted) {
    const holder = holderOf(addr.address, network, nets.get(network)?.parsed, doms);
    if (holder) {
      throw new CloudError(`Invalid network "${addr.network}": ip ${addr.address} is already taken on libvirt network "${network}" by ${holder}; give this VM another address`);
    }
  }
}

function holderOf(ip: string, network: string, net: ParsedNetwork | undefined, doms: HostDomains): string | undefined {
  const claim = doms.claims.find((c) => c.network === network && sameIp(c.ip, ip));
  if (claim) return `VM ${claim.vm} (its bosh-libvirt-cpi metadata)`;
  for (const h of (net?.ips ?? []).flatMap((s) => s.hosts ?? [])) {
    if (!sameIp(h.ip, ip)) continue;
    const owner = h.mac ? doms.macOwner.get(h.mac.toLowerCase()) : h.name && doms.names.has(h.name) ? h.name : undefined;
    if (owner) return `domain ${owner} (DHCP reservation ${h.mac ? `for MAC ${h.mac}` : `named ${h.name}`})`;
  }
  return undefined;
}

/** Every defined domain's name, MACs and metadata claims: one listing and one XML each. */
async function scanDomains(host: Host): Promise<HostDomains> {
  const out: HostDomains = { names: new Set(), macOwner: new Map(), claims: [] };
  for (const dom of await host.conn.domains.listAll(0)) {
    let xml: string;
    try {
      xml = await host.conn.domains.getXMLDesc(dom, 0);
    } catch (e) {
      if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) continue; // undefined meanwhile: holds nothing
      throw e;
    }
    out.names.add(dom.name);
    for (const nic of parseDomain(xml).interfaces) if (nic.mac) out.macOwner.set(nic.mac.toLowerCase(), dom.name);
    let metadata: VmMetadata | undefined;
    try {
      metadata = parseVmMetadata(xml);
    } catch {
      continue; // not made by this CPI (or unreadable): its MACs above still count
    }
    for (const a of [...(metadata.addresses ?? []), ...metadata.reservations]) out.claims.push({ network: a.network, ip: a.ip, vm: dom.name });
  }
  return out;
}
