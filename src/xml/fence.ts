import { document, serialize } from './builder.js';
import { El, parseXml } from './dom.js';
import { XmlRenderError } from './errors.js';
import { forXmlbuilder, objectName, survivesAsAttribute, text } from './text.js';
import type { FenceDomainSpec, FenceRecord } from './types.js';
import { FENCE_NS } from './types.js';

// A fence domain (src/driver/shared/fence.ts) holds a VM's name so that a define whose
// answer was lost can never land. Its record lives in one element,
// <fence xmlns="urn:bosh-libvirt-cpi:fence:1" of=… reason=… host=… pid=… start=… at=…/>.
// libvirt keeps that element as it was given (default namespace, attributes in order);
// the parser also reads it with a prefix (<f:fence xmlns:f=…>, as DOMAIN_SET_METADATA
// would write it), with attributes in any order and either quote.

const RECORD_ATTRS = ['of', 'reason', 'host', 'pid', 'start', 'at'] as const;

/** The <domain> of a fence for DOMAIN_DEFINE_XML: whatever `type` accepts without disks or devices. */
export function renderFenceDomain(spec: FenceDomainSpec): string {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(spec.uuid)) {
    throw new XmlRenderError('fence uuid', spec.uuid, 'is not a UUID');
  }
  const { record } = spec;
  const doc = document();
  const domain = doc.ele('domain', { type: forXmlbuilder(spec.type) });
  domain.ele('name').txt(objectName('fence name', record.of));
  domain.ele('uuid').txt(spec.uuid);
  domain.ele('title').txt(text('fence title', `fence of ${record.of} (bosh-libvirt-cpi): not a VM`));
  domain.ele('memory', { unit: 'MiB' }).txt('16');
  domain.ele('vcpu').txt('1');
  const os = domain.ele('os');
  if (spec.type === 'lxc') {
    os.ele('type').txt('exe');
    os.ele('init').txt('/sbin/init');
  } else if (spec.type === 'test') {
    os.ele('type').txt('hvm');
  } else {
    os.ele('type', { arch: 'x86_64' }).txt('hvm');
  }
  const fence = domain.ele('metadata').ele(FENCE_NS, 'fence');
  for (const k of RECORD_ATTRS) fence.att(k, forXmlbuilder(words(String(record[k]))));
  return serialize(doc);
}

/**
 * The fence's record, when `xml` is a domain carrying one; undefined for any other
 * domain (a VM, a foreign domain). A missing attribute reads as '' (pid: 0), as it
 * always has. Throws XmlParseError only for XML that is not well-formed.
 */
export function parseFence(xml: string): FenceRecord | undefined {
  const root = new El(parseXml(xml));
  if (root.name !== 'domain') return undefined;
  const el = root.child('metadata')?.children('fence').find((c) => c.namespace === FENCE_NS);
  if (!el) return undefined;
  const a = (k: string) => el.attr(k) ?? '';
  return { of: a('of'), reason: a('reason'), host: a('host'), pid: Number(a('pid')), start: a('start'), at: a('at') };
}

/**
 * The record is words for people: a character an attribute cannot carry (a newline in an
 * error message, a control character) becomes a space, which is what XML's attribute
 * normalisation made of tabs and newlines anyway.
 */
function words(value: string): string {
  if (survivesAsAttribute(value)) return value;
  return Array.from(value, (c) => (survivesAsAttribute(c) ? c : ' ')).join('');
}
