// Where a tar entry may land in a root filesystem, decided from the names alone (pure).
// An archive is untrusted input: a name or a link must never reach outside the directory
// it is unpacked into. Absolute symlink targets are the exception: they are resolved by
// the container against its own root, and a rootfs is full of them (/etc/alternatives/…).
import { posix } from 'node:path';

export class EntryRefused extends Error {
  constructor(readonly entry: string, readonly reason: string) {
    super(`entry ${JSON.stringify(entry)} ${reason}`);
  }
}

/**
 * The entry's path relative to the root, as clean components joined by '/' ('' for the
 * root itself). `./a//b/` → `a/b`. Absolute names and `..` components are refused, not
 * stripped: an archive holding them was not made from a root filesystem.
 */
export function entryPath(name: string): string {
  if (name.startsWith('/')) throw new EntryRefused(name, 'has an absolute path; entries must be relative to the root');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new EntryRefused(name, "has a '..' component, which would escape the root");
  return parts.join('/');
}

/** The target of a hard link: another entry of the archive, so the same rules apply. */
export function hardLinkTarget(entry: string, linkname: string): string {
  if (linkname.startsWith('/')) throw new EntryRefused(entry, `is a hard link to the absolute path ${JSON.stringify(linkname)}; it must name another entry`);
  const parts = linkname.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new EntryRefused(entry, `is a hard link to ${JSON.stringify(linkname)}, which escapes the root`);
  if (parts.length === 0) throw new EntryRefused(entry, 'is a hard link to the root directory');
  return parts.join('/');
}

/**
 * Refuses a relative symlink whose target, taken from the link's directory, climbs above
 * the root: on the host (where the CPI and libvirt's hooks work) it would point outside.
 */
export function checkSymlinkTarget(entry: string, rel: string, target: string): void {
  if (target === '') throw new EntryRefused(entry, 'is a symbolic link with an empty target');
  if (target.includes('\0')) throw new EntryRefused(entry, 'is a symbolic link whose target holds a NUL byte');
  if (target.startsWith('/')) return;
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
  if (resolved === '..' || resolved.startsWith('../')) {
    throw new EntryRefused(entry, `is a symbolic link to ${JSON.stringify(target)}, which resolves outside the root`);
  }
}

/** Every proper ancestor of `rel`, outermost first: `a/b/c` → `a`, `a/b`. */
export function ancestors(rel: string): string[] {
  const parts = rel.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

const WHITEOUT = '.wh.';
const META = '.wh..wh.';
const OPAQUE = '.wh..wh..opq';

export type Whiteout = { kind: 'opaque'; dir: string } | { kind: 'delete'; victim: string } | { kind: 'aufs-meta' } | null;

/** OCI layer whiteouts: `.wh..wh..opq` hides a directory's lower content, `.wh.<name>` deletes `<name>`. */
export function whiteoutOf(entry: string, rel: string): Whiteout {
  const base = posix.basename(rel);
  if (!base.startsWith(WHITEOUT)) return null;
  const dir = rel.includes('/') ? posix.dirname(rel) : '';
  if (base === OPAQUE) return { kind: 'opaque', dir };
  // aufs bookkeeping (`.wh..wh.plnk`, …) that old docker layers carry: not content.
  if (base.startsWith(META)) return { kind: 'aufs-meta' };
  const name = base.slice(WHITEOUT.length);
  if (name === '' || name === '.' || name === '..') throw new EntryRefused(entry, `is a whiteout of ${JSON.stringify(name)}, which names no file`);
  return { kind: 'delete', victim: dir ? `${dir}/${name}` : name };
}
