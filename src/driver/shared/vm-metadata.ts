// What the CPI knows about a VM (its record: agent id, stemcell, owned volumes, attached
// disks, MACs, prefixes, DHCP reservations, tags) lives, for qemu and lxc, in the
// domain's <metadata> element in the project's namespace: domainRecords below, the
// VmRecordStore those profiles pass. Reading it is how delete_vm knows what to remove.
import type { Host } from './host.js';
import { isLibvirtError, ErrorCode, MetadataType, AffectFlags, DomainState, type DomainRef } from '../../libvirt/index.js';
import { BOSH_METADATA_NS, BOSH_METADATA_PREFIX, XmlParseError, parseVmMetadata, renderVmMetadata, type VmMetadata } from '../../xml/index.js';
import { isCid } from '../cids.js';
import { vmMetadataOf } from '../../xml/records.js';
import type { VmRecordStore } from './profile.js';

export async function readVmMetadata(host: Host, dom: DomainRef): Promise<VmMetadata | null> {
  try {
    return parseVmMetadata(await host.conn.domains.getMetadata(dom, MetadataType.ELEMENT, BOSH_METADATA_NS, 0));
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN_METADATA)) return null;
    throw e;
  }
}

/** Live and persistent config when the domain runs (CURRENT alone would be lost at the next start). */
export async function affectFlags(host: Host, dom: DomainRef): Promise<number> {
  const { state } = await host.conn.domains.getState(dom, 0);
  return state === DomainState.SHUTOFF ? AffectFlags.CONFIG : AffectFlags.CONFIG | AffectFlags.LIVE;
}

export async function writeVmMetadata(host: Host, dom: DomainRef, m: VmMetadata): Promise<void> {
  await host.conn.domains.setMetadata(dom, MetadataType.ELEMENT, renderVmMetadata(m), BOSH_METADATA_PREFIX, BOSH_METADATA_NS, await affectFlags(host, dom));
}

/** Every domain this CPI (with this name prefix) made, with its metadata. */
export async function listVmMetadata(host: Host): Promise<Array<{ name: string; dom: DomainRef; metadata: VmMetadata }>> {
  const prefix = host.config.name_prefix;
  const out: Array<{ name: string; dom: DomainRef; metadata: VmMetadata }> = [];
  for (const dom of await host.conn.domains.listAll(0)) {
    if (!isCid(dom.name, 'vm', prefix)) continue;
    try {
      const metadata = await readVmMetadata(host, dom);
      if (metadata) out.push({ name: dom.name, dom, metadata });
    } catch (e) {
      if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) continue; // deleted meanwhile
      // One domain with unreadable metadata must not break every caller host-wide.
      if (e instanceof XmlParseError) {
        host.log.warn({ domain: dom.name, err: e.message }, 'ignoring unreadable bosh metadata');
        continue;
      }
      throw e;
    }
  }
  return out;
}

/** The record as the domain's <bosh:vm> metadata element: what qemu and lxc keep. */
export const domainRecords: VmRecordStore = {
  keeps: 'domain',
  async read(host, dom, xml) {
    if (xml === undefined) return readVmMetadata(host, dom);
    return vmMetadataOf(xml);
  },
  write: writeVmMetadata,
  list: listVmMetadata,
  async setTitle(host, dom, title) {
    await host.conn.domains.setMetadata(dom, MetadataType.TITLE, title, null, null, await affectFlags(host, dom));
  },
  async remove() {
    // the record went with the domain
  },
};
