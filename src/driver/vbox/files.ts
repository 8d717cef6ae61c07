// The vbox profile keeps everything as files in one directory on the VirtualBox host,
// `storage.path` (libvirt's vbox driver has no pool listing, no volume upload and no
// domain metadata, so nothing can live in libvirt the way qemu keeps it):
//
//   <storage.path>/stemcells/<sc-cid>.vdi      stemcell base disks
//   <storage.path>/vms/<vm-cid>.root.vdi       a VM's own files (full copy of the stemcell,
//   <storage.path>/vms/<vm-cid>.ephemeral.vdi   ephemeral disk, settings ISO), named
//   <storage.path>/vms/<vm-cid>.settings.iso    `<vm>.…` as delete_vm sweeps them
//   <storage.path>/disks/<disk-cid>.vdi         persistent disks
//   <storage.path>/state/records/<vm-cid>.json  a VM's record (what qemu keeps in <metadata>)
//   <storage.path>/state/tags/<cid>.json        tags of stemcells and disks
//   <storage.path>/state/locks/<name>.lock      per-name locks (O_EXCL files with the holder)
//   <storage.path>/state/claims.json            address claims between check and define
//   <storage.path>/state/redefining/<vm>.json   a cold attach/detach under way (disks.ts)
//
// Documents are replaced atomically (a temporary file in the same directory, then
// rename), so a reader sees the old or the new one, never half of either.
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import type { Config } from '../../config/schema.js';

export interface VboxLayout {
  root: string;
  stemcells: string;
  vms: string;
  disks: string;
  records: string;
  tags: string;
  locks: string;
  claims: string;
  redefining: string;
}

export function layout(config: Pick<Config, 'storage'>): VboxLayout {
  const root = config.storage.path.replace(/\/+$/, '');
  const state = join(root, 'state');
  return {
    root,
    stemcells: join(root, 'stemcells'),
    vms: join(root, 'vms'),
    disks: join(root, 'disks'),
    records: join(state, 'records'),
    tags: join(state, 'tags'),
    locks: join(state, 'locks'),
    claims: join(state, 'claims.json'),
    redefining: join(state, 'redefining'),
  };
}

export function hostLayout(host: Host): VboxLayout {
  return layout(host.config);
}

/** Makes the directory tree, 0700 (the CPI's own state; VirtualBox runs as the same user). */
export async function ensureLayout(l: VboxLayout): Promise<void> {
  for (const dir of [l.root, l.stemcells, l.vms, l.disks, l.records, l.tags, l.locks, l.redefining]) await mkdir(dir, { recursive: true, mode: 0o700 });
}

export function stemcellPath(l: VboxLayout, cid: string): string {
  return join(l.stemcells, `${cid}.vdi`);
}
export function diskPath(l: VboxLayout, cid: string): string {
  return join(l.disks, `${cid}.vdi`);
}

/** The VM's own files, as `<vm>.<what>` in the vms directory (their names are the record's `volumes`). */
export function vmFileNames(vm: string): { root: string; ephemeral: string; settings: string } {
  return { root: `${vm}.root.vdi`, ephemeral: `${vm}.ephemeral.vdi`, settings: `${vm}.settings.iso` };
}

/** Replaces `path` with `data` atomically (temporary file beside it, then rename). */
export async function writeAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** A JSON document, or null when there is none. Unreadable JSON throws, naming the file. */
export async function readJson<T>(path: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Removes a file; true when there was one. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await rm(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** File names in a directory ([] when it does not exist); temporary and hidden files left out. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.') && !n.endsWith('.tmp'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}
