// `orphans`: resources with this CPI's names that nothing references any more, found
// by listing (names are the index). Only things the CPI itself owns are candidates:
//   - `<vm-cid>.<suffix>` volumes (root, ephemeral, config, settings) whose VM domain is gone;
//   - `<cid>.meta` sidecars whose stemcell, disk or snapshot volume is gone;
//   - domains named like this CPI's VMs that carry no bosh metadata.
//   - snapshot volumes without their sidecar (snapshot_disk never returned them);
//   - stemcell volumes without their sidecar (create_stemcell writes it last);
//   - domains still marked as being created whose creator is gone (create_vm never returned);
//   - with several hosts, a disk's birth record (`.born`) without the disk next to it, and a
//     half copy of a move with its empty `.partial` marker, both unchanged for --min-age;
//     what only other hosts can judge is in orphans-hosts.ts.
// Persistent disks, stemcells and finished snapshots are the director's: never orphans here.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Host } from '../driver/shared/host.js';
import { deleteVolumeIfExists, findVolume, listVolumeNames } from '../driver/shared/host.js';
import { sweepClaims } from '../driver/shared/address-holders.js';
import { deleteVM, type DeleteVmSteps } from '../driver/shared/vms.js';
import { backendForUri, type Backend } from '../driver/backends.js';
import { CliError } from './common.js';
import type { StateStores } from '../driver/shared/profile.js';
import { nativeStores } from '../driver/shared/native.js';
import { loadProfile } from '../driver/profiles.js';
import { volumePath, volumeUsers } from '../driver/shared/volume-users.js';
import { parseOwnedName, type VMCID } from '../driver/cids.js';
import { isLibvirtError, ErrorCode, DomainState, UndefineFlags } from '../libvirt/index.js';
import { creatorState, markerAgeSeconds } from '../driver/shared/creator.js';
import { parseFence, type VmMetadata, XmlParseError } from '../xml/index.js';
import { hasVmMetadata, parseVolumeFacts, vmMetadataOf } from '../xml/records.js';
import { existingPoolHost, formatBytes, openConnection } from './common.js';
import { copyState } from '../hosts/move.js';
import { fenceDomainType, fenceName, mayBeFence, uuidString } from '../driver/shared/fence.js';
import { ADDRESS_LOCK_VOLUME, CLAIMS_VOLUME, Suffix, hasSuffix, sidecarName, withoutSuffix } from '../driver/shared/names.js';

export interface Orphan {
  kind: 'volume' | 'domain';
  name: string;
  reason: string;
  /** allocated bytes of a volume */
  bytes?: number;
  /** seconds since the volume file last changed, when the pool reports it */
  ageSeconds?: number;
  /** a fence domain (its uuid): removed only while it is still that fence */
  fence?: string;
}

// One definition of "this CPI's name" for the CPI and the operator CLI alike.
export { parseOwnedName };

export interface DomainFacts {
  name: string;
  hasMetadata: boolean;
  /** why this domain is an unfinished create_vm whose creator is gone (see unfinishedCreate) */
  unfinished?: string;
}

/** Pure: which names are orphans, given the domains (with whether they carry metadata) and the volumes. */
export function classify(prefix: string, domains: DomainFacts[], volumes: string[]): Orphan[] {
  const out: Orphan[] = [];
  const domainNames = new Set(domains.map((d) => d.name));
  const volumeNames = new Set(volumes);
  for (const d of domains) {
    const owned = parseOwnedName(prefix, d.name);
    if (owned?.kind !== 'vm' || owned.suffix || (d.hasMetadata && d.unfinished === undefined)) continue;
    const its = volumes.filter((v) => v.startsWith(`${d.name}.`));
    const why = d.hasMetadata ? d.unfinished : 'named like a VM of this CPI but has no bosh metadata';
    out.push({ kind: 'domain', name: d.name, reason: `${why}${its.length ? ` (its volumes go with it: ${its.join(', ')})` : ''}` });
  }
  for (const v of volumes) {
    if (v === CLAIMS_VOLUME) continue; // judged by findOrphans from its content
    if (v === ADDRESS_LOCK_VOLUME) {
      // Every CPI on the pool takes it (whatever its prefix) while it defines a domain with
      // static addresses; findOrphans keeps it while its holder runs.
      out.push({ kind: 'volume', name: v, reason: 'lock on the static addresses of libvirt networks, left by a create_vm that died (create_vm holds it for well under a second; the CPI breaks one whose holder is gone, or older than 120 s, itself)' });
      continue;
    }
    const owned = parseOwnedName(prefix, v);
    if (!owned) continue;
    if (!owned.suffix) {
      // Bare CIDs (stemcells, persistent disks, snapshots) are the director's, except a
      // snapshot without its sidecar: snapshot_disk writes the sidecar before it returns
      // the CID, so the director never received this one (the CPI died or lost its
      // connection during the copy).
      if (owned.kind === 'snap' && !volumeNames.has(sidecarName(v))) {
        out.push({ kind: 'volume', name: v, reason: 'snapshot whose snapshot_disk never finished (no metadata sidecar), so the director never received its CID' });
      }
      // Likewise create_stemcell writes the sidecar as its last step.
      if (owned.kind === 'sc' && !volumeNames.has(sidecarName(v))) {
        out.push({ kind: 'volume', name: v, reason: 'stemcell whose create_stemcell never finished (no metadata sidecar), so the director never received its CID' });
      }
      continue;
    }
    if (owned.suffix === Suffix.lock) {
      // Calls hold a lock for seconds and release it before they answer; one whose
      // holder died stays until the next call on the same name breaks it as stale.
      out.push({ kind: 'volume', name: v, reason: `lock on ${kindWord[owned.kind]} ${owned.cid} left by a CPI call that died (calls hold locks for seconds; the CPI breaks one older than 120 s itself)` });
    } else if (owned.kind === 'vm') {
      if (!domainNames.has(owned.cid)) out.push({ kind: 'volume', name: v, reason: `belongs to VM ${owned.cid}, which no longer exists` });
    } else if (owned.suffix === Suffix.meta && !volumeNames.has(owned.cid)) {
      out.push({ kind: 'volume', name: v, reason: `metadata of ${kindWord[owned.kind]} ${owned.cid}, which no longer exists` });
    } else if (owned.suffix === Suffix.born && !volumeNames.has(owned.cid)) {
      // Several hosts: written next to a disk away from its birth host, before it arrives
      // (young then) and removed after it leaves or is deleted.
      out.push({ kind: 'volume', name: v, reason: `birth record of disk ${owned.cid}, which is not on this host (a move or delete_disk was cut short)` });
    }
  }
  return out;
}
const kindWord = { vm: 'VM', sc: 'stemcell', disk: 'disk', snap: 'snapshot' } as const;

/**
 * Whether a domain still marked by create_vm is an orphan: certain on the creator's own
 * host (its process, identified by pid and start time, is gone); from another host only
 * by age (the mark older than --min-age). 'in progress' when its creator may still be at work.
 */
export function unfinishedCreate(m: NonNullable<VmMetadata['creating']>, minAgeSeconds: number, nowMs = Date.now()): { orphan: true; reason: string } | { orphan: false; reason: string } {
  const by = `pid ${m.pid} on ${m.host}, started ${m.at}`;
  const state = creatorState(m);
  if (state === 'running') return { orphan: false, reason: `create_vm in progress (${by}, still running)` };
  if (state === 'gone') return { orphan: true, reason: `create_vm never finished: its process (${by}) is gone, so the director never received this VM` };
  const age = markerAgeSeconds(m, nowMs);
  if (age < minAgeSeconds) return { orphan: false, reason: `create_vm may be in progress (${by}, another host: cannot see its process; ${age} s old, under --min-age)` };
  return { orphan: true, reason: `create_vm never finished: started ${age} s ago by ${by} (another host: judged by --min-age)` };
}

export interface OrphanReport {
  pool: string;
  poolExists: boolean;
  orphans: Orphan[];
  /** volumes young enough to belong to a create_vm or delete_vm still in progress, and domains whose create_vm may still run */
  skippedYoung: string[];
  deleted: string[];
  failed: Array<{ name: string; error: string }>;
  /** VM names fenced by this sweep before their volumes went (a define of them may still be pending in the daemon) */
  fenced: string[];
  /**
   * Nothing this sweep saw may still be in progress: nothing was skipped as young or
   * running, nothing failed, and no fence had to be made or stays (see docs/crash-safety.md).
   */
  complete: boolean;
  /** why the sweep is not complete, in words */
  incomplete: string[];
}

export async function findOrphans(config: Config, log: Logger, opts: { delete: boolean; minAgeSeconds: number }): Promise<OrphanReport> {
  if (backendForUri(config.libvirt.uri).name === 'vbox') {
    throw new CliError(`orphans does not serve vbox hosts yet (libvirt.uri ${config.libvirt.uri}): the vbox backend keeps its VM files, disks and state as files in storage.path (${config.storage.path}), not as volumes of a libvirt pool, which is what orphans lists; see docs/vbox.md`);
  }
  const conn = await openConnection(config);
  const report: OrphanReport = { pool: config.storage.pool, poolExists: false, orphans: [], skippedYoung: [], deleted: [], failed: [], fenced: [], complete: false, incomplete: [] };
  const fences: Orphan[] = [];
  let youngFences = 0;
  try {
    const host = await existingPoolHost(conn, config, log);
    const steps = await stepsOf(backendForUri(config.libvirt.uri));
    const prefix = config.name_prefix;
    const domains: DomainFacts[] = [];
    for (const dom of await conn.domains.listAll(0)) {
      if (!parseOwnedName(prefix, dom.name)) continue;
      try {
        // A fence (fence.ts) is no VM: it keeps a define whose answer was lost from ever
        // landing, and goes once older than --min-age.
        const fence = mayBeFence(dom) ? parseFence(await conn.domains.getXMLDesc(dom, 0)) : undefined;
        if (fence) {
          const age = markerAgeSeconds(fence);
          if (age < opts.minAgeSeconds) {
            report.skippedYoung.push(dom.name);
            youngFences++;
          } else {
            fences.push({ kind: 'domain', name: dom.name, fence: uuidString(dom), reason: `fence, not a VM (${fence.reason}; made ${fence.at} by pid ${fence.pid} on ${fence.host}); it kept that define from ever landing; ${age} s old` });
          }
          continue;
        }
        const metadata = host ? await steps.records.read(host, dom) : await metadataFromXml(conn, dom);
        const facts: DomainFacts = { name: dom.name, hasMetadata: metadata !== null };
        if (metadata?.creating) {
          const judged = unfinishedCreate(metadata.creating, opts.minAgeSeconds);
          if (judged.orphan) facts.unfinished = judged.reason;
          else report.skippedYoung.push(dom.name);
        }
        domains.push(facts);
      } catch (e) {
        // Metadata that cannot be parsed says nothing about whose VM it is: left alone, and said.
        if (e instanceof XmlParseError) report.failed.push({ name: dom.name, error: `unreadable bosh metadata (${e.message}); left alone` });
        else if (!isLibvirtError(e, ErrorCode.NO_DOMAIN)) throw e; // deleted meanwhile
      }
    }
    const volumes = host ? await listVolumeNames(host) : [];
    report.poolExists = host !== null;
    const now = Date.now() / 1000;
    for (const o of classify(prefix, domains, volumes)) {
      if (o.kind === 'volume' && host) {
        const details = await volumeFacts(host, o.name);
        if (!details) continue; // gone meanwhile
        Object.assign(o, { bytes: details.bytes }, details.changed !== undefined ? { ageSeconds: Math.max(0, Math.round(now - details.changed)) } : {});
        if (hasSuffix(o.name, Suffix.lock)) {
          // A lock names its holder: never take one whose holder runs; one whose holder is
          // gone is an orphan whatever its age; an unmarked one is judged by age below.
          const holder = await steps.locks.holder(host, withoutSuffix(o.name, Suffix.lock)).catch(() => undefined);
          if (holder?.state === 'running') {
            report.skippedYoung.push(o.name);
            continue;
          }
          if (holder?.state === 'gone') {
            o.reason = `lock left by pid ${holder.marker.pid} on ${holder.marker.host}, which is gone`;
            report.orphans.push(o);
            continue;
          }
        }
        // create_vm creates the VM's volumes before it defines the domain, and a call holds
        // its lock volume while it runs: a young volume may be mid-call.
        if (o.ageSeconds !== undefined && o.ageSeconds < opts.minAgeSeconds) {
          report.skippedYoung.push(o.name);
          continue;
        }
      }
      report.orphans.push(o);
    }
    if (host) await findAbandonedCopies(host, prefix, volumes, opts.minAgeSeconds, report);
    report.orphans.push(...fences);
    if (host && volumes.includes(CLAIMS_VOLUME)) {
      // Address claims of create_vm calls between their check and their define: the volume
      // goes once none of them counts any more (their VMs defined, their creators gone).
      const { live } = await sweepClaims(host, steps, false);
      if (live) report.skippedYoung.push(CLAIMS_VOLUME);
      else report.orphans.push({ kind: 'volume', name: CLAIMS_VOLUME, reason: 'address claims of create_vm calls that are all over (their domains exist, or their processes are gone)' });
    }
    if (opts.delete && host) await deleteOrphans(host, report, steps);
    else if (opts.delete) {
      for (const o of report.orphans) await deleteOrphanDomainWithoutPool(conn, o, report);
    }
    if (report.skippedYoung.length > youngFences) report.incomplete.push(`${report.skippedYoung.length - youngFences} item(s) younger than --min-age or whose creator still runs were skipped`);
    if (youngFences) report.incomplete.push(`${youngFences} fence(s) younger than --min-age stay`);
    if (report.fenced.length) report.incomplete.push(`${report.fenced.length} VM name(s) were fenced before their volumes went (a define of them may still be pending in libvirtd, and volume creates of the same call too); the fences stay until older than --min-age`);
    if (report.failed.length) report.incomplete.push(`${report.failed.length} item(s) could not be deleted`);
    if (!opts.delete && report.orphans.length) report.incomplete.push(`${report.orphans.length} orphan(s) listed, not deleted`);
    report.complete = report.incomplete.length === 0;
  } finally {
    await conn.close().catch(() => undefined);
  }
  return report;
}

/**
 * Several hosts: a disk move that stopped half way and was never tried again leaves, on
 * the target host, a copy named like the disk and its empty `<disk>.partial` marker (move.ts).
 * Both count as one orphan once neither changed for --min-age (a move in progress writes
 * the copy all along), whether the original still exists elsewhere or was deleted since.
 * They are listed copy first, so --delete removes the copy before the marker: a copy
 * without its marker would be taken for the disk.
 */
async function findAbandonedCopies(host: Host, prefix: string, volumes: string[], minAgeSeconds: number, report: OrphanReport): Promise<void> {
  const now = Date.now() / 1000;
  for (const marker of volumes) {
    const owned = parseOwnedName(prefix, marker);
    if (owned?.kind !== 'disk' || owned.suffix !== Suffix.partial) continue;
    const [mark, copy] = await Promise.all([volumeFacts(host, marker), volumeFacts(host, owned.cid)]);
    if (!mark) continue; // the move finished (or was retried) meanwhile
    // A verified copy may be the only one left (its original deleted): judged across
    // hosts (orphans-hosts.ts), never here.
    if ((await copyState({ host: 'this host', conn: host.conn, pool: host.pool }, owned.cid)) === 'verified') continue;
    const changed = [mark, ...(copy ? [copy] : [])].map((f) => f.changed);
    if (changed.some((c) => c === undefined) || now - Math.max(...(changed as number[])) < minAgeSeconds) {
      report.skippedYoung.push(marker);
      continue;
    }
    const ageSeconds = Math.max(0, Math.round(now - Math.max(...(changed as number[]))));
    const why = `a move of disk ${owned.cid} to this host that stopped half way and was not tried again`;
    if (copy) report.orphans.push({ kind: 'volume', name: owned.cid, reason: `half copy from ${why}; removed before its marker`, bytes: copy.bytes, ageSeconds });
    report.orphans.push({ kind: 'volume', name: marker, reason: `marker of ${why}`, bytes: mark.bytes, ageSeconds });
  }
}

/** Without the pool there is no Host: the metadata is read from the domain's XML. */
async function metadataFromXml(conn: Host['conn'], dom: Parameters<Host['conn']['domains']['getXMLDesc']>[0]): Promise<VmMetadata | null> {
  const xml = await conn.domains.getXMLDesc(dom, 0);
  if (!hasVmMetadata(xml)) return null;
  try {
    return vmMetadataOf(xml);
  } catch {
    return { agentId: '', stemcellCid: '', volumes: [], disks: [], macs: [], prefixes: [], reservations: [], tags: {} }; // present but unreadable: not ours to judge
  }
}

async function volumeFacts(host: Host, name: string): Promise<{ bytes: number; changed?: number } | null> {
  let xml: string;
  try {
    xml = await host.conn.volumes.getXMLDesc(await host.conn.volumes.lookupByName(host.pool, name), 0);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return null;
    throw e;
  }
  const facts = parseVolumeFacts(xml);
  const bytes = facts.allocationBytes;
  // Directory pools report the file's times; the newest of mtime and ctime is the last change.
  const times = [facts.mtime, facts.ctime].filter((t): t is number => t !== undefined);
  return times.length ? { bytes, changed: Math.max(...times) } : { bytes };
}

/**
 * Where the backend keeps the VM records, locks and claims orphans reads, and its own
 * steps of delete_vm. A backend without a profile in this release has no steps of its
 * own; what an earlier CPI left is where qemu and lxc keep it.
 */
async function stepsOf(backend: Backend): Promise<StateStores & DeleteVmSteps> {
  return backend.implemented ? loadProfile(backend, '') : { ...nativeStores, vms: {} };
}

async function deleteOrphans(host: Host, report: OrphanReport, profile: StateStores & DeleteVmSteps): Promise<void> {
  // A volume named like an orphan may still be a disk of some domain (one made by hand,
  // another director's): that one is kept.
  const inUse = await volumeUsers(host, report.orphans.filter((o) => o.kind === 'volume').map((o) => volumePath(host, o.name)));
  const fenced = new Map<string, Promise<void>>();
  for (const o of report.orphans) {
    try {
      if (o.fence) {
        await removeFence(host.conn, o, report);
        continue;
      }
      if (o.name === CLAIMS_VOLUME) {
        if ((await sweepClaims(host, profile, true)).removed) report.deleted.push(o.name);
        continue;
      }
      if (o.kind === 'volume') {
        const users = inUse.get(volumePath(host, o.name));
        if (users) throw new Error(`in use by domain(s) ${users.join(', ')}; kept`);
        const owned = parseOwnedName(host.config.name_prefix, o.name);
        if (owned?.kind === 'vm' && owned.suffix && owned.suffix !== Suffix.lock) {
          // The VM's define may still be queued in libvirtd (its create_vm was killed or
          // lost its connection while defining): fence the name first, so that no domain
          // pointing at these volumes and holding the VM's addresses appears afterwards.
          if (!fenced.has(owned.cid)) fenced.set(owned.cid, fenceBeforeSweep(host, owned.cid, report));
          await fenced.get(owned.cid);
        }
        if (owned?.suffix === Suffix.partial && (await findVolume(host, owned.cid))) {
          throw new Error(`its half copy ${owned.cid} is still there; kept, so that the copy is never taken for the disk`);
        }
        // A backend's directory volumes (lxc) are not empty: libvirt alone cannot delete them.
        if (profile.vms.removeVolume) {
          if (await findVolume(host, o.name)) {
            await profile.vms.removeVolume(host, o.name);
            report.deleted.push(o.name);
          }
        } else if (await deleteVolumeIfExists(host, o.name)) report.deleted.push(o.name);
      } else {
        // delete_vm's own path: the domain and every `<cid>.*` volume it owns.
        const owned = (name: string) => name.startsWith(`${o.name}.`);
        const its = (await listVolumeNames(host)).filter(owned);
        await deleteVM(host, o.name as VMCID, profile);
        // delete_vm keeps a volume another domain uses: report only what is gone.
        const left = new Set((await listVolumeNames(host)).filter(owned));
        report.deleted.push(o.name, ...its.filter((v) => !left.has(v)));
      }
    } catch (e) {
      report.failed.push({ name: o.name, error: (e as Error).message });
    }
  }
}

/** Fences a VM name whose volumes go; throws (the volumes stay) when a domain of that name appeared. */
async function fenceBeforeSweep(host: Host, vm: string, report: OrphanReport): Promise<void> {
  const out = await fenceName(host, vm, { type: fenceDomainType(host.config.libvirt.uri), reason: `orphans removed the volumes of ${vm}, whose domain did not exist (its create_vm died or lost its answer while defining it)`, fresh: false });
  if (out.state === 'defined') throw new Error(`its domain ${vm} appeared meanwhile (a define libvirtd finished late); kept for the next sweep`);
  if (out.made) report.fenced.push(vm);
}

/** Removes a fence, only while the name still holds that very fence. */
async function removeFence(conn: Host['conn'], o: Orphan, report: OrphanReport): Promise<void> {
  const dom = await conn.domains.lookupByName(o.name).catch((e: unknown) => {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return null;
    throw e;
  });
  if (!dom || uuidString(dom) !== o.fence) return;
  await conn.domains.undefine(dom, 0);
  report.deleted.push(o.name);
}

/** Without the pool there are no volumes to remove: only the domain itself. */
async function deleteOrphanDomainWithoutPool(conn: Host['conn'], o: Orphan, report: OrphanReport): Promise<void> {
  try {
    if (o.fence) return await removeFence(conn, o, report);
    const dom = await conn.domains.lookupByName(o.name);
    if ((await conn.domains.getState(dom, 0)).state !== DomainState.SHUTOFF) await conn.domains.destroy(dom, 0);
    await conn.domains.undefine(dom, UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA | UndefineFlags.NVRAM | UndefineFlags.CHECKPOINTS_METADATA);
    report.deleted.push(o.name);
  } catch (e) {
    report.failed.push({ name: o.name, error: (e as Error).message });
  }
}

export function printReport(r: OrphanReport, deleting: boolean, out: NodeJS.WritableStream = process.stdout): void {
  if (!r.poolExists) out.write(`storage pool "${r.pool}" does not exist: only domains were checked\n`);
  if (r.orphans.length === 0) out.write('no orphans\n');
  for (const o of r.orphans) {
    const size = o.bytes !== undefined ? ` (${formatBytes(o.bytes)})` : '';
    const state = !deleting ? '' : r.deleted.includes(o.name) ? 'deleted  ' : r.failed.some((f) => f.name === o.name) ? 'FAILED   ' : 'gone     ';
    out.write(`${state}${o.kind.padEnd(7)} ${o.name}${size}: ${o.reason}\n`);
  }
  const extra = r.deleted.filter((d) => !r.orphans.some((o) => o.name === d));
  if (extra.length) out.write(`deleted with their domains: ${extra.join(', ')}\n`);
  for (const f of r.failed) out.write(`could not delete ${f.name}: ${f.error}\n`);
  if (r.skippedYoung.length) out.write(`skipped ${r.skippedYoung.length} volume(s) changed less than --min-age ago or domain(s) whose create_vm may still run: ${r.skippedYoung.join(', ')}\n`);
  if (!deleting && r.orphans.length) out.write(`\n${r.orphans.length} orphan(s); run again with --delete to remove them\n`);
  if (deleting && r.fenced.length) out.write(`fenced (their defines can no longer land): ${r.fenced.join(', ')}\n`);
  if (deleting) out.write(r.complete ? 'sweep complete: nothing seen may still be in progress\n' : `sweep NOT complete: ${r.incomplete.join('; ')}; run again later\n`);
}
