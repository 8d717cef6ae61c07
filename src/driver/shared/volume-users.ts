// Nothing the CPI deletes may be in use. libvirt deletes a volume that a running domain
// has open without a word, and that domain's XML goes on naming a file that is gone, so
// before removing volumes the CPI asks every domain on the host (any name, any prefix,
// hand-made ones too; the live and the persistent definition) whether one of its disks,
// or a backing file under one, is one of them. One listing and the domains' XML per call.
// Backing files count too (a stemcell under an overlay, a snapshot someone based a disk
// on): a running domain's XML shows its whole chain; for a stopped one the chain is read
// from the volumes of this pool its disks use (one level: the CPI's overlays have one).
import type { Host } from './host.js';
import { findVolume, volumeDetails } from './host.js';
import { parseRoot, type El } from '../../xml/dom.js';
import { DomainXMLFlags, ErrorCode, ListAllDomainsFlags, isLibvirtError, type DomainRef, type VolRef } from '../../libvirt/index.js';

/** Where a volume of the pool lives (directory pools: the pool's path and the name). */
export function volumePath(host: Host, name: string): string {
  return `${host.poolPath}/${name}`;
}

export interface UsersOptions {
  /** a domain whose own use does not count (delete_vm removing that domain's volumes) */
  except?: string;
}

/** The paths among `paths` some domain uses, each with the names of the domains using it. */
export async function volumeUsers(host: Host, paths: string[], opts: UsersOptions = {}): Promise<Map<string, string[]>> {
  const wanted = new Set(paths);
  const users = new Map<string, string[]>();
  if (wanted.size === 0) return users;
  const running = new Set((await host.conn.domains.listAll(ListAllDomainsFlags.ACTIVE)).map((d) => d.name));
  for (const dom of await host.conn.domains.listAll(0)) {
    if (dom.name === opts.except) continue;
    let files: Set<string>;
    try {
      files = await filesOf(host, dom, running.has(dom.name));
    } catch (e) {
      if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) continue; // undefined meanwhile: it uses nothing
      throw e;
    }
    for (const f of files) if (wanted.has(f)) users.set(f, [...(users.get(f) ?? []), dom.name]);
  }
  return users;
}

/** The names of the domains using any of `paths`. */
export async function domainsUsing(host: Host, paths: string[], opts: UsersOptions = {}): Promise<string[]> {
  return [...new Set([...(await volumeUsers(host, paths, opts)).values()].flat())];
}

async function filesOf(host: Host, dom: DomainRef, running: boolean): Promise<Set<string>> {
  // A running domain's persistent definition may name disks its live one does not
  // (attached with CONFIG only): both count.
  const xmls = [await host.conn.domains.getXMLDesc(dom, 0)];
  if (running) xmls.push(await host.conn.domains.getXMLDesc(dom, DomainXMLFlags.INACTIVE));
  const files = new Set<string>();
  const tops: string[] = [];
  for (const xml of xmls) {
    for (const disk of parseRoot(xml, 'domain').child('devices')?.children('disk') ?? []) {
      const chain = chainFiles(host, disk);
      if (chain[0] !== undefined) tops.push(chain[0]);
      for (const f of chain) files.add(f);
    }
  }
  if (!running) {
    for (const top of new Set(tops)) {
      const name = top.startsWith(`${host.poolPath}/`) ? top.slice(host.poolPath.length + 1) : undefined;
      const vol = name && !name.includes('/') ? await findVolume(host, name) : null;
      const under = vol ? await backingOf(host, vol) : undefined;
      if (under) files.add(under);
    }
  }
  return files;
}

/** The file under an overlay; none when the volume went meanwhile (a delete_vm running beside this one). */
async function backingOf(host: Host, vol: VolRef): Promise<string | undefined> {
  try {
    return (await volumeDetails(host, vol)).backing?.path;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return undefined;
    throw e;
  }
}

/** A disk's source file and, where libvirt shows it, every backing file under it. */
function chainFiles(host: Host, disk: El): string[] {
  const out: string[] = [];
  for (let node: El | undefined = disk; node; node = node.child('backingStore')) {
    const source = node.child('source');
    // `<disk type='volume'><source pool= volume=>` names a volume rather than its file.
    const pooled = source?.attr('pool') === host.config.storage.pool ? source?.attr('volume') : undefined;
    const file = source?.attr('file') ?? source?.attr('dev') ?? (pooled !== undefined ? volumePath(host, pooled) : undefined);
    if (file) out.push(file);
  }
  return out;
}
