// A static address belongs to one VM per libvirt network, whichever director made it.
// Who holds an address is known twice on the host: the network's DHCP reservations
// (IPv4 by MAC, IPv6 by VM name) and the CPI's metadata in every VM it made (any
// prefix). create_vm asks both before it creates anything. A reservation whose VM is
// gone holds nothing (addReservation reclaims it), so a create_vm retried after a failed
// or half-cleaned one still gets its address.
//
// Two create_vm calls for one address must not both get it, and on a subnet without DHCP
// nothing on the network can be claimed atomically. So each call checks and defines its
// domain under one lock per storage pool (ADDRESS_LOCK): whichever defines first is seen
// by the other's check. Reading other domains alone cannot settle it: the call that
// defines first may check before the other has defined, see nothing and go on, whatever
// order the two would agree on afterwards.
import type { Host } from './host.js';
import { lockVolumeName, withVolumeLock } from './lock.js';
import { parseDomain, parseVmMetadata, type ParsedNetwork, type VmMetadata } from '../../xml/index.js';
import { sameIp, type NetworkPlan, type NicAddress } from '../../network/index.js';
import { ErrorCode, isLibvirtError } from '../../libvirt/index.js';
import { CloudError } from '../../errors.js';
import { parseFence } from './fence.js';

/** Each address a plan puts on a libvirt network, with that network's name. */
function networkAddresses(plan: NetworkPlan): Array<{ addr: NicAddress; network: string }> {
  const out: Array<{ addr: NicAddress; network: string }> = [];
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    for (const addr of [nic.ipv4, nic.ipv6]) if (addr) out.push({ addr, network: nic.source.network });
  }
  return out;
}

/** The static addresses a plan puts on libvirt networks, as the VM's metadata records them. */
export function staticAddresses(plan: NetworkPlan): NonNullable<VmMetadata['addresses']> {
  return networkAddresses(plan).map(({ addr, network }) => ({ network, ip: addr.address }));
}

interface Claim {
  network: string;
  ip: string;
  vm: string;
  /** when the claimant's create_vm began, while it still runs (its creation mark) */
  creatingAt?: string;
}

/**
 * The lock create_vm holds from its last address check until its domain is defined. It
 * lives in the CPI's storage pool and is named alike for every director (no name prefix),
 * so all CPIs that share the pool take the same one; `orphans` lists it when its holder died.
 */
const ADDRESS_LOCK = 'bosh-libvirt-cpi-addresses';
export const ADDRESS_LOCK_VOLUME = lockVolumeName(ADDRESS_LOCK);

interface HostDomains {
  names: Set<string>;
  macOwner: Map<string, string>;
  claims: Claim[];
}

/**
 * Refuses an address of the plan that a defined domain already holds on the same libvirt
 * network. `self` is the VM of a create_vm that has defined its domain: its own claims do
 * not count.
 */
export async function refuseTakenAddresses(host: Host, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>, self?: string): Promise<void> {
  const wanted = networkAddresses(plan);
  if (wanted.length === 0) return;
  const doms = await scanDomains(host);
  for (const { addr, network } of wanted) {
    const holder = holderOf(addr.address, network, nets.get(network)?.parsed, doms, self);
    if (holder) {
      throw new CloudError(`Invalid network "${addr.network}": ip ${addr.address} is already taken on libvirt network "${network}" by ${holder}; give this VM another address`);
    }
  }
}

/**
 * Defines the VM's domain (`define`) under ADDRESS_LOCK after checking its static addresses
 * once more, then checks again from outside the lock. The second check matters only for a
 * call from a CPI with another storage pool (another lock) that defined a domain for the same
 * address meanwhile: both see each other's domain, or the later one sees the earlier, and
 * whoever sees another gives way, so never two VMs get one address (both may give way; a
 * retry then gets it). A plan without static addresses on libvirt networks takes no lock.
 */
export async function defineHoldingAddresses<T>(host: Host, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>, vm: string, define: () => Promise<T>): Promise<T> {
  if (networkAddresses(plan).length === 0) return define();
  const defined = await withVolumeLock(host, ADDRESS_LOCK, async () => {
    await refuseTakenAddresses(host, plan, nets);
    return define();
  }, `create_vm of ${vm}: checking its static addresses and defining its domain`);
  await refuseTakenAddresses(host, plan, nets, vm);
  return defined;
}

function holderOf(ip: string, network: string, net: ParsedNetwork | undefined, doms: HostDomains, self?: string): string | undefined {
  const claim = doms.claims.find((c) => c.network === network && sameIp(c.ip, ip) && c.vm !== self);
  if (claim) return `VM ${claim.vm} (its bosh-libvirt-cpi metadata${claim.creatingAt ? `; its create_vm began ${claim.creatingAt}` : ''})`;
  for (const h of (net?.ips ?? []).flatMap((s) => s.hosts ?? [])) {
    if (!sameIp(h.ip, ip)) continue;
    const owner = h.mac ? doms.macOwner.get(h.mac.toLowerCase()) : h.name && doms.names.has(h.name) ? h.name : undefined;
    if (owner && owner !== self) return `domain ${owner} (DHCP reservation ${h.mac ? `for MAC ${h.mac}` : `named ${h.name}`})`;
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
    if (parseFence(xml)) continue; // a fence (fence.ts) holds no address
    out.names.add(dom.name);
    for (const nic of parseDomain(xml).interfaces) if (nic.mac) out.macOwner.set(nic.mac.toLowerCase(), dom.name);
    let metadata: VmMetadata | undefined;
    try {
      metadata = parseVmMetadata(xml);
    } catch {
      continue; // not made by this CPI (or unreadable): its MACs above still count
    }
    const creatingAt = metadata.creating?.at;
    for (const a of [...(metadata.addresses ?? []), ...metadata.reservations]) out.claims.push({ network: a.network, ip: a.ip, vm: dom.name, ...(creatingAt ? { creatingAt } : {}) });
  }
  return out;
}
