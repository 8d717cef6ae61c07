// A container's NICs: the same plan, libvirt networks and nic_groups as qemu, but
// libvirt itself sets each NIC's addresses and routes inside the container (<ip> and
// <route> on the interface), so the agent has nothing to configure and the settings
// mark every network preconfigured.
import type { NetworkPlan } from '../../network/index.js';
import type { InterfaceDevice } from '../../xml/index.js';
import { CloudError } from '../../errors.js';

/**
 * Networks the container cannot get: libvirt sets only static addresses on an LXC
 * interface and the warden stemcell's agent configures no network, so a dynamic
 * network would leave the container without an address.
 */
export function refuseUnsupportedNetworks(plan: NetworkPlan): void {
  const dynamic = plan.nics.filter((n) => n.dhcp);
  if (dynamic.length) {
    const names = dynamic.flatMap((n) => n.networkNames).join(', ');
    throw new CloudError(
      `Invalid networks of create_vm: ${names} use DHCP (type dynamic or use_dhcp), which the lxc backend cannot serve: libvirt sets static addresses on a container's interface and the agent configures none; use manual networks`,
    );
  }
}

/** Each NIC with its addresses and, for the default gateway of each family, a default route. */
export function containerInterfaces(plan: NetworkPlan): InterfaceDevice[] {
  const gateways = defaultGateways(plan);
  return plan.nics.map((nic) => {
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
