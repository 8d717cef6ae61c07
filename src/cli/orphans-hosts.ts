// What `orphans` can judge only across hosts (a config with several hosts): forwarding
// records `<disk>.moved` on a disk's birth host that point at a host not holding the
// disk. delete_disk leaves one when the birth host is down at the time; a move cut
// between its steps can too. A lookup never depends on such a record (it asks every
// host when the record leads nowhere), so removing it is always safe; a record whose
// target cannot be asked (down, or no longer configured) is left alone and said.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { listVolumeNames, type Host } from '../driver/libvirt/host.js';
import { parseOwnedName } from '../driver/cids.js';
import { deleteRecord, readForward } from '../hosts/locate.js';
import { isPartialCopy, lookup, type VolumeHome } from '../hosts/move.js';
import type { OrphanReport } from './orphans.js';
import { existingPoolHost, openConnection } from './common.js';

export interface ScopedHost {
  name: string;
  config: Config;
}

/** Adds each host's stale forwarding records to its report (removing them with `--delete`). */
export async function addStaleForwardingRecords(hosts: readonly ScopedHost[], reports: Record<string, OrphanReport | { error: string }>, log: Logger, opts: { delete: boolean }): Promise<void> {
  const homes = new Map<string, { host: Host; home: VolumeHome } | null>();
  const closers: Array<() => Promise<void>> = [];
  try {
    for (const h of hosts) {
      try {
        const conn = await openConnection(h.config);
        closers.push(() => conn.close().catch(() => undefined));
        const host = await existingPoolHost(conn, h.config, log);
        homes.set(h.name, host ? { host, home: { host: h.name, conn, pool: host.pool } } : null);
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
      for (const name of await listVolumeNames(here.host)) {
        const owned = parseOwnedName(prefix, name);
        if (owned?.kind !== 'disk' || owned.suffix !== 'moved') continue;
        const target = await readForward(home, owned.cid);
        if (target === null) continue; // removed meanwhile
        const there = homes.get(target);
        if (there === undefined || there === null) {
          report.skippedYoung.push(`${name} (points at host ${target}, which ${there === undefined ? 'is not configured' : 'cannot be asked'})`);
          continue;
        }
        if ((await lookup(there.home, owned.cid)) && !(await isPartialCopy(there.home, owned.cid))) continue;
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
  } finally {
    for (const close of closers) await close();
  }
}
