// A mutex across CPI processes (and hosts: any CPI talking to the same libvirt),
// serialized by libvirt itself: creating a volume whose name exists fails atomically.
// The lock is a tiny volume `<name>.lock`; whoever creates it holds the lock. A lock
// older than STALE_MS belongs to a process that died and is broken.
//
// The lock volume's capacity is a random token that names its holder. It makes two
// things decidable from libvirt alone: whether a lock whose creation lost its answer
// (the connection dropped) is ours after all, and whether the lock we release is still
// ours (it may have been broken as stale and taken by another call meanwhile).
// Its first block holds the holder's creation marker (host, pid, process start), so a
// lock whose holder was killed is broken at once by a waiter on the same host, and
// `orphans` never lists a lock whose holder still runs; a lock without a readable marker
// (its holder died between creating and marking it) is judged by age alone.
import { randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume, readBufferVolume, volumeDetails } from './host.js';
import { CloudError } from '../../errors.js';
import { isLibvirtError, ErrorCode, type VolRef } from '../../libvirt/index.js';
import { parseVolume } from '../../xml/index.js';
import { isConnectionLost, reconnect } from './reconnect.js';
import { creatorMarker, creatorState, type CreatorMarker, type CreatorState } from './creator.js';
import { isCid } from '../cids.js';
import { lockVolumeName } from './names.js';
import type { LockStore } from './profile.js';
import { parseVolumeFacts } from '../../xml/records.js';

export const STALE_MS = 120_000;
/** The holder's marker fits in the lock volume's first block. */
const MARKER_BYTES = 4096;
const WAIT_MS = 60_000;


/** The CPI call this process serves (method, first argument, request id), set by the dispatcher. */
let holderCall: string | undefined;
export function setLockHolderCall(call: string): void {
  holderCall = call;
}

/** A lock holder's marker: who (creator marker) and, where the caller says, for what. */
export interface LockMarker extends CreatorMarker {
  what?: string;
}

/**
 * Runs `fn` holding the lock on `name`. `what` says what the holder does (shown to a
 * waiter that gives up, and logged with how long the lock was held); `waitMs` bounds the
 * wait for it (a minute unless the lock's user says otherwise).
 */
export async function withVolumeLock<T>(host: Host, name: string, fn: () => Promise<T>, what?: string, waitMs = WAIT_MS): Promise<T> {
  const lock = lockVolumeName(name);
  const waitStart = Date.now();
  // A sparse raw volume of up to 1 GiB apparent size, the marker its only data.
  const token = BigInt(randomInt(MARKER_BYTES, 2 ** 30));
  const deadline = Date.now() + waitMs;
  const seen = new Map<bigint, CreatorMarker>();
  let delay = 20;
  for (;;) {
    try {
      await markHolder(host, lock, await createVolume(host, { name: lock, capacityBytes: token, allocationBytes: 0n, format: 'raw' }), what);
      break;
    } catch (e) {
      if (isConnectionLost(e)) {
        // The create may have taken effect with only its answer lost: ask a new connection.
        await reconnect(host).catch((again: unknown) => {
          throw new CloudError(`Lost the connection to libvirt while taking lock ${lock} and could not reconnect (${(again as Error).message}); nothing was changed under the lock, and a retry takes it again`, { okToRetry: true, cause: e });
        });
        const ours = await holds(host, lock, token);
        if (ours) {
          await markHolder(host, lock, ours, what);
          break;
        }
        continue;
      }
      // Contention is "exists already" (the holder may have released it since) or a lock
      // volume we can see; anything else is a real failure.
      const exists = isLibvirtError(e, ErrorCode.STORAGE_VOL_EXIST) || /exists already/.test(String((e as Error).message));
      if (!exists && !(await findVolume(host, lock))) throw e;
      const dead = await deadLock(host, lock, seen);
      if (dead) {
        // Several waiters may judge the same lock dead: only the one that still finds that
        // very lock removes it, so nobody removes the fresh lock another waiter just took.
        if (await holds(host, lock, dead.token)) {
          host.log.warn({ lock, why: dead.why }, 'breaking a lock left by a CPI process that died');
          await deleteVolumeIfExists(host, lock);
        }
        continue;
      }
      if (Date.now() > deadline) {
        throw new CloudError(`Timed out after ${Math.round((Date.now() - waitStart) / 1000)} s waiting for lock ${lock}, ${await describeHolder(host, lock)}`, { okToRetry: true });
      }
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      delay = Math.min(delay * 2, 500);
    }
  }
  const taken = performance.now();
  try {
    return await fn();
  } finally {
    const heldMs = Math.round(performance.now() - taken);
    await release(host, lock, token);
    const says = what ?? holderCall;
    host.log.info({ lock, held_ms: heldMs, waited_ms: Math.round(Date.now() - waitStart) - heldMs, ...(says ? { what: says } : {}) }, 'released lock');
  }
}

/** When the lock volume was made, in whole seconds since the epoch (directory pools report it). */
function lockCtime(xml: string): number | undefined {
  const ctime = parseVolumeFacts(xml).ctime;
  return ctime === undefined ? undefined : Math.floor(ctime);
}

/** Who holds a lock and since when, in words, for the error of a waiter that gives up. */
async function describeHolder(host: Host, lock: string): Promise<string> {
  try {
    const vol = await findVolume(host, lock);
    if (!vol) return 'which its holder has released just now';
    const holder = await lockHolder(host, lock, vol);
    if (holder) {
      const m = holder.marker as LockMarker;
      const since = Date.parse(m.at);
      const age = Number.isFinite(since) ? `${Math.max(0, Math.round((Date.now() - since) / 1000))} s` : 'an unknown time';
      return `held by pid ${m.pid} on ${m.host}${m.what ? ` (${m.what})` : ''} for ${age} (since ${m.at}; ${holder.state === 'running' ? 'that process still runs' : holder.state === 'gone' ? 'that process is gone' : 'another host: its process cannot be seen from here'})`;
    }
    const ctime = lockCtime(await host.conn.volumes.getXMLDesc(vol, 0));
    return `held by a CPI call that has not (yet) recorded itself in it${ctime !== undefined ? `, for ${Math.max(0, Math.round(Date.now() / 1000 - ctime))} s` : ''}`;
  } catch (e) {
    return `held by another CPI call (its holder could not be read: ${(e as Error).message})`;
  }
}

/** The lock, when it exists and carries `token`. */
async function holds(host: Host, lock: string, token: bigint): Promise<VolRef | null> {
  const vol = await findVolume(host, lock);
  return vol !== null && (await volumeDetails(host, vol)).capacityBytes === token ? vol : null;
}

/**
 * Removes the lock if it is still ours. A holder that lost its connection releases on a
 * new one: the caller may repeat its work at once (attach_disk does), and would otherwise
 * wait on its own lock until it counts as stale.
 */
async function release(host: Host, lock: string, token: bigint): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      if (await holds(host, lock, token)) await deleteVolumeIfExists(host, lock);
      else host.log.warn({ lock }, 'the lock was broken as stale while held; left to its new holder');
      return;
    } catch (e) {
      if (attempt === 0 && isConnectionLost(e) && (await reconnect(host).then(() => true, () => false))) continue;
      host.log.warn({ lock, err: String(e) }, `could not release lock; it counts as stale after ${STALE_MS / 1000} s`);
      return;
    }
  }
}

/** Writes who holds the lock into it; a lock left unmarked is judged by age, so failing here is not fatal. */
async function markHolder(host: Host, lock: string, vol: VolRef, what?: string): Promise<void> {
  try {
    const says = what ?? holderCall;
    const marker: LockMarker = { ...creatorMarker(), ...(says ? { what: says } : {}) };
    const data = Buffer.from(JSON.stringify(marker));
    await host.conn.volumes.upload(vol, Readable.from([data]), { offset: 0n, length: BigInt(data.length) });
  } catch (e) {
    host.log.warn({ lock, err: String(e) }, 'could not record the lock holder; the lock is judged by its age');
  }
}

/** Who holds a lock, from its marker: undefined when it has none (yet) or it is unreadable. */
export async function lockHolder(host: Host, lock: string, vol?: VolRef): Promise<{ marker: CreatorMarker; state: CreatorState } | undefined> {
  const ref = vol ?? (await findVolume(host, lock));
  if (!ref) return undefined;
  const head = await readBufferVolume(host, ref, MARKER_BYTES, BigInt(MARKER_BYTES));
  const text = head.toString('utf8').replace(/\0[\s\S]*$/, '');
  try {
    const marker = JSON.parse(text) as CreatorMarker;
    if (typeof marker.pid !== 'number' || typeof marker.host !== 'string') return undefined;
    return { marker, state: creatorState(marker) };
  } catch {
    return undefined;
  }
}

/**
 * The lock's token, when its holder is known to be gone or the lock is older than
 * STALE_MS. `seen` remembers the markers read by earlier looks at the same lock: a waiter
 * looks every few hundred milliseconds, and reading the marker is a volume download,
 * while a marker never changes once written (a new holder makes a new token).
 */
async function deadLock(host: Host, lock: string, seen: Map<bigint, CreatorMarker>): Promise<{ token: bigint; why: string } | undefined> {
  const vol = await findVolume(host, lock);
  if (!vol) return undefined;
  const xml = await host.conn.volumes.getXMLDesc(vol, 0).catch(() => '');
  if (!xml) return undefined;
  const token = parseVolume(xml).capacityBytes;
  let marker = seen.get(token);
  if (!marker) {
    marker = (await lockHolder(host, lock, vol).catch(() => undefined))?.marker;
    if (marker) seen.set(token, marker);
  }
  const state = marker ? creatorState(marker) : 'unknown';
  if (state === 'gone') return { token, why: `its holder (pid ${marker!.pid} on ${marker!.host}) is gone` };
  if (state === 'running') return undefined;
  const ctime = lockCtime(xml);
  if (ctime === undefined || Date.now() - ctime * 1000 <= STALE_MS) return undefined;
  return { token, why: `older than ${STALE_MS / 1000} s` };
}

/**
 * Runs `fn` while the stemcell cannot be deleted (delete_stemcell holds the same lock).
 * A name that is no stemcell CID has nothing to protect, and no lock is named after it.
 */
export async function withStemcellLock<T>(host: Host, cid: string, fn: () => Promise<T>): Promise<T> {
  return isCid(cid, 'sc', host.config.name_prefix) ? withVolumeLock(host, cid, fn) : fn();
}

/** Locks as `<name>.lock` volumes (above): what qemu and lxc use. */
export const volumeLocks: LockStore = {
  with: withVolumeLock,
  holder: (host, name) => lockHolder(host, lockVolumeName(name)),
};
