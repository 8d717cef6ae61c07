// What `orphans` can judge only across hosts (a config with several hosts): forwarding
// records `<disk>.moved` on a disk's birth host that point at a host not holding the
// disk. delete_disk leaves one when the birth host is down at the time; a move cut
// between its steps can too. A lookup never depends on such a record (it asks every
// host when the record leads nowhere), so removing it is always safe; a record whose
// target cannot be asked (down, or no longer configured) is left alone and said. Also a
// move's verified copy (move.ts) whose original still lives on another host.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { listVolumeNames } from '../driver/shared/host.js';
import { parseOwnedName } from '../driver/cids.js';
import { deleteRecord, readForward } from '../hosts/locate.js';
import { copyState, lookup, partialMarkerName, type VolumeHome } from '../hosts/move.js';
import type { OrphanReport } from './orphans.js';
import { existingPoolHost, openConnection } from './common.js';
import { Suffix } from '../driver/shared/names.js';

export interface ScopedHost {
  name: string;
  config: Config;
}

/** Adds to each host's report what only other hosts can judge (removing it with `--delete`). */
export async function addCrossHostOrphans(hosts: readonly ScopedHost[], reports: Record<string, OrphanReport | { error: string }>, log: Logger, opts: { delete: boolean }): Promise<void> {
  const homes = new Map<string, { home: VolumeHome; names: string[] } | null>();
  const closers: Array<() => Promise<void>> = [];
  try {
    for (const h of hosts) {
      try {
        const conn = await openConnection(h.config);
        closers.push(() => conn.close().catch(() => undefined));
        const host = await existingPoolHost(conn, h.config, log);
        homes.set(h.name, host ? { home: { host: h.name, conn, pool: host.pool }, names: await listVolumeNames(host) } : null);
      } catch {
        homes.set(h.name, null);
      }
    }
    for (const h of hosts) {
      const report = reports[h.name];
      const here = homes.get(h.name);
      if (!here || !report || 'error' in report) continue;
      const { home } = here;
      const prefix = h.config.name_prefix;
      for (const name of here.names) {
        const owned = parseOwnedName(prefix, name);
        if (owned?.kind !== 'disk' || owned.suffix !== Suffix.moved) continue;
        const target = await readForward(home, owned.cid);
        if (target === null) continue; // removed meanwhile
        const there = homes.get(target);
        if (there === undefined || there === null) {
          report.skippedYoung.push(`${name} (points at host ${target}, which ${there === undefined ? 'is not configured' : 'cannot be asked'})`);
          continue;
        }
        if ((await lookup(there.home, owned.cid)) && (await copyState(there.home, owned.cid)) !== 'copying') continue;
        report.orphans.push({ kind: 'volume', name, reason: `forwarding record of disk ${owned.cid}: points at host ${target}, which does not hold the disk (deleted while this host was down, or a move cut short)` });
        if (!opts.delete) continue;
        try {
          await deleteRecord(home, name);
          report.deleted.push(name);
        } catch (e) {
          report.failed.push({ name, error: (e as Error).message });
        }
      }
    }
    // A verified copy next to an unmarked one on another host: a move stopped before
    // removing the original, and the disk went on living there. Copy first, then marker.
    for (const h of hosts) {
      const report = reports[h.name];
      const here = homes.get(h.name);
      if (!here || !report || 'error' in report) continue;
      for (const marker of here.names) {
        const owned = parseOwnedName(h.config.name_prefix, marker);
        if (owned?.kind !== 'disk' || owned.suffix !== Suffix.partial) continue;
        if ((await copyState(here.home, owned.cid)) !== 'verified') continue;
        let original: string | undefined;
        for (const [name, other] of homes) {
          if (name === h.name || !other) continue;
          if ((await lookup(other.home, owned.cid)) && (await copyState(other.home, owned.cid)) === 'none') original = name;
        }
        if (!original) continue; // the only copy: the next lookup makes it the disk
        const why = `a move of disk ${owned.cid} to this host that stopped before removing the original, which lives on at host ${original}`;
        report.orphans.push({ kind: 'volume', name: owned.cid, reason: `verified copy from ${why}; removed before its marker` });
        report.orphans.push({ kind: 'volume', name: partialMarkerName(owned.cid), reason: `marker of ${why}` });
        if (!opts.delete) continue;
        try {
          await deleteRecord(here.home, owned.cid);
          report.deleted.push(owned.cid);
          await deleteRecord(here.home, marker);
          report.deleted.push(marker);
        } catch (e) {
          report.failed.push({ name: owned.cid, error: (e as Error).message });
        }
      }
    }
  } finally {
    for (const close of closers) await close();
  }
}
