// `hosts`: each configured libvirt host's capacity and what this CPI placed there — the
// numbers create_vm places by (src/hosts/placement.ts). Read-only.
import type { Config } from '../config/schema.js';
import { isMultiHost, resolveHosts } from '../config/hosts.js';
import { hostScopedConfig } from '../hosts/driver.js';
import { hostCapacity } from '../hosts/capacity.js';
import { headroomMiB, type HostState } from '../hosts/placement.js';
import { openConnection } from './common.js';

export interface HostRow extends HostState {
  uri: string;
  headroomMiB: number;
  poolFreeBytes?: number;
  placedDisks: number;
}

export async function hostRows(config: Config): Promise<HostRow[]> {
  const rows: HostRow[] = [];
  for (const h of resolveHosts(config)) {
    const scoped = isMultiHost(config) ? hostScopedConfig(config, h) : config;
    const base = { name: h.name, uri: h.libvirt.uri, totalMemoryMiB: 0, freeMemoryMiB: 0, placedMemoryMiB: 0, placedVms: 0, placedDisks: 0, headroomMiB: 0 };
    try {
      const conn = await openConnection(scoped);
      try {
        const cap = await hostCapacity(conn, config.name_prefix);
        const row: HostRow = { ...base, ...cap, down: null, headroomMiB: 0 };
        row.headroomMiB = headroomMiB(row);
        const pool = await conn.pools.lookupByName(h.storage.pool).catch(() => null);
        if (pool) {
          row.poolFreeBytes = Number((await conn.pools.getInfo(pool)).available);
          const diskRe = new RegExp(`^${config.name_prefix.replace(/[-]/g, '\\-')}disk-[0-9a-f-]{36}$`);
          row.placedDisks = (await conn.pools.listAllVolumes(pool)).filter((v) => diskRe.test(v.name)).length;
        }
        rows.push(row);
      } finally {
        await conn.close().catch(() => undefined);
      }
    } catch (e) {
      rows.push({ ...base, down: (e as Error).message });
    }
  }
  return rows;
}

export function printHosts(rows: HostRow[], out: NodeJS.WritableStream = process.stdout): void {
  const GiB = 1024 ** 3;
  for (const r of rows) {
    if (r.down !== null) {
      out.write(`${r.name}  DOWN  ${r.uri}: ${r.down}\n`);
      continue;
    }
    const pool = r.poolFreeBytes === undefined ? 'pool missing' : `pool ${(r.poolFreeBytes / GiB).toFixed(1)} GiB free`;
    out.write(`${r.name}  UP    ${r.uri}: memory ${r.totalMemoryMiB} MiB, ${r.freeMemoryMiB} MiB free, ${r.placedMemoryMiB} MiB in ${r.placedVms} VM(s) of this CPI, ${r.headroomMiB} MiB to place; ${pool}, ${r.placedDisks} disk(s)\n`);
  }
}
