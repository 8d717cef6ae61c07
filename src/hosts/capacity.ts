// What placement (and the `hosts` command) knows of a host: its memory, what is free,
// and the VMs this CPI placed there (its name prefix), each counted at its configured
// size. Read-only.
import type { Connection } from '../libvirt/api.js';
import type { HostState } from './placement.js';
import { parseOwnedName } from '../driver/cids.js';
import { domainMemoryKiB } from '../xml/records.js';

const MiB = 1024 * 1024;

export async function hostCapacity(conn: Connection, prefix: string): Promise<Omit<HostState, 'name' | 'down'>> {
  const free = Number((await conn.nodeFreeMemory()) / BigInt(MiB));
  // NUMA cells' memory in the capabilities; hosts that list none count what is free
  const cells = [...(await conn.capabilities()).matchAll(/<cell id=[^>]*>\s*<memory unit='KiB'>(\d+)</g)].reduce((s, m) => s + Number(m[1]), 0);
  const total = cells > 0 ? Math.floor(cells / 1024) : free;
  let placed = 0;
  let vms = 0;
  for (const dom of await conn.domains.listAll(0)) {
    const owned = parseOwnedName(prefix, dom.name);
    if (owned?.kind !== 'vm' || owned.suffix !== undefined) continue;
    // (a VM deleted meanwhile simply does not count)
    const xml = await conn.domains.getXMLDesc(dom, 0).catch(() => '');
    const kib = xml ? domainMemoryKiB(xml) : undefined;
    if (kib === undefined) continue;
    placed += Math.floor(kib / 1024);
    vms++;
  }
  return { totalMemoryMiB: total, freeMemoryMiB: free, placedMemoryMiB: placed, placedVms: vms };
}
