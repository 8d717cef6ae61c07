// Turns a network plan into what libvirt needs, and checks it against the host: every
// libvirt network a NIC names must exist, and every static address and gateway must lie
// in one of its <ip> subnets. For networks that run DHCP, the VM's static addresses are
// reserved with NETWORK_UPDATE (atomic inside libvirtd, so concurrent create_vm calls
// never lose each other's entries) and removed again by delete_vm: dhcpReservations
// below, the ReservationStore qemu and lxc pass.
import type { Host } from './host.js';
import { isLibvirtError, ErrorCode, NetworkUpdateCommand, NetworkUpdateSection, NetworkUpdateFlags, type NetworkRef } from '../../libvirt/index.js';
import { parseDhcpRanges, parseNetwork, renderDhcpHost, type ParsedNetwork, type VmMetadata, type InterfaceDevice } from '../../xml/index.js';
import { inSubnet, formatCidr, netmaskMismatch, networkBase, prefixAgainstSubnets, reservedAddressReason, sameIp } from '../../network/index.js';
import type { NetworkPlan, NicAddress, NicPlan, TakenByNetwork } from '../../network/index.js';
import { CloudError, NetworkNotFound } from '../../errors.js';
import { refuseTakenAddresses, type AddressStores } from './address-holders.js';
import type { CheckedNetwork, ReservationStore } from './profile.js';

export function interfaceDevices(plan: NetworkPlan): InterfaceDevice[] {
  return plan.nics.map((nic) =>
    nic.source.kind === 'network'
      ? { kind: 'network', network: nic.source.network, mac: nic.mac, model: nic.model }
      : { kind: 'bridge', bridge: nic.source.bridge, mac: nic.mac, model: nic.model },
  );
}

/** Looks up and checks every libvirt network the plan uses; returns them by name. */
export async function checkNetworks(host: Host, stores: AddressStores, plan: NetworkPlan): Promise<Map<string, CheckedNetwork>> {
  const nets = new Map<string, CheckedNetwork>();
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    const name = nic.source.network;
    let checked = nets.get(name);
    if (!checked) {
      let ref: NetworkRef;
      try {
        ref = await host.conn.networks.lookupByName(name);
      } catch (e) {
        if (isLibvirtError(e, ErrorCode.NO_NETWORK)) {
          throw new NetworkNotFound(`libvirt network "${name}" (cloud_properties.name of network ${nic.networkNames.map((n) => `"${n}"`).join(', ')}) does not exist on ${host.config.libvirt.uri}`);
        }
        throw e;
      }
      const xml = await host.conn.networks.getXMLDesc(ref, 0);
      checked = { ref, parsed: parseNetwork(xml), ranges: parseDhcpRanges(xml) };
      nets.set(name, checked);
    }
    checkAddresses(nic, name, checked, plan.agentNetworks);
  }
  await refuseTakenAddresses(host, stores, plan, nets);
  return nets;
}

function checkAddresses(nic: NicPlan, netName: string, checked: CheckedNetwork, sent: NetworkPlan['agentNetworks']): void {
  const net = checked.parsed;
  for (const addr of [nic.ipv4, nic.ipv6]) {
    if (!addr) continue;
    const family = addr === nic.ipv4 ? 'ipv4' : 'ipv6';
    const subnets = net.ips.filter((ip) => ip.family === family);
    const list = subnets.map((s) => formatCidr(networkBase(s.address, s.prefix), s.prefix)).join(', ') || `no ${family} subnet`;
    for (const [field, value] of [['ip', addr.address], ['gateway', addr.gateway]] as const) {
      if (!value) continue;
      // Name the value as the director spelled it (what the operator greps the manifest
      // for), with the canonical form when that differs.
      const raw = sent[addr.network]?.[field];
      const shown = typeof raw === 'string' && raw !== value ? `${JSON.stringify(raw)} (${value})` : JSON.stringify(value);
      if (!subnets.some((s) => inSubnet(value, s.address, s.prefix))) {
        throw new CloudError(`Invalid network "${addr.network}": field "${field}" is ${shown} but libvirt network "${netName}" has ${list}; the address must lie in one of its subnets`);
      }
      if (field === 'ip') {
        // The netmask the director sends is the manifest's subnet: the agent configures it,
        // so a /16 on a /24 network would have the VM treat addresses beyond the bridge as
        // on-link. An address sent with only `prefix` (32/128) has no netmask to compare.
        const mask = sent[addr.network]?.netmask;
        const mismatch = mask == null ? undefined : netmaskMismatch(addr.address, addr.prefix, family, subnets);
        if (mismatch) throw new CloudError(`Invalid network "${addr.network}": field "netmask" is ${JSON.stringify(mask)} but on libvirt network "${netName}" ${mismatch}`);
        const reason = reservedReason(addr, netName, subnets);
        if (reason) throw new CloudError(`Invalid network "${addr.network}": field "ip" is ${shown}, which is ${reason}; a VM cannot have that address`);
      }
    }
  }
  for (const p of nic.prefixes) {
    const own = p.family === 'ipv4' ? nic.ipv4 : nic.ipv6;
    const inUse = [
      ...(own ? [{ ip: own.address, what: `this VM's own address (network "${own.network}")` }] : []),
      ...(own?.gateway ? [{ ip: own.gateway, what: `the gateway of network "${own.network}"` }] : []),
    ];
    const why = prefixAgainstSubnets(p, net.ips, inUse, checked.ranges);
    if (why) {
      const raw = sent[p.network];
      throw new CloudError(`Invalid network "${p.network}": delegated prefix ${formatCidr(p.address, p.prefix)} (ip ${JSON.stringify(raw?.ip)}, prefix ${JSON.stringify(raw?.prefix)}) on libvirt network "${netName}" ${why}`);
    }
  }
}

/** Why a VM's address is one its network keeps for itself, checked against the manifest's subnet and libvirt's. */
function reservedReason(addr: NicAddress, netName: string, subnets: ParsedNetwork['ips']): string | undefined {
  const taken: TakenByNetwork[] = [
    ...(addr.gateway ? [{ ip: addr.gateway, what: 'the gateway' }] : []),
    ...subnets.map((s) => ({ ip: s.address, what: `the host's own address on libvirt network "${netName}"` })),
  ];
  for (const subnet of [{ address: addr.address, prefix: addr.prefix }, ...subnets]) {
    const reason = reservedAddressReason(addr.address, subnet, taken);
    if (reason) return reason;
  }
  return undefined;
}

/**
 * Reservations to add for a VM: every address a NIC carries on a libvirt network whose
 * subnet runs DHCP; IPv4 by MAC, IPv6 by name (libvirt's IPv6 hosts have no MAC). DHCP
 * NICs included: a manual network with use_dhcp relies on the reservation to be handed
 * its own address (a dynamic network has no address, so it reserves nothing).
 */
export function plannedReservations(plan: NetworkPlan, nets: Map<string, CheckedNetwork>, vmName: string): VmMetadata['reservations'] {
  const out: VmMetadata['reservations'] = [];
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    const net = nets.get(nic.source.network);
    if (!net) continue;
    for (const addr of [nic.ipv4, nic.ipv6]) {
      if (!addr) continue;
      const family = addr === nic.ipv4 ? 'ipv4' : 'ipv6';
      const subnet = net.parsed.ips.find((s) => s.family === family && s.hasDhcp && inSubnet(addr.address, s.address, s.prefix));
      if (!subnet) continue;
      out.push(family === 'ipv4' ? { network: nic.source.network, family, mac: nic.mac, ip: addr.address } : { network: nic.source.network, family, name: vmName, ip: addr.address });
    }
  }
  return out;
}

function hostXml(r: VmMetadata['reservations'][number]): string {
  return r.family === 'ipv4' ? renderDhcpHost({ family: 'ipv4', mac: r.mac!, ip: r.ip }) : renderDhcpHost({ family: 'ipv6', name: r.name!, ip: r.ip });
}

async function updateFlags(host: Host, ref: NetworkRef): Promise<number> {
  return (await host.conn.networks.isActive(ref)) ? NetworkUpdateFlags.AFFECT_LIVE | NetworkUpdateFlags.AFFECT_CONFIG : NetworkUpdateFlags.AFFECT_CONFIG;
}

/**
 * The <ip> element (index among all of the network's <ip>s, in document order) whose
 * DHCP subnet holds the address. libvirt's own choice for parentIndex -1 is the first
 * <ip> with DHCP, whatever its family: on a network with DHCPv4 and DHCPv6 an IPv6 host
 * would be refused ("the address family of a host entry IP must match…").
 */
async function dhcpParentIndex(host: Host, ref: NetworkRef, r: VmMetadata['reservations'][number]): Promise<number> {
  const ips = parseNetwork(await host.conn.networks.getXMLDesc(ref, 0)).ips;
  return ips.findIndex((s) => s.family === r.family && s.hasDhcp && inSubnet(r.ip, s.address, s.prefix));
}

export async function addReservation(host: Host, r: VmMetadata['reservations'][number]): Promise<void> {
  const ref = await host.conn.networks.lookupByName(r.network);
  const add = async () =>
    host.conn.networks.update(ref, NetworkUpdateCommand.ADD_LAST, NetworkUpdateSection.IP_DHCP_HOST, await dhcpParentIndex(host, ref, r), hostXml(r), await updateFlags(host, ref));
  try {
    await add();
  } catch (e) {
    // libvirt refuses a second <host> for the same address. An entry whose owner is
    // gone (a delete_vm or a failed create_vm that could not finish its cleanup) would
    // otherwise block this static IP forever: reclaim it; a live owner is a real conflict.
    const stale = await staleReservationFor(host, ref, r);
    if (!stale) throw e;
    host.log.warn({ network: r.network, ip: r.ip, stale }, 'replacing a DHCP reservation whose VM no longer exists');
    await removeReservation(host, { ...stale, network: r.network });
    await add();
  }
}

/** The reservation holding r's address, if no defined domain owns it any more. */
async function staleReservationFor(host: Host, ref: NetworkRef, r: VmMetadata['reservations'][number]): Promise<VmMetadata['reservations'][number] | null> {
  const parsed = parseNetwork(await host.conn.networks.getXMLDesc(ref, 0));
  const entry = parsed.ips
    .filter((ip) => ip.family === r.family)
    .flatMap((ip) => ip.hosts ?? [])
    .find((h) => sameIp(h.ip, r.ip));
  if (!entry) return null;
  const doms = await host.conn.domains.listAll(0);
  if (r.family === 'ipv6') {
    // IPv6 entries are keyed by the owning VM's name.
    if (!entry.name || doms.some((d) => d.name === entry.name)) return null;
    return { network: r.network, family: 'ipv6', name: entry.name, ip: entry.ip };
  }
  if (!entry.mac) return null;
  for (const d of doms) {
    const xml = await host.conn.domains.getXMLDesc(d, 0).catch(() => '');
    if (xml.toLowerCase().includes(`'${entry.mac.toLowerCase()}'`)) return null;
  }
  return { network: r.network, family: 'ipv4', mac: entry.mac, ip: entry.ip };
}

/** Removes a reservation; one that is already gone (or a network that is gone) is fine. */
export async function removeReservation(host: Host, r: VmMetadata['reservations'][number]): Promise<void> {
  try {
    const ref = await host.conn.networks.lookupByName(r.network);
    await host.conn.networks.update(ref, NetworkUpdateCommand.DELETE, NetworkUpdateSection.IP_DHCP_HOST, await dhcpParentIndex(host, ref, r), hostXml(r), await updateFlags(host, ref));
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_NETWORK, ErrorCode.OPERATION_INVALID)) return;
    if (e instanceof Error && /couldn't locate a matching dhcp host|no matching|doesn't exist/i.test(e.message)) return;
    throw e;
  }
}

/**
 * Delegated prefixes outside the bridge's on-link IPv6/IPv4 subnets need a host route
 * via the VM's own address; the libvirt hook (scripts/libvirt-hook-qemu) reads these
 * records from the domain's metadata and adds/removes the routes at start/stop.
 */
export function routedPrefixes(plan: NetworkPlan, nets: Map<string, CheckedNetwork>): VmMetadata['prefixes'] {
  const out: VmMetadata['prefixes'] = [];
  for (const nic of plan.nics) {
    for (const p of nic.prefixes) {
      const via = p.family === 'ipv4' ? nic.ipv4?.address : nic.ipv6?.address;
      if (!via) continue;
      const net = nic.source.kind === 'network' ? nets.get(nic.source.network) : undefined;
      const onLink = net?.parsed.ips.some((s) => s.family === p.family && s.prefix <= p.prefix && inSubnet(p.address, s.address, s.prefix)) ?? false;
      if (onLink) continue;
      out.push({ prefix: formatCidr(p.address, p.prefix), via, network: nic.source.kind === 'network' ? nic.source.network : nic.source.bridge });
    }
  }
  return out;
}

/** DHCP host entries added and removed with NETWORK_UPDATE: what qemu and lxc use. */
export const dhcpReservations: ReservationStore = {
  planned: plannedReservations,
  add: addReservation,
  remove: removeReservation,
};
