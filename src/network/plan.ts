// Turns create_vm's `networks` into the VM's NICs and the network settings the agent
// gets back. Pure: the driver does the I/O (DHCP reservations, prefix routes, XML).
//
// The rules follow what the director sends and what other CPIs made the norm:
// - `nic_group` puts networks on one NIC (docs-bosh network-interface-groups), and
//   nothing else does: without it every network with an address gets a NIC of its own
//   (dual-homed), the one form every BOSH agent takes (agents from before 2025 refuse
//   more networks than NICs; later ones write one file per network under the NIC's name,
//   so one address replaces the other: docs/networking.md);
// - a `prefix` other than 32/128 is a delegated prefix (RFC-0038): it rides on a NIC that
//   has an address of its own and the agent must not configure it.
import { CloudError, badInput, show } from '../errors.js';
import { type IpFamily, inSubnet, maxPrefix, netmaskToPrefix, networkBase, tryParseIp } from './ip.js';
import { checkMac, randomQemuMac } from './mac.js';
import { type NetworkSettings, invalidNetwork, parseNetworkSettings } from './schema.js';

export interface NicAddress {
  /** canonical spelling (IPv6 compressed, lowercase) */
  address: string;
  /** the subnet's prefix length (from `netmask`; 32/128 when only `prefix` was sent) */
  prefix: number;
  gateway?: string;
  /** the BOSH network that carries this address */
  network: string;
}

export interface DelegatedPrefix {
  family: IpFamily;
  /** canonical base address of the prefix */
  address: string;
  prefix: number;
  network: string;
}

export type NicSource = { kind: 'network'; network: string } | { kind: 'bridge'; bridge: string };

export interface NicPlan {
  index: number;
  /** lowercase, unique within the VM */
  mac: string;
  model: string;
  source: NicSource;
  /** BOSH networks carried by this NIC, in the order create_vm listed them */
  networkNames: string[];
  /** a dynamic network or use_dhcp on this NIC */
  dhcp: boolean;
  ipv4?: NicAddress;
  ipv6?: NicAddress;
  /** delegated prefixes (RFC-0038) routed to this NIC */
  prefixes: DelegatedPrefix[];
}

export interface NetworkPlan {
  nics: NicPlan[];
  /**
   * What goes to the agent and back to the director: every network as given (the
   * director's own spelling of ip/gateway/netmask kept, all unknown keys kept) plus
   * `mac` (the NIC's, lowercase). Prefix networks get `mac` only with use_dhcp, so the
   * agent never configures a prefix base as an address; vip networks are unchanged.
   */
  agentNetworks: Record<string, Record<string, unknown>>;
}

export interface NetworkDefaults {
  name?: string;
  bridge?: string;
  model: string;
}

export interface PlanOptions {
  /** returns a MAC for a NIC the director sent none for; default random 52:54:00:xx:xx:xx */
  macGenerator?: () => string;
}

/** More NICs than this is not a real VM; libvirt's PCI slots would run out first anyway. */
export const MAX_NICS = 32;
/** vip networks need no NIC, so a few more networks than NICs are allowed. */
export const MAX_NETWORKS = 64;

export function planNetworks(networks: unknown, defaults: NetworkDefaults, opts: PlanOptions = {}): NetworkPlan {
  checkDefaults(defaults);
  const entries = networkEntries(networks);
  const checked = entries.map(([name, raw], order) => checkNetwork(name, raw, order, defaults));
  rejectDuplicateIps(checked);
  const groups = groupIntoNics(checked);
  if (groups.length > MAX_NICS) {
    throw new CloudError(
      `Invalid networks: they need ${groups.length} NICs (networks ${groups.map((g) => show(g.members[0]?.name)).join(', ')}) but a VM gets at most ${MAX_NICS}`,
    );
  }
  const macs = assignMacs(groups, opts.macGenerator ?? randomQemuMac);
  const nics = groups.map((g, index) => toNicPlan(g, index, macs[index] as string));
  return { nics, agentNetworks: agentNetworksOf(entries, checked, groups, macs) };
}

// ---------------------------------------------------------------------------------------
// One network on its own

interface BaseNet {
  name: string;
  order: number;
  settings: NetworkSettings;
}
interface VipNet extends BaseNet {
  type: 'vip';
  canonicalIp?: string;
}
interface AttachedNet extends BaseNet {
  source: NicSource;
  sourceKey: string;
  model: string;
  nicGroup?: string;
  mac?: string;
  useDhcp: boolean;
}
interface DynamicNet extends AttachedNet {
  type: 'dynamic';
}
interface ManualNet extends AttachedNet {
  type: 'manual';
  family: IpFamily;
  /** canonical: the address, or the base of a delegated prefix */
  address: string;
  role: 'address' | 'prefix';
  /** subnet prefix length of an address; delegated prefix length of a prefix */
  length: number;
  gateway?: string;
}
type CheckedNet = VipNet | DynamicNet | ManualNet;
type NicNet = DynamicNet | ManualNet;

const MODEL_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

function checkDefaults(defaults: NetworkDefaults): void {
  if (typeof defaults?.model !== 'string' || !MODEL_RE.test(defaults.model)) {
    throw badInput('CPI config network.model', defaults?.model, 'a NIC model name such as virtio, e1000 or rtl8139');
  }
}

function networkEntries(networks: unknown): Array<[string, unknown]> {
  if (networks === null || typeof networks !== 'object' || Array.isArray(networks)) {
    throw badInput('networks', networks, 'an object mapping each BOSH network name to its settings');
  }
  const entries = Object.entries(networks);
  if (entries.length > MAX_NETWORKS) {
    throw new CloudError(`Invalid networks: ${entries.length} networks given but a VM can have at most ${MAX_NETWORKS} (and at most ${MAX_NICS} NICs)`);
  }
  for (const [name] of entries) {
    if (name.length === 0 || name.length > 255) throw badInput('network name', name, 'a name of 1 to 255 characters');
  }
  return entries;
}

function checkNetwork(name: string, raw: unknown, order: number, defaults: NetworkDefaults): CheckedNet {
  const settings = parseNetworkSettings(name, raw);
  if (settings.type === 'vip') {
    // The director owns a vip; the CPI only makes sure it is an address it can compare.
    if (settings.ip == null) return { type: 'vip', name, order, settings };
    return { type: 'vip', name, order, settings, canonicalIp: requireIp(name, 'ip', settings.ip).canonical };
  }

  settings.dns?.forEach((entry, i) => requireIp(name, `dns[${i}]`, entry));
  const attached: AttachedNet = {
    name,
    order,
    settings,
    ...resolveSource(name, settings, defaults),
    useDhcp: settings.use_dhcp === true,
  };
  if (settings.nic_group != null) attached.nicGroup = String(settings.nic_group);
  if (settings.mac != null) {
    const check = checkMac(settings.mac);
    if (!check.ok) throw invalidNetwork(name, 'mac', settings.mac, `must ${check.rule}`);
    attached.mac = check.mac;
  }
  if (settings.type === 'dynamic') return { ...attached, type: 'dynamic' };
  return { ...attached, type: 'manual', ...checkManualAddress(name, settings) };
}

function checkManualAddress(name: string, s: NetworkSettings): Pick<ManualNet, 'family' | 'address' | 'role' | 'length' | 'gateway'> {
  if (s.ip == null) throw invalidNetwork(name, 'ip', undefined, 'must be set for a manual network');
  const ip = requireIp(name, 'ip', s.ip);
  const max = maxPrefix(ip.family);

  let prefixLen: number | undefined;
  if (s.prefix != null) {
    prefixLen = Number(s.prefix);
    if (prefixLen > max) {
      throw invalidNetwork(name, 'prefix', s.prefix, `must be at most ${max} for the ${familyName(ip.family)} ip ${show(s.ip)} (${max}: a single address; less: a delegated prefix)`);
    }
  }

  let maskLen: number | undefined;
  if (s.netmask != null) {
    const mask = tryParseIp(s.netmask);
    if (mask === undefined) {
      throw invalidNetwork(name, 'netmask', s.netmask, 'must be a netmask such as 255.255.255.0 or ffff:ffff:ffff:ffff:0000:0000:0000:0000');
    }
    if (mask.family !== ip.family) {
      throw invalidNetwork(name, 'netmask', s.netmask, `must be an ${familyName(ip.family)} netmask, like the ip ${show(s.ip)}`);
    }
    try {
      maskLen = netmaskToPrefix(s.netmask);
    } catch {
      throw invalidNetwork(name, 'netmask', s.netmask, 'must be a contiguous netmask (all one bits, then all zero bits)');
    }
  }
  if (prefixLen === undefined && maskLen === undefined) {
    throw invalidNetwork(name, 'netmask', undefined, 'must be set (or prefix) for a manual network');
  }

  const single = prefixLen === undefined || prefixLen === max;
  let gateway: string | undefined;
  if (s.gateway != null) {
    const gw = requireIp(name, 'gateway', s.gateway);
    if (gw.family !== ip.family) {
      throw invalidNetwork(name, 'gateway', s.gateway, `must be an ${familyName(ip.family)} address, like the ip ${show(s.ip)}`);
    }
    if (single && maskLen !== undefined && !inSubnet(gw.canonical, ip.canonical, maskLen)) {
      const subnet = `${networkBase(ip.canonical, maskLen)}/${maskLen}`;
      throw invalidNetwork(name, 'gateway', s.gateway, `must be inside ${subnet} (the network of ip ${s.ip} with netmask ${s.netmask})`);
    }
    gateway = gw.canonical;
  }

  if (single) return { family: ip.family, address: ip.canonical, role: 'address', length: maskLen ?? max, gateway };

  const delegated = prefixLen as number;
  if (delegated === 0) {
    throw invalidNetwork(name, 'prefix', s.prefix, `must be from 1 to ${max - 1} for a delegated prefix, or ${max} for a single address; 0 would delegate every address`);
  }
  const base = networkBase(ip.canonical, delegated);
  if (base !== ip.canonical) {
    // The common slip is sending the subnet's length as `prefix`: say so.
    const hint = maskLen === delegated ? `; a single address has prefix ${max}, not the netmask's length` : '';
    throw invalidNetwork(
      name,
      'ip',
      s.ip,
      `must be the base address of its delegated prefix (${base}/${delegated}), because prefix ${show(s.prefix)} marks a delegated prefix${hint}`,
    );
  }
  return { family: ip.family, address: ip.canonical, role: 'prefix', length: delegated, gateway };
}

function resolveSource(name: string, s: NetworkSettings, defaults: NetworkDefaults): Pick<AttachedNet, 'source' | 'sourceKey' | 'model'> {
  const cp = s.cloud_properties ?? {};
  const model = cp.model ?? defaults.model;
  if (cp.name != null && cp.bridge != null) {
    throw invalidNetwork(name, 'cloud_properties', s.cloud_properties, 'must set only one of name (a libvirt network) and bridge (a host bridge)');
  }
  let source: NicSource;
  if (cp.name != null) source = { kind: 'network', network: cp.name };
  else if (cp.bridge != null) source = { kind: 'bridge', bridge: cp.bridge };
  else if (defaults.name != null && defaults.bridge != null) {
    throw invalidNetwork(
      name,
      'cloud_properties',
      s.cloud_properties,
      `must set name or bridge, because the CPI config's network defaults set both name ${show(defaults.name)} and bridge ${show(defaults.bridge)}`,
    );
  } else if (defaults.name != null) source = { kind: 'network', network: defaults.name };
  else if (defaults.bridge != null) source = { kind: 'bridge', bridge: defaults.bridge };
  else {
    throw invalidNetwork(
      name,
      'cloud_properties.name',
      undefined,
      'must name a libvirt network (or cloud_properties.bridge a host bridge), because the CPI config sets no default network.name or network.bridge',
    );
  }
  const sourceKey = source.kind === 'network' ? `network:${source.network}` : `bridge:${source.bridge}`;
  return { source, sourceKey, model };
}

function requireIp(name: string, field: string, value: string): { family: IpFamily; canonical: string } {
  const ip = tryParseIp(value);
  if (ip === undefined) throw invalidNetwork(name, field, value, 'must be an IPv4 address (a.b.c.d) or an IPv6 address (compressed or expanded)');
  return ip;
}

function rejectDuplicateIps(nets: CheckedNet[]): void {
  const seen = new Map<string, CheckedNet>();
  for (const net of nets) {
    const canonical = net.type === 'vip' ? net.canonicalIp : net.type === 'manual' ? net.address : undefined;
    if (canonical === undefined) continue;
    const other = seen.get(canonical);
    if (other !== undefined) {
      throw invalidNetwork(net.name, 'ip', net.settings.ip, `must differ from the ip of network ${show(other.name)} (${show(other.settings.ip)}): both are ${canonical}`);
    }
    seen.set(canonical, net);
  }
}

// ---------------------------------------------------------------------------------------
// Networks into NICs

interface Group {
  /** the nic_group, when the manifest set one */
  nicGroup?: string;
  source: NicSource;
  sourceKey: string;
  model: string;
  members: NicNet[];
  ipv4?: ManualNet;
  ipv6?: ManualNet;
  prefix4?: ManualNet;
  prefix6?: ManualNet;
  dynamic?: DynamicNet;
  mac?: { mac: string; from: NicNet };
}

function groupIntoNics(nets: CheckedNet[]): Group[] {
  const groups: Group[] = [];
  const byNicGroup = new Map<string, Group>();
  // An ungrouped prefix joins an address NIC; wait until all of those exist so the
  // order of networks in the manifest does not matter.
  const ungroupedPrefixes: ManualNet[] = [];

  for (const net of nets) {
    if (net.type === 'vip') continue;
    if (net.nicGroup !== undefined) {
      let group = byNicGroup.get(net.nicGroup);
      if (group === undefined) {
        group = newGroup(net, net.nicGroup);
        byNicGroup.set(net.nicGroup, group);
        groups.push(group);
      } else {
        checkSameNic(group, net);
      }
      addMember(group, net);
    } else if (net.type === 'manual' && net.role === 'prefix') {
      ungroupedPrefixes.push(net);
    } else {
      addMember(pushed(groups, newGroup(net)), net);
    }
  }

  for (const net of ungroupedPrefixes) {
    const candidates = groups.filter((g) => isAutoAddressGroup(g, net) && slotOf(g, prefixSlot(net.family)) === undefined);
    const group = candidates.find((g) => slotOf(g, addressSlot(net.family)) !== undefined) ?? candidates[0];
    if (group === undefined) {
      throw invalidNetwork(
        net.name,
        'prefix',
        net.settings.prefix,
        `a prefix network can only be a secondary network: it has no nic_group and no NIC on ${describeSource(net.source)} has an IP address it could join (give it the nic_group of a manual network with a single address)`,
      );
    }
    addMember(group, net);
  }

  for (const group of groups) {
    if (group.ipv4 === undefined && group.ipv6 === undefined && group.dynamic === undefined) {
      const first = group.members[0] as NicNet;
      throw invalidNetwork(
        first.name,
        'nic_group',
        first.settings.nic_group,
        `a prefix network can only be a secondary network: nic_group ${show(group.nicGroup)} holds only delegated prefixes (${group.members
          .map((m) => show(m.name))
          .join(', ')}); add a manual network with a single address, or a dynamic network, to it`,
      );
    }
  }
  return groups;
}

type Slot = 'ipv4' | 'ipv6' | 'prefix4' | 'prefix6';
const addressSlot = (family: IpFamily): Slot => family;
const prefixSlot = (family: IpFamily): Slot => (family === 'ipv4' ? 'prefix4' : 'prefix6');
const slotOf = (g: Group, slot: Slot): ManualNet | undefined => g[slot];

function pushed(groups: Group[], group: Group): Group {
  groups.push(group);
  return group;
}

function newGroup(net: NicNet, nicGroup?: string): Group {
  const group: Group = { source: net.source, sourceKey: net.sourceKey, model: net.model, members: [] };
  if (nicGroup !== undefined) group.nicGroup = nicGroup;
  return group;
}

/** A NIC made without nic_group from manual addresses that `net` may join. */
function isAutoAddressGroup(g: Group, net: ManualNet): boolean {
  return (
    g.nicGroup === undefined &&
    g.dynamic === undefined &&
    g.sourceKey === net.sourceKey &&
    g.model === net.model &&
    (net.mac === undefined || g.mac === undefined || g.mac.mac === net.mac)
  );
}

function checkSameNic(group: Group, net: NicNet): void {
  const first = group.members[0] as NicNet;
  if (group.sourceKey !== net.sourceKey) {
    throw invalidNetwork(
      net.name,
      'cloud_properties',
      net.settings.cloud_properties,
      `must select the same ${describeSource(group.source)} as network ${show(first.name)} in nic_group ${show(group.nicGroup)}, not ${describeSource(net.source)}: the networks of a NIC group share one NIC`,
    );
  }
  if (group.model !== net.model) {
    throw invalidNetwork(
      net.name,
      'cloud_properties.model',
      net.settings.cloud_properties?.model ?? net.model,
      `must be ${show(group.model)} like network ${show(first.name)} in nic_group ${show(group.nicGroup)}: the networks of a NIC group share one NIC`,
    );
  }
}

function addMember(group: Group, net: NicNet): void {
  const where = `nic_group ${show(group.nicGroup)}`;
  if (net.type === 'dynamic') {
    if (group.dynamic !== undefined) {
      throw invalidNetwork(net.name, 'type', 'dynamic', `must not be a second dynamic network in ${where} (network ${show(group.dynamic.name)} is dynamic already): a NIC has one DHCP configuration`);
    }
    group.dynamic = net;
  } else {
    const slot = net.role === 'address' ? addressSlot(net.family) : prefixSlot(net.family);
    const holder = slotOf(group, slot);
    if (holder !== undefined) {
      const what = net.role === 'address' ? `${familyName(net.family)} address` : `${familyName(net.family)} delegated prefix`;
      throw invalidNetwork(
        net.name,
        net.role === 'address' ? 'ip' : 'prefix',
        net.role === 'address' ? net.settings.ip : net.settings.prefix,
        `must not be a second ${what} in ${where}: network ${show(holder.name)} already has ${holder.address}${net.role === 'prefix' ? `/${holder.length}` : ''}, and a NIC group holds at most one ${what}`,
      );
    }
    group[slot] = net;
  }
  if (net.mac !== undefined) {
    if (group.mac !== undefined && group.mac.mac !== net.mac) {
      throw invalidNetwork(net.name, 'mac', net.settings.mac, `must equal ${group.mac.mac}, the mac of network ${show(group.mac.from.name)} in ${where}: they share one NIC`);
    }
    group.mac ??= { mac: net.mac, from: net };
  }
  group.members.push(net);
}

const MAC_ATTEMPTS = 64;

function assignMacs(groups: Group[], generate: () => string): string[] {
  const taken = new Map<string, NicNet>();
  for (const group of groups) {
    if (group.mac === undefined) continue;
    const holder = taken.get(group.mac.mac);
    if (holder !== undefined) {
      throw invalidNetwork(group.mac.from.name, 'mac', group.mac.from.settings.mac, `must be unique in the VM, but network ${show(holder.name)} on another NIC has the same MAC`);
    }
    taken.set(group.mac.mac, group.mac.from);
  }
  return groups.map((group) => {
    if (group.mac !== undefined) return group.mac.mac;
    const first = group.members[0] as NicNet;
    for (let attempt = 0; attempt < MAC_ATTEMPTS; attempt++) {
      const candidate = generate();
      const check = checkMac(candidate);
      if (!check.ok) {
        throw new CloudError(`MAC generator returned ${show(candidate)} for the NIC of network ${show(first.name)}, but a MAC must ${check.rule}`);
      }
      if (!taken.has(check.mac)) {
        taken.set(check.mac, first);
        return check.mac;
      }
    }
    throw new CloudError(`Could not find a free MAC for the NIC of network ${show(first.name)} in ${MAC_ATTEMPTS} attempts`);
  });
}

function toNicPlan(group: Group, index: number, mac: string): NicPlan {
  const members = [...group.members].sort((a, b) => a.order - b.order);
  const nic: NicPlan = {
    index,
    mac,
    model: group.model,
    source: group.source,
    networkNames: members.map((m) => m.name),
    dhcp: group.dynamic !== undefined || members.some((m) => m.useDhcp),
    prefixes: members
      .filter((m): m is ManualNet => m.type === 'manual' && m.role === 'prefix')
      .map((m) => ({ family: m.family, address: m.address, prefix: m.length, network: m.name })),
  };
  if (group.ipv4 !== undefined) nic.ipv4 = nicAddress(group.ipv4);
  if (group.ipv6 !== undefined) nic.ipv6 = nicAddress(group.ipv6);
  return nic;
}

function nicAddress(net: ManualNet): NicAddress {
  const a: NicAddress = { address: net.address, prefix: net.length, network: net.name };
  if (net.gateway !== undefined) a.gateway = net.gateway;
  return a;
}

function agentNetworksOf(entries: Array<[string, unknown]>, nets: CheckedNet[], groups: Group[], macs: string[]): NetworkPlan['agentNetworks'] {
  const macOf = new Map<string, string>();
  groups.forEach((g, i) => g.members.forEach((m) => macOf.set(m.name, macs[i] as string)));
  // fromEntries defines own properties, so even a network named "__proto__" stays data.
  return Object.fromEntries(
    entries.map(([name, raw], i) => {
      const net = nets[i] as CheckedNet;
      const out = structuredClone(raw) as Record<string, unknown>;
      if (net.type === 'vip') return [name, out];
      if (net.type === 'manual' && net.role === 'prefix' && !net.useDhcp) delete out.mac;
      else out.mac = macOf.get(name);
      return [name, out];
    }),
  );
}

function describeSource(source: NicSource): string {
  return source.kind === 'network' ? `libvirt network ${show(source.network)}` : `host bridge ${show(source.bridge)}`;
}

function familyName(family: IpFamily): string {
  return family === 'ipv4' ? 'IPv4' : 'IPv6';
}
