// Reading what a domain's or volume's XML says without a full parse into the typed
// shapes: whether a domain carries this CPI's <bosh:vm> record, and a volume's size and
// file times (orphans judges a volume's age by them, a lock's age by its ctime), and a
// domain's memory (placement counts what the VMs on a host were given).
import { parseRoot, type El } from './dom.js';
import { BOSH_METADATA_NS, type VmMetadata } from './types.js';
import { parseVmMetadata } from './metadata.js';
import { XmlParseError } from './errors.js';

/** Whether the domain XML holds a <metadata> element in this CPI's namespace (readable or not). */
export function hasVmMetadata(domainXml: string): boolean {
  const metadata = parseRoot(domainXml, 'domain').child('metadata');
  return (metadata?.children() ?? []).some((c) => c.namespace === BOSH_METADATA_NS);
}

/** The domain's <bosh:vm> record; null when it has none; XmlParseError when it has one that cannot be read. */
export function vmMetadataOf(domainXml: string): VmMetadata | null {
  try {
    return parseVmMetadata(domainXml);
  } catch (e) {
    if (e instanceof XmlParseError && !hasVmMetadata(domainXml)) return null;
    throw e;
  }
}

/** The domain's <memory> in KiB (libvirt reports it so); undefined when it is given in another unit or not at all. */
export function domainMemoryKiB(domainXml: string): number | undefined {
  const memory = parseRoot(domainXml, 'domain').child('memory');
  if (!memory || memory.attr('unit') !== 'KiB' || !/^\d+$/.test(memory.text.trim())) return undefined;
  return Number(memory.text.trim());
}

export interface VolumeFacts {
  /** bytes the volume occupies */
  allocationBytes: number;
  /** seconds since the epoch, where the pool reports them (directory pools do) */
  mtime?: number;
  ctime?: number;
}

/** A volume's allocation and file times from its XML. */
export function parseVolumeFacts(volumeXml: string): VolumeFacts {
  const vol = parseRoot(volumeXml, 'volume');
  const stamps = vol.at('target', 'timestamps');
  const time = (name: string): number | undefined => {
    const t = Number(text(stamps?.child(name)));
    return text(stamps?.child(name)) !== '' && Number.isFinite(t) ? t : undefined;
  };
  const mtime = time('mtime');
  const ctime = time('ctime');
  return {
    allocationBytes: Number(text(vol.child('allocation')) || 0),
    ...(mtime !== undefined ? { mtime } : {}),
    ...(ctime !== undefined ? { ctime } : {}),
  };
}

function text(el: El | undefined): string {
  return el?.text.trim() ?? '';
}
