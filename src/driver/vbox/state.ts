// The shared layer's state for the vbox profile, as files under storage.path
// (files.ts): VM records, tags, locks and address claims. libvirt's vbox driver stores
// no <metadata>, no title and has no volume upload, so none of the stores qemu and lxc
// use can work over it.
//
// Locks are files created with O_EXCL holding the holder's marker (host, pid, process
// start, what it does): the same holder description the volume locks write, and the
// same stale rules (shared/lock.ts): a holder that is gone on this host is broken at
// once; one that cannot be judged (another host, unreadable marker) after STALE_MS.
// Every CPI call also holds the host-wide lock (hostLock below) from connect to close,
// so in practice these locks are never contended across processes; they keep the
// LockStore's promise for code that takes them.
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import type { ClaimStore, LockStore, PendingClaim, TagStore, VmRecordStore, VmRecordEntry } from '../shared/profile.js';
import { creatorMarker, creatorState, type CreatorMarker } from '../shared/creator.js';
import { STALE_MS } from '../shared/lock.js';
import { findDomain } from '../shared/host.js';
import { isCid } from '../cids.js';
import { CloudError } from '../../errors.js';
import type { VmMetadata } from '../../xml/index.js';
import { hostFiles, hostLayout, listDir, readJson } from './files.js';
import type { FileHost } from './file-host.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}$/;
function safeName(kind: string, name: string): string {
  if (!NAME_RE.test(name)) throw new CloudError(`Invalid ${kind}: got ${JSON.stringify(name)}, expected letters, digits, "_", ".", "@" or "-"`);
  return name;
}

// ---------------------------------------------------------------------------------------
// VM records: <state>/records/<vm>.json, written right after the define, removed after the undefine.

function recordPath(host: Host, vm: string): string {
  return join(hostLayout(host).records, `${safeName('VM CID', vm)}.json`);
}

export const fileRecords: VmRecordStore = {
  keeps: 'apart',
  async read(host, dom) {
    return readJson<VmMetadata>(hostFiles(host), recordPath(host, dom.name));
  },
  async write(host, dom, record) {
    await hostFiles(host).writeAtomic(recordPath(host, dom.name), `${JSON.stringify(record)}\n`);
  },
  async list(host) {
    const out: VmRecordEntry[] = [];
    for (const file of await listDir(hostFiles(host), hostLayout(host).records)) {
      const name = file.replace(/\.json$/, '');
      if (!file.endsWith('.json') || !isCid(name, 'vm', host.config.name_prefix)) continue;
      let metadata: VmMetadata | null;
      try {
        metadata = await readJson<VmMetadata>(hostFiles(host), join(hostLayout(host).records, file));
      } catch (e) {
        host.log.warn({ record: file, err: (e as Error).message }, 'ignoring an unreadable VM record');
        continue;
      }
      const dom = metadata ? await findDomain(host, name) : null;
      if (metadata && dom) out.push({ name, dom, metadata });
    }
    return out;
  },
  async setTitle(host, dom, title) {
    // The vbox driver keeps no title or description; the record holds the tags.
    host.log.debug({ vm: dom.name, title }, 'the vbox backend keeps no domain title (the VM record holds the tags)');
  },
  async remove(host, vm) {
    await hostFiles(host).remove(recordPath(host, vm));
  },
};

// ---------------------------------------------------------------------------------------
// Tags of stemcells and disks: <state>/tags/<cid>.json.

function tagPath(host: Host, cid: string): string {
  return join(hostLayout(host).tags, `${safeName('CID', cid)}.json`);
}

export const fileTags: TagStore = {
  read: (host, cid) => readJson<Record<string, unknown>>(hostFiles(host), tagPath(host, cid)),
  write: (host, cid, data) => hostFiles(host).writeAtomic(tagPath(host, cid), `${JSON.stringify(data)}\n`),
  async remove(host, cid) {
    await hostFiles(host).remove(tagPath(host, cid));
  },
  volumes: () => [],
};

// ---------------------------------------------------------------------------------------
// Locks: <state>/locks/<name>.lock, O_EXCL.

interface FileLockMarker extends CreatorMarker {
  what?: string;
  token: string;
}

const WAIT_MS = 60_000;

function lockPath(host: Host, name: string): string {
  return join(hostLayout(host).locks, `${safeName('lock name', name)}.lock`);
}

async function readMarker(fh: FileHost, path: string): Promise<FileLockMarker | undefined> {
  try {
    const data = await fh.read(path);
    return data === null ? undefined : (JSON.parse(data.toString('utf8')) as FileLockMarker);
  } catch {
    return undefined;
  }
}

/** Why the lock file's holder is dead, or undefined while it may still hold it. */
async function deadHolder(fh: FileHost, path: string): Promise<{ why: string; token?: string } | undefined> {
  const m = await readMarker(fh, path);
  if (m) {
    const state = creatorState(m);
    if (state === 'gone') return { why: `its holder, pid ${m.pid} on ${m.host}, is gone`, token: m.token };
    if (state === 'running') return undefined;
  }
  const age = await fh.stat(path).then((s) => (s ? Date.now() - s.mtimeMs : 0), () => 0);
  if (age > STALE_MS) return { why: `it is ${Math.round(age / 1000)} s old and its holder cannot be seen`, ...(m ? { token: m.token } : {}) };
  return undefined;
}

export async function withFileLock<T>(host: Host, name: string, fn: () => Promise<T>, what?: string, waitMs = WAIT_MS): Promise<T> {
  const fh = hostFiles(host);
  const path = lockPath(host, name);
  const token = Math.random().toString(36).slice(2);
  const marker: FileLockMarker = { ...creatorMarker(), ...(what ? { what } : {}), token };
  const start = Date.now();
  let delay = 20;
  for (;;) {
    if (await fh.createExclusive(path, JSON.stringify(marker))) break;
    const dead = await deadHolder(fh, path);
    if (dead) {
      // Only the waiter that still finds that very lock removes it.
      const now = await readMarker(fh, path);
      if (now?.token === dead.token) {
        host.log.warn({ lock: path, why: dead.why }, 'breaking a lock left by a CPI process that died');
        await fh.remove(path);
      }
      continue;
    }
    if (Date.now() - start > waitMs) {
      const m = await readMarker(fh, path);
      const who = m ? `held by pid ${m.pid} on ${m.host} since ${m.at}${m.what ? ` (${m.what})` : ''}` : 'whose holder could not be read';
      throw new CloudError(`Timed out after ${Math.round((Date.now() - start) / 1000)} s waiting for lock ${path}, ${who}`, { okToRetry: true });
    }
    await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
    delay = Math.min(delay * 2, 500);
  }
  try {
    return await fn();
  } finally {
    if ((await readMarker(fh, path))?.token === token) await fh.remove(path);
  }
}

export const fileLocks: LockStore = {
  with: withFileLock,
  async holder(host, name) {
    const m = await readMarker(hostFiles(host), lockPath(host, name));
    return m ? { marker: { host: m.host, pid: m.pid, start: m.start, at: m.at }, state: creatorState(m) } : undefined;
  },
};

// ---------------------------------------------------------------------------------------
// Address claims: <state>/claims.json (read and written under the address lock).

export const fileClaims: ClaimStore = {
  name: 'state/claims.json',
  async read(host) {
    try {
      const list = await readJson<PendingClaim[]>(hostFiles(host), hostLayout(host).claims);
      return list === null ? null : Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  },
  write: (host, claims) => hostFiles(host).writeAtomic(hostLayout(host).claims, `${JSON.stringify(claims)}\n`),
  remove: (host) => hostFiles(host).remove(hostLayout(host).claims),
};

// ---------------------------------------------------------------------------------------
// The host-wide lock: one CPI call at a time per VirtualBox host.

/**
 * libvirt 9.0's vbox driver shares one VirtualBox session across all its threads and
 * connections, and two calls that lock machines at once collide (fixtures/vbox-sim
 * README: of six parallel defines, four failed). So every CPI call holds this lock from
 * connect to close. It is a kernel lock (flock(1) on a file per vbox daemon on the
 * VirtualBox host, held by a child process that reads our end of a pipe: a local flock,
 * or over ssh an ssh whose remote flock runs `cat`; file-host.ts): when the CPI process
 * dies, the pipe closes and the lock is gone with it, so no stale lock can outlive its
 * holder. Returns the release function.
 */
export async function takeHostLock(fh: FileHost, waitSeconds: number, log: Host['log']): Promise<() => Promise<void>> {
  return fh.hostLock(waitSeconds, log);
}
