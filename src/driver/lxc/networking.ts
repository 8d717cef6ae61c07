// A container's NICs: the same plan, libvirt networks and nic_groups as qemu, but
// libvirt itself sets each static NIC's addresses and routes inside the container (<ip>
// and <route> on the interface), so the agent has nothing to configure there and the
// settings mark those networks preconfigured.
import type { NetworkPlan } from '../../network/index.js';
import type { InterfaceDevice } from '../../xml/index.js';

/**
 * The networks libvirt configures (every network on a NIC with static addresses): the
 * settings mark them preconfigured. A NIC on a dynamic network (or use_dhcp) gets no
 * <ip> from libvirt; its networks are left to the agent, which asks DHCP as on a VM.
 */
export function preconfiguredNetworks(plan: NetworkPlan): Set<string> {
  return new Set(plan.nics.filter((n) => !n.dhcp).flatMap((n) => n.networkNames));
}

/** Each NIC with its addresses and, for the default gateway of each family, a default route. */
export function containerInterfaces(plan: NetworkPlan): InterfaceDevice[] {
  const gateways = defaultGateways(plan);
  return plan.nics.map((nic) => {
    if (nic.dhcp) {
      return nic.source.kind === 'network' ? { kind: 'network', network: nic.source.network, mac: nic.mac } : { kind: 'bridge', bridge: nic.source.bridge, mac: nic.mac };
    }
    const ips: NonNullable<InterfaceDevice['ips']> = [];
    const routes: NonNullable<InterfaceDevice['routes']> = [];
    for (const [family, a] of [['ipv4', nic.ipv4], ['ipv6', nic.ipv6]] as const) {
      if (!a) continue;
      ips.push({ family, address: a.address, prefix: a.prefix });
      if (a.gateway && gateways.get(family) === a) routes.push({ family, address: family === 'ipv4' ? '0.0.0.0' : '::', prefix: 0, gateway: a.gateway });
    }
    const base = { mac: nic.mac, ips, routes };
    return nic.source.kind === 'network' ? { kind: 'network', network: nic.source.network, ...base } : { kind: 'bridge', bridge: nic.source.bridge, ...base };
  });
}

type Address = NonNullable<NetworkPlan['nics'][number]['ipv4']>;

// As the agent chooses (bosh-agent: the network whose `default` lists gateway; a lone
// network is the default): one default route per family.
function defaultGateways(plan: NetworkPlan): Map<'ipv4' | 'ipv6', Address> {
  const out = new Map<'ipv4' | 'ipv6', Address>();
  for (const family of ['ipv4', 'ipv6'] as const) {
    const candidates = plan.nics.map((n) => n[family]).filter((a): a is Address => a?.gateway !== undefined);
    const chosen = candidates.find((a) => isDefaultFor(plan, a.network)) ?? (candidates.length === 1 ? candidates[0] : undefined);
    if (chosen) out.set(family, chosen);
  }
  return out;
}

function isDefaultFor(plan: NetworkPlan, network: string): boolean {
  const d = plan.agentNetworks[network]?.default;
  return Array.isArray(d) && d.includes('gateway');
}
