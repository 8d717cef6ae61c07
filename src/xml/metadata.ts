import type { Builder } from './builder.js';
import { document, serialize } from './builder.js';
import { El, parseRoot } from './dom.js';
import { XmlParseError } from './errors.js';
import { decodeString, encodeString, forXmlbuilder, survivesAsAttribute, survivesAsText } from './text.js';
import type { VmMetadata } from './types.js';
import { BOSH_METADATA_NS, BOSH_METADATA_PREFIX } from './types.js';

/**
 * The metadata element alone, for DOMAIN_SET_METADATA (type ELEMENT, key
 * BOSH_METADATA_PREFIX, uri BOSH_METADATA_NS). It is deliberately *un-namespaced*:
 * libvirt (virXMLInjectNamespace) declares the prefix on the element itself and binds
 * every unbound element to it; a fragment that already declares `xmlns:bosh` is refused
 * with "failed to create a new XML namespace". DOMAIN_GET_METADATA hands it back the same
 * naked way; inside a domain document it appears as <bosh:vm xmlns:bosh=…>.
 *
 * Tags come from users and can hold anything, so keys are attributes (never element
 * names) and any string plain XML cannot carry exactly is stored base64-encoded with an
 * `encoding` marker; parseVmMetadata(renderVmMetadata(m)) equals m for every m.
 */
export function renderVmMetadata(m: VmMetadata): string {
  const doc = document();
  appendVmMetadata(doc, m, { namespaced: false });
  return serialize(doc);
}

/** Reads the element back, from renderVmMetadata, DOMAIN_GET_METADATA or a whole domain. */
export function parseVmMetadata(xml: string): VmMetadata {
  const root = parseRoot(xml, 'vm', 'domain');
  const vm = root.name === 'domain' ? findVmElement(root.child('metadata')) : root;
  if (!vm || vm.name !== 'vm') throw new XmlParseError('no <bosh:vm> metadata element');

  const m: VmMetadata = {
    agentId: readText(vm.required('agent-id')),
    stemcellCid: readText(vm.required('stemcell-cid')),
    volumes: list(vm, 'volumes', 'volume').map((v) => readAttr(v, 'name')),
    disks: list(vm, 'disks', 'disk').map((d) => ({
      cid: readAttr(d, 'cid'),
      serial: readAttr(d, 'serial'),
      target: readAttr(d, 'target'),
      ...(d.attr('as') !== undefined ? { as: readAttr(d, 'as') } : {}),
    })),
    macs: list(vm, 'macs', 'mac').map((x) => readAttr(x, 'address')),
    prefixes: list(vm, 'prefixes', 'prefix').map((p) => ({
      prefix: readAttr(p, 'prefix'),
      via: readAttr(p, 'via'),
      network: readAttr(p, 'network'),
    })),
    reservations: list(vm, 'reservations', 'reservation').map((r) => {
      const family = readAttr(r, 'family');
      if (family !== 'ipv4' && family !== 'ipv6') throw new XmlParseError(`reservation family ${JSON.stringify(family)}`);
      const out: VmMetadata['reservations'][number] = { network: readAttr(r, 'network'), family, ip: readAttr(r, 'ip') };
      if (r.attr('mac') !== undefined) out.mac = readAttr(r, 'mac');
      if (r.attr('name') !== undefined) out.name = readAttr(r, 'name');
      return out;
    }),
    tags: {},
  };
  if (vm.child('addresses')) {
    m.addresses = list(vm, 'addresses', 'address').map((a) => {
      const out: NonNullable<VmMetadata['addresses']>[number] = { network: readAttr(a, 'network'), ip: readAttr(a, 'ip') };
      const prefix = a.attr('prefix');
      if (prefix !== undefined) {
        const n = Number(prefix);
        if (!Number.isInteger(n) || n < 0 || n > 128) throw new XmlParseError(`address prefix ${JSON.stringify(prefix)}`);
        out.prefix = n;
      }
      return out;
    });
  }
  for (const tag of list(vm, 'tags', 'tag')) {
    // defineProperty: a tag called "__proto__" is data, not a prototype switch.
    Object.defineProperty(m.tags, readAttr(tag, 'key'), { value: readText(tag), enumerable: true, writable: true, configurable: true });
  }
  const api = vm.textOf('stemcell-api-version');
  if (api !== undefined) {
    const n = Number(api);
    if (!Number.isSafeInteger(n)) throw new XmlParseError(`stemcell-api-version ${JSON.stringify(api)}`);
    m.stemcellApiVersion = n;
  }
  const creating = vm.child('creating');
  if (creating) {
    const pid = Number(readAttr(creating, 'pid'));
    if (!Number.isSafeInteger(pid)) throw new XmlParseError(`creating pid ${JSON.stringify(creating.attr('pid'))}`);
    m.creating = { host: readAttr(creating, 'host'), pid, start: readAttr(creating, 'start'), at: readAttr(creating, 'at') };
  }
  return m;
}

/**
 * Adds the element under `parent`: namespaced for a domain's <metadata>, naked for
 * DOMAIN_SET_METADATA (see renderVmMetadata).
 */
export function appendVmMetadata(parent: Builder, m: VmMetadata, { namespaced = true } = {}): void {
  const el = (p: Builder, name: string, attrs: Record<string, string> = {}): Builder => {
    const node = namespaced ? p.ele(BOSH_METADATA_NS, `${BOSH_METADATA_PREFIX}:${name}`) : p.ele(name);
    for (const [k, v] of Object.entries(attrs)) writeAttr(node, k, v);
    return node;
  };
  const vm = el(parent, 'vm');
  writeText(el(vm, 'agent-id'), m.agentId);
  writeText(el(vm, 'stemcell-cid'), m.stemcellCid);
  if (m.stemcellApiVersion !== undefined) el(vm, 'stemcell-api-version').txt(String(m.stemcellApiVersion));
  const volumes = el(vm, 'volumes');
  for (const name of m.volumes) el(volumes, 'volume', { name });
  const disks = el(vm, 'disks');
  for (const d of m.disks) el(disks, 'disk', { cid: d.cid, serial: d.serial, target: d.target, ...(d.as !== undefined ? { as: d.as } : {}) });
  const macs = el(vm, 'macs');
  for (const address of m.macs) el(macs, 'mac', { address });
  const prefixes = el(vm, 'prefixes');
  for (const p of m.prefixes) el(prefixes, 'prefix', { prefix: p.prefix, via: p.via, network: p.network });
  const reservations = el(vm, 'reservations');
  for (const r of m.reservations) {
    const attrs: Record<string, string> = { network: r.network, family: r.family, ip: r.ip };
    if (r.mac !== undefined) attrs.mac = r.mac;
    if (r.name !== undefined) attrs.name = r.name;
    el(reservations, 'reservation', attrs);
  }
  if (m.addresses !== undefined) {
    const addresses = el(vm, 'addresses');
    for (const a of m.addresses) el(addresses, 'address', { network: a.network, ip: a.ip, ...(a.prefix !== undefined ? { prefix: String(a.prefix) } : {}) });
  }
  const tags = el(vm, 'tags');
  for (const [key, value] of Object.entries(m.tags)) writeText(el(tags, 'tag', { key }), value);
  if (m.creating) el(vm, 'creating', { host: m.creating.host, pid: String(m.creating.pid), start: m.creating.start, at: m.creating.at });
}

function writeText(node: Builder, value: string): void {
  if (survivesAsText(value)) {
    if (value !== '') node.txt(forXmlbuilder(value));
    return;
  }
  const { encoding, data } = encodeString(value);
  node.att('encoding', encoding).txt(data);
}

function writeAttr(node: Builder, name: string, value: string): void {
  if (survivesAsAttribute(value)) {
    node.att(name, forXmlbuilder(value));
    return;
  }
  const { encoding, data } = encodeString(value);
  node.att(name, data).att(`${name}-encoding`, encoding);
}

function readText(el: El): string {
  return decodeString(el.text, el.attr('encoding') ?? null);
}

function readAttr(el: El, name: string): string {
  return decodeString(el.requiredAttr(name), el.attr(`${name}-encoding`) ?? null);
}

function list(vm: El, container: string, item: string): El[] {
  return vm.child(container)?.children(item) ?? [];
}

function findVmElement(metadata: El | undefined): El | undefined {
  const candidates = metadata?.children('vm') ?? [];
  return candidates.find((c) => c.namespace === BOSH_METADATA_NS) ?? candidates[0];
}

