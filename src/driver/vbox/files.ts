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
// rename), so a reader sees the old or the new one, never half of either. Every file
// operation goes through the config's FileHost (file-host.ts): node's fs when the CPI
// runs on the VirtualBox host, ssh commands for vbox+ssh://.
import { join } from 'node:path';
import { fileHostFor, type FileHost } from './file-host.js';
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

/** Where the host's files are: this host, or the VirtualBox host over ssh (file-host.ts). */
export function hostFiles(host: Pick<Host, 'config'>): FileHost {
  return fileHostFor(host.config);
}

/** Makes the directory tree, 0700 (the CPI's own state; VirtualBox runs as the same user). */
export async function ensureLayout(fh: FileHost, l: VboxLayout): Promise<void> {
  await fh.mkdirs([l.root, l.stemcells, l.vms, l.disks, l.records, l.tags, l.locks, l.redefining]);
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

/** A JSON document, or null when there is none. Unreadable JSON throws, naming the file. */
export async function readJson<T>(fh: FileHost, path: string): Promise<T | null> {
  const data = await fh.read(path);
  if (data === null) return null;
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** File names in a directory ([] when it does not exist); temporary and hidden files left out. */
export async function listDir(fh: FileHost, dir: string): Promise<string[]> {
  return (await fh.list(dir)).filter((n) => !n.startsWith('.') && !n.endsWith('.tmp'));
}
