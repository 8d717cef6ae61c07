import type { Builder } from './builder.js';
import { document, serialize } from './builder.js';
import { NETWORK_DEFAULTS } from './defaults.js';
import type { El } from './dom.js';
import { parseRoot } from './dom.js';
import { XmlParseError, XmlRenderError } from './errors.js';
import { attr, macAddress, objectName } from './text.js';
import type { DhcpHostSpec, NetworkIpSpec, NetworkSpec, ParsedNetwork } from './types.js';

/*
 * Router advertisements on libvirt 9.0 networks (src/network/bridge_driver.c,
 * networkDnsmasqConfContents / networkStartDhcpDaemon; radvd is no longer used, dnsmasq
 * does RA itself):
 *   - dnsmasq is started unless NO <ip> has a <dhcp> range/host AND <dns enable='no'/>.
 *   - Whenever dnsmasq runs, every IPv6 <ip> gets RAs: `enable-ra` if an IPv6 <ip> has
 *     DHCPv6 (stateful, M flag), `dhcp-range=<addr>,ra-only` for IPv6 <ip>s without it.
 *   - There is no network-XML switch for RA alone; <dnsmasq:options> can only add options
 *     and dnsmasq has none that undoes `enable-ra`/`ra-only`.
 * So RAs can be suppressed only by keeping dnsmasq from running: no DHCP on any <ip> of
 * the network (IPv4 included) and DNS disabled. renderNetwork does that for
 * `ipv6RouterAdvertisements: false` and refuses the combination with DHCP, rather than
 * silently producing a network that still advertises.
 */

/**
 * An isolated network for NETWORK_DEFINE_XML: never a <forward>, so guests reach only
 * the host bridge and each other.
 */
export function renderNetwork(n: NetworkSpec): string {
  const hasIpv6 = n.ips.some((ip) => ip.family === 'ipv6');
  const quiet = hasIpv6 && n.ipv6RouterAdvertisements === false;
  if (quiet) {
    const withDhcp = n.ips.find((ip) => ip.dhcp);
    if (withDhcp) {
      throw new XmlRenderError(
        'ipv6RouterAdvertisements',
        'false',
        `libvirt sends router advertisements whenever its dnsmasq runs, and DHCP on ${withDhcp.address} makes it run`,
      );
    }
  }

  const doc = document();
  const network = doc.ele('network', (n.ipv6 ?? hasIpv6) ? { ipv6: 'yes' } : {});
  network.ele('name').txt(objectName('network name', n.name));
  network.ele('bridge', {
    name: attr('bridge', n.bridge),
    stp: NETWORK_DEFAULTS.bridgeStp,
    delay: NETWORK_DEFAULTS.bridgeDelay,
  });
  if (n.mac !== undefined) network.ele('mac', { address: macAddress(n.mac) });
  if (quiet) network.ele('dns', { enable: 'no' });
  const seenDhcp = new Set<string>();
  for (const ip of n.ips) {
    // libvirt refuses a second DHCP block per family only when the network starts.
    if (ip.dhcp && seenDhcp.has(ip.family)) {
      throw new XmlRenderError('ips', ip.address, `only one <ip> per family may carry DHCP (${ip.family})`);
    }
    if (ip.dhcp) seenDhcp.add(ip.family);
    appendIp(network, ip);
  }
  for (const r of n.routes ?? []) {
    network.ele('route', {
      family: r.family,
      address: attr('route address', r.address),
      prefix: prefix(r.family, r.prefix),
      gateway: attr('route gateway', r.gateway),
    });
  }
  return serialize(doc);
}

/** One <host> for NETWORK_UPDATE (section IP_DHCP_HOST). */
export function renderDhcpHost(h: DhcpHostSpec): string {
  const doc = document();
  appendHost(doc, h);
  return serialize(doc);
}

export function parseNetwork(xml: string): ParsedNetwork {
  const network = parseRoot(xml, 'network');
  const parsed: ParsedNetwork = {
    name: network.required('name').text,
    ips: network.children('ip').map(parseIp),
  };
  const bridge = network.child('bridge')?.attr('name');
  if (bridge !== undefined) parsed.bridge = bridge;
  const forward = network.child('forward');
  // <forward/> without a mode means NAT in libvirt's network XML.
  if (forward) parsed.forwardMode = forward.attr('mode') ?? 'nat';
  return parsed;
}

/** The network's DHCP ranges (`<ip><dhcp><range start end>`): the addresses dnsmasq leases out. */
export function parseDhcpRanges(xml: string): Array<{ family: 'ipv4' | 'ipv6'; start: string; end: string }> {
  return parseRoot(xml, 'network')
    .children('ip')
    .flatMap((ip) => {
      const family = ip.attr('family') === 'ipv6' ? 'ipv6' : 'ipv4';
      return (ip.child('dhcp')?.children('range') ?? []).map((r) => ({ family, start: r.requiredAttr('start'), end: r.requiredAttr('end') }) as const);
    });
}

function appendIp(network: Builder, ip: NetworkIpSpec): void {
  const el = network.ele('ip', { family: ip.family, address: attr('ip address', ip.address), prefix: prefix(ip.family, ip.prefix) });
  if (!ip.dhcp) return;
  const dhcp = el.ele('dhcp');
  for (const r of ip.dhcp.ranges) dhcp.ele('range', { start: attr('dhcp range start', r.start), end: attr('dhcp range end', r.end) });
  for (const h of ip.dhcp.hosts ?? []) appendHost(dhcp, hostOf(ip.family, h));
}

type HostEntry = NonNullable<NonNullable<NetworkIpSpec['dhcp']>['hosts']>[number];

function hostOf(family: 'ipv4' | 'ipv6', h: HostEntry): DhcpHostSpec {
  if (family === 'ipv4') {
    if (h.mac === undefined) missing('dhcp host mac', h.ip, 'IPv4 hosts are matched by MAC');
    return { family, mac: h.mac, ip: h.ip, ...(h.name !== undefined && { name: h.name }) };
  }
  return { family, ip: h.ip, ...(h.name !== undefined && { name: h.name }), ...(h.id !== undefined && { id: h.id }) };
}

// IPv6 <host>s are matched by DUID (`id`) or hostname; libvirt rejects a `mac` on them.
function appendHost(parent: Builder, h: DhcpHostSpec): void {
  const attrs: Record<string, string> = {};
  if (h.family === 'ipv4') {
    attrs.mac = macAddress(h.mac);
  } else {
    if (h.id === undefined && h.name === undefined) missing('dhcp host id/name', h.ip, 'IPv6 hosts need a DUID or a name');
    if (h.id !== undefined) attrs.id = attr('dhcp host id', h.id);
  }
  if (h.name !== undefined) attrs.name = attr('dhcp host name', h.name);
  attrs.ip = attr('dhcp host ip', h.ip);
  parent.ele('host', attrs);
}

function parseIp(ip: El): ParsedNetwork['ips'][number] {
  const familyAttr = ip.attr('family') ?? 'ipv4';
  if (familyAttr !== 'ipv4' && familyAttr !== 'ipv6') throw new XmlParseError(`<ip family=${JSON.stringify(familyAttr)}>`);
  const address = ip.requiredAttr('address');
  const prefixAttr = ip.attr('prefix');
  const netmask = ip.attr('netmask');
  let length: number;
  if (prefixAttr !== undefined) length = Number(prefixAttr);
  else if (netmask !== undefined) length = netmaskLength(netmask);
  else length = familyAttr === 'ipv4' ? classfulPrefix(address) : 64;
  if (!Number.isInteger(length)) throw new XmlParseError(`<ip address=${JSON.stringify(address)}> has no usable prefix`);
  const dhcp = ip.child('dhcp');
  const hosts = (dhcp?.children('host') ?? []).map((h) => {
    const host: { mac?: string; id?: string; name?: string; ip: string } = { ip: h.attr('ip') ?? '' };
    for (const key of ['mac', 'id', 'name'] as const) {
      const value = h.attr(key);
      if (value !== undefined) host[key] = value;
    }
    return host;
  });
  return {
    family: familyAttr,
    address,
    prefix: length,
    hasDhcp: dhcp !== undefined && (dhcp.children('range').length > 0 || hosts.length > 0),
    hosts,
  };
}

function netmaskLength(netmask: string): number {
  const octets = netmask.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) {
    throw new XmlParseError(`netmask ${JSON.stringify(netmask)}`);
  }
  const bits = octets.map((o) => o.toString(2).padStart(8, '0')).join('');
  if (!/^1*0*$/.test(bits)) throw new XmlParseError(`netmask ${JSON.stringify(netmask)} is not contiguous`);
  return bits.indexOf('0') === -1 ? 32 : bits.indexOf('0');
}

// What libvirt itself assumes for an IPv4 <ip> with neither prefix nor netmask.
function classfulPrefix(address: string): number {
  const first = Number(address.split('.')[0]);
  return first < 128 ? 8 : first < 192 ? 16 : 24;
}

export function prefix(family: 'ipv4' | 'ipv6', value: number): string {
  const max = family === 'ipv4' ? 32 : 128;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new XmlRenderError('prefix', String(value), `must be an integer 0..${max} for ${family}`);
  }
  return String(value);
}


function missing(field: string, context: string, reason: string): never {
  throw new XmlRenderError(field, context, reason);
}
