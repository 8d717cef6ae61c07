// File operations of the host inside a container's tree, which the container (root,
// privileged) can change under the CPI's feet while it runs: the overlay's upper layer
// (its root filesystem), `<vm>.disks` (/warden-cpi-dev) and `<vm>.ephemeral`.
//
// A check of a path followed by an operation on the same path is a race the container
// wins (measured: a container swapping /var/vcap/bosh for a symlink in a loop steered a
// quarter of the settings rewrites of the old code to a host file). So nothing here is
// looked up twice: a directory is *held* (an O_PATH descriptor, taken without following
// a link, its type checked with fstat), and each next name is resolved inside the held
// directory through `/proc/self/fd/<fd>/<name>`, which is what openat() does (Node has
// no openat). A rename between two such paths is a renameat between held directories.
// O_PATH opens nothing: a FIFO or a device node planted where a file is expected is
// never opened (it could block or touch a device), only refused.
import { constants, type Stats } from 'node:fs';
import { open, readdir, rename, type FileHandle } from 'node:fs/promises';
import { execFile } from 'node:child_process';

/** Linux's O_PATH (not in Node's constants): a handle on the name itself; reads and writes are refused. */
const O_PATH = 0o10000000;

/** The container changed what the CPI expected at `shown` (a path as the container sees it, or a host path). */
export class ContainerTampered extends Error {
  constructor(
    readonly shown: string,
    readonly found: string,
  ) {
    super(`${shown} is ${found}`);
  }
}

export function describe(st: Stats | null): string {
  if (st === null) return 'missing';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return st.rdev === 0 ? 'deleted (an overlay whiteout)' : 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'of an unknown type';
}

/** A directory held by descriptor; `shown` names it in messages. */
export interface Held {
  fh: FileHandle;
  st: Stats;
  shown: string;
}

/** The path that resolves `name` inside the held directory (openat's meaning). */
export function at(dir: Held, name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new Error(`not a single path component: ${JSON.stringify(name)}`);
  return `/proc/self/fd/${dir.fh.fd}/${name}`;
}

/** The held directory itself, for readdir and for other processes (chattr). */
export function self(dir: Held): string {
  return `/proc/${process.pid}/fd/${dir.fh.fd}/.`;
}

async function holdPath(path: string, shown: string): Promise<{ fh: FileHandle; st: Stats } | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, O_PATH | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new ContainerTampered(shown, 'under something that is not a directory');
    throw e;
  }
  try {
    return { fh, st: await fh.stat() };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/**
 * Holds the directory `name` inside `parent` (or the absolute `path` when parent is
 * null: only for paths no container can change, i.e. the pool's own entries). A link,
 * a file or nothing there is ContainerTampered (null when `missingOk` and nothing is there).
 */
export async function holdDir(parent: Held | null, name: string, shown: string, missingOk: true): Promise<Held | null>;
export async function holdDir(parent: Held | null, name: string, shown: string, missingOk?: false): Promise<Held>;
export async function holdDir(parent: Held | null, name: string, shown: string, missingOk = false): Promise<Held | null> {
  const h = await holdPath(parent ? at(parent, name) : name, shown);
  if (!h) {
    if (missingOk) return null;
    throw new ContainerTampered(shown, 'missing');
  }
  if (!h.st.isDirectory()) {
    await h.fh.close();
    throw new ContainerTampered(shown, describe(h.st));
  }
  return { ...h, shown };
}

/** Holds each directory of `names` in turn below `root`; the last one is returned, the others closed. */
export async function holdPathBelow(root: Held, names: string[], shownPrefix: string): Promise<Held> {
  let dir = root;
  let shown = shownPrefix;
  for (const name of names) {
    shown = `${shown === '/' ? '' : shown}/${name}`;
    const next = await holdDir(dir, name, shown).finally(() => (dir !== root ? dir.fh.close() : undefined));
    dir = next;
  }
  return dir;
}

/** What `name` inside `dir` is, without following a link and without opening it; null when missing. */
export async function statAt(dir: Held, name: string): Promise<Stats | null> {
  const h = await holdPath(at(dir, name), `${dir.shown}/${name}`);
  if (!h) return null;
  await h.fh.close();
  return h.st;
}

/**
 * Opens the regular file `name` inside `dir` for reading and writing. Anything else there
 * (a link, a FIFO, a device, a directory) and a file with another name elsewhere (a hard
 * link: the other name may be outside the container's tree) is ContainerTampered;
 * nothing is opened but a handle on the name. The reopen goes through the held handle
 * (same inode); O_NONBLOCK so a lease taken on the file fails the open instead of stalling it.
 */
export async function openRegularFile(dir: Held, name: string, shown: string, maxBytes: number): Promise<FileHandle> {
  const h = await holdPath(at(dir, name), shown);
  if (!h) throw new ContainerTampered(shown, 'missing');
  try {
    if (!h.st.isFile()) throw new ContainerTampered(shown, describe(h.st));
    if (h.st.nlink !== 1) throw new ContainerTampered(shown, `a file with ${h.st.nlink} names (hard links)`);
    if (h.st.size > maxBytes) throw new ContainerTampered(shown, `${h.st.size} bytes long (at most ${maxBytes} expected)`);
    // (no O_NOFOLLOW: /proc/self/fd/<n> is the magic link to the inode already checked)
    return await open(`/proc/self/fd/${h.fh.fd}`, constants.O_RDWR | constants.O_NONBLOCK);
  } finally {
    await h.fh.close();
  }
}

/** The names inside a held directory. */
export async function entries(dir: Held): Promise<string[]> {
  return readdir(self(dir));
}

/** renameat(from, fromName, to, toName): both names resolved inside held directories, never through a link. */
export async function renameAt(from: Held, fromName: string, to: Held, toName: string): Promise<void> {
  await rename(at(from, fromName), at(to, toName));
}

/** A directory's identity (device and inode), as recorded when a disk is attached. */
export function identity(st: Stats): string {
  return `dir:${st.dev}:${st.ino}`;
}

/**
 * Clears the immutable and append-only flags of everything under a held directory, and of
 * the directory itself (a container, as root, may set them: `chattr +i`), so it can be
 * deleted. chattr -R skips symbolic links (lstat), so nothing outside is touched. Only
 * for a tree nobody changes meanwhile (the container is stopped). On a file system
 * without those flags chattr fails and nothing changes.
 */
export async function clearImmutable(dir: Held): Promise<void> {
  await new Promise<void>((resolve) => {
    execFile('chattr', ['-R', '-f', '-i', '-a', self(dir)], () => resolve());
  });
}
