// Finding a VM's or disk's host from libvirt alone (no state file), for several hosts
// behind one CPI.
//
// In multi-host mode a CID carries the host it was born on: `<cid>@<host>` (single-host
// CIDs stay as they are), except a 20-character disk CID, which the BOSH agent must see
// whole (cids.ts): that one is bare, and a lookup asks every host for it, as for a CID
// from before the config listed hosts; a disk's `.born` record (below) keeps its birth
// host once it moves. The part before `@` names the domain or volume on every host,
// so a disk keeps its CID when it moves. A lookup asks the birth host first; a disk moved
// away leaves a forwarding record there, a tiny volume `<cid>.moved` holding the name of
// the host it went to. If the record is missing or stale (a move interrupted between
// deleting the original and writing the record), the other hosts are asked. A move that
// stopped after deleting the original leaves the only copy still marked, as verified:
// the lookup takes it once every host has answered (move.ts).
//
// A host that cannot be asked makes "not found" unknowable: the lookup then fails with a
// retryable CloudError, never with null — answering DiskNotFound/VMNotFound would make
// the director forget something that still exists.
import { Readable } from 'node:stream';
import { ErrorCode, type VolRef } from '../libvirt/api.js';
import { isLibvirtError } from '../libvirt/errors.js';
import { CloudError } from '../errors.js';
import { renderVolume } from '../xml/storage.js';
import { copyState, finishCopy, lookup, moveVolume, type MoveOptions, type MoveResult, type VolumeHome } from './move.js';
import { Suffix, suffixed } from '../driver/shared/names.js';

export const HOST_SEPARATOR = '@';

export function withHost(cid: string, host: string): string {
  return `${cid}${HOST_SEPARATOR}${host}`;
}

/** `<cid>@<host>` → both parts; a CID without a host part (single-host) → host null. */
export function splitHost(cid: string): { cid: string; host: string | null } {
  const at = cid.lastIndexOf(HOST_SEPARATOR);
  if (at <= 0 || at === cid.length - 1) return { cid, host: null };
  return { cid: cid.slice(0, at), host: cid.slice(at + 1) };
}

export function forwardName(cid: string): string {
  return suffixed(cid, Suffix.moved);
}

/** Next to a disk away from its birth host: the birth host's name (its CID's host part), read by get_disks. */
export function bornName(cid: string): string {
  return suffixed(cid, Suffix.born);
}

export interface HostHandle {
  name: string;
  /** The host's connection and pool; rejects when the host cannot be reached. */
  open(): Promise<VolumeHome>;
}

export interface Located {
  host: string;
  home: VolumeHome;
  vol: VolRef;
}

export class HostUnreachable extends CloudError {
  constructor(readonly host: string, what: string, cause: unknown) {
    super(`Cannot reach libvirt host ${host} to find ${what}: ${(cause as Error)?.message ?? String(cause)}; it may be there, retry when the host is back`, { okToRetry: true, cause });
  }
}

/**
 * The host holding volume `cid` (born on `birth`), or null when every host answered
 * and none has it. A copy a move has not finished with (its `.partial` marker present)
 * is not the volume while the move may still use the original: a half copy never, a
 * verified one only when every host answered and none holds an unmarked copy (the move
 * stopped after removing the original), and then the lookup finishes the move.
 */
export async function locateVolume(cid: string, birth: string, hosts: readonly HostHandle[]): Promise<Located | null> {
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const asked = new Set<string>();
  const unreachable: HostUnreachable[] = [];
  const verified: Located[] = [];
  const ask = async (name: string): Promise<{ found: Located | null; forward: string | null }> => {
    asked.add(name);
    const handle = byName.get(name);
    if (!handle) return { found: null, forward: null };
    try {
      const home = await handle.open();
      const vol = await lookup(home, cid);
      const state = vol ? await copyState(home, cid) : 'none';
      if (vol && state === 'none') return { found: { host: name, home, vol }, forward: null };
      if (vol && state === 'verified') verified.push({ host: name, home, vol });
      return { found: null, forward: name === birth ? await readForward(home, cid) : null };
    } catch (e) {
      // unreachable, or the connection failed mid-lookup: either way this host did not answer
      unreachable.push(new HostUnreachable(name, `volume ${cid}`, e));
      return { found: null, forward: null };
    }
  };

  const first = await ask(birth);
  if (first.found) return first.found;
  if (first.forward && !asked.has(first.forward)) {
    const next = await ask(first.forward);
    if (next.found) return next.found;
  }
  for (const h of hosts) {
    if (asked.has(h.name)) continue;
    const r = await ask(h.name);
    if (r.found) return r.found;
  }
  if (unreachable.length > 0) throw unreachable[0]!;
  const copy = verified[0];
  if (!copy) return null;
  await finishCopy(copy.home, cid);
  return copy;
}

/**
 * Moves disk volume `cid` (born on `birth`) and its metadata volume, if any, from one
 * host to another, then points the birth host's forwarding record at the new host (or
 * removes it when the disk comes home). The birth record goes first (alone it means
 * nothing), then the metadata: if the move stops half way, the disk is still on `from`
 * and a retry moves it; metadata already moved is not moved again.
 */
export async function moveDisk(cid: string, birth: HostHandle, from: VolumeHome, to: VolumeHome, sidecars: readonly string[] = [], opts: MoveOptions = {}): Promise<MoveResult> {
  if (birth.name !== to.host) await writeText(to, bornName(cid), birth.name);
  for (const name of sidecars) {
    // small: read back whole
    if (await lookup(from, name)) await moveVolume(name, from, to, { ...opts, verify: 'full' });
    // moved by an earlier attempt that stopped after removing the original: finish it
    else if ((await copyState(to, name)) === 'verified') await finishCopy(to, name);
  }
  const result = await moveVolume(cid, from, to, opts);
  const home = birth.name === to.host ? to : birth.name === from.host ? from : await birth.open();
  if (birth.name === to.host) await deleteIfPresent(home, forwardName(cid));
  else await writeText(home, forwardName(cid), to.host);
  await deleteIfPresent(from, bornName(cid));
  return result;
}

/** The birth host recorded next to a disk on `home`, or null (born there). */
export async function readBirth(home: VolumeHome, cid: string): Promise<string | null> {
  return readText(home, bornName(cid));
}

export async function deleteRecord(home: VolumeHome, name: string): Promise<void> {
  await deleteIfPresent(home, name);
}

async function deleteIfPresent(home: VolumeHome, name: string): Promise<void> {
  const vol = await lookup(home, name);
  if (!vol) return;
  await home.conn.volumes.delete(vol).catch((e: unknown) => {
    if (!isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) throw e;
  });
}

/** The host a disk's forwarding record on its birth host points at, or null (no record). */
export async function readForward(home: VolumeHome, cid: string): Promise<string | null> {
  return readText(home, forwardName(cid));
}

async function readText(home: VolumeHome, name: string): Promise<string | null> {
  const vol = await lookup(home, name);
  if (!vol) return null;
  const parts: Buffer[] = [];
  for await (const chunk of home.conn.volumes.download(vol, { length: 256n }) as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8').trim() || null;
}

/** Replaces a record (delete, create, write): a reader seeing none falls back to asking every host. */
async function writeText(home: VolumeHome, name: string, text: string): Promise<void> {
  await deleteIfPresent(home, name);
  const bytes = Buffer.from(`${text}\n`);
  const vol = await home.conn.volumes.createXML(home.pool, renderVolume({ name, capacityBytes: BigInt(bytes.length), allocationBytes: 0n, format: 'raw' }));
  await home.conn.volumes.upload(vol, Readable.from([bytes]));
}
