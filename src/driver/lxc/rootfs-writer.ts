// Writes tar entries into a root filesystem directory without ever following a symlink
// the archive made: every directory an entry goes through is checked with lstat to be a
// real directory (a later entry under a symlinked directory is refused, not written
// through it), files are created with O_EXCL (which does not follow a symlink left at
// the name), and links are checked by entry-path.ts. Owners, modes, times, device nodes,
// FIFOs and hard links are kept. Memory: one entry's stream at a time, plus the set of
// directories already checked.
import { execFile } from 'node:child_process';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, rm, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Header } from 'tar-stream';
import type { EntryBody } from './tar-input.js';
import { EntryRefused, ancestors, checkSymlinkTarget, entryPath, hardLinkTarget, whiteoutOf } from './entry-path.js';

const run = promisify(execFile);

/** A tar header as tar-stream decodes it (its type is null for typeflags it does not know). */
export type Headers = Omit<Partial<Header>, 'type' | 'name'> & { name: string; type?: Header['type'] | null };

export class RootfsWriter {
  /** relative paths known to be real directories (not symlinks) right now */
  private readonly dirs = new Set<string>(['']);
  /** directory times, applied at the end: writing into a directory changes its mtime */
  private readonly dirTimes = new Map<string, Date>();
  /** paths the current OCI layer has written; null outside a layer (a plain rootfs tar) */
  private layer: Set<string> | null = null;

  constructor(readonly root: string) {}

  /** Entries until endLayer() are an OCI layer: whiteouts apply to what earlier layers wrote. */
  beginLayer(): void {
    this.layer = new Set();
  }

  endLayer(): void {
    this.layer = null;
  }

  /** Writes one entry; `body` is its data (drained here whatever the entry is). */
  async entry(header: Headers, body: EntryBody): Promise<void> {
    try {
      await this.write(header, body);
    } finally {
      body.resume();
    }
  }

  /** Gives directories the times the archive recorded (after all their content is written). */
  async finish(): Promise<void> {
    for (const [rel, mtime] of this.dirTimes) {
      // A later layer may have deleted the directory or put something else at its name.
      const st = await lstat(this.abs(rel)).catch(() => null);
      if (st?.isDirectory()) await lutimes(this.abs(rel), mtime, mtime);
    }
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  private async write(header: Headers, body: EntryBody): Promise<void> {
    const name = header.name;
    const rel = entryPath(name);
    if (this.layer) {
      const wh = whiteoutOf(name, rel);
      if (wh) {
        if (wh.kind === 'opaque') await this.makeOpaque(name, wh.dir);
        else if (wh.kind === 'delete') await this.whiteOut(name, wh.victim);
        return;
      }
      // The layer holds the entry and, implicitly, every directory above it: an opaque
      // marker later in the same layer must keep them all.
      this.layer.add(rel);
      for (const dir of ancestors(rel)) this.layer.add(dir);
    }
    const type = header.type ?? 'file';
    if (rel === '') {
      if (type !== 'directory') throw new EntryRefused(name, `names the root itself but is a ${type}, not a directory`);
      await this.setOwnerAndMode(name, '', header);
      return;
    }
    await this.ensureParents(name, rel);
    switch (type) {
      case 'directory':
        return this.directory(name, rel, header);
      case 'file':
      case 'contiguous-file':
        return this.file(name, rel, header, body);
      case 'symlink':
        return this.symlink(name, rel, header);
      case 'link':
        return this.hardLink(name, rel, header);
      case 'character-device':
      case 'block-device':
      case 'fifo':
        return this.special(name, rel, header, type);
      default:
        throw new EntryRefused(name, `has an entry type this importer does not know (${String(header.type)}; GNU sparse files are not supported)`);
    }
  }

  /** Creates missing parent directories; refuses to go through anything but a real directory. */
  private async ensureParents(entry: string, rel: string): Promise<void> {
    for (const dir of ancestors(rel)) {
      if (this.dirs.has(dir)) continue;
      const st = await lstat(this.abs(dir)).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return null;
        throw e;
      });
      if (!st) await mkdir(this.abs(dir), { mode: 0o755 });
      else if (st.isSymbolicLink()) throw new EntryRefused(entry, `lies under ${JSON.stringify(dir)}, which is a symbolic link; entries are never written through a link`);
      else if (!st.isDirectory()) throw new EntryRefused(entry, `lies under ${JSON.stringify(dir)}, which is not a directory`);
      this.dirs.add(dir);
    }
  }

  /** Makes room for a new entry at `rel`: an existing directory is kept only when a directory comes. */
  private async clear(rel: string, keepDirectory: boolean): Promise<boolean> {
    const st = await lstat(this.abs(rel)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    if (!st) return false;
    if (st.isDirectory()) {
      if (keepDirectory) return true;
      await this.removeTree(rel);
      return false;
    }
    await unlink(this.abs(rel));
    return false;
  }

  /** rm -r without following symlinks (fs.rm unlinks a link, never its target). */
  private async removeTree(rel: string): Promise<void> {
    await rm(this.abs(rel), { recursive: true, force: true });
    if (this.dirs.has(rel)) {
      const under = `${rel}/`;
      for (const d of this.dirs) if (d === rel || d.startsWith(under)) this.dirs.delete(d);
    }
  }

  private async directory(entry: string, rel: string, header: Headers): Promise<void> {
    if (!(await this.clear(rel, true))) await mkdir(this.abs(rel), { mode: 0o700 });
    this.dirs.add(rel);
    await this.setOwnerAndMode(entry, rel, header);
    if (header.mtime) this.dirTimes.set(rel, header.mtime);
  }

  private async file(entry: string, rel: string, header: Headers, body: EntryBody): Promise<void> {
    await this.clear(rel, false);
    // 'wx' = O_CREAT|O_EXCL: fails rather than follow a link someone put at the name.
    const fh = await open(this.abs(rel), 'wx', 0o600);
    let written = 0;
    try {
      for await (const chunk of body) {
        await fh.write(chunk);
        written += chunk.length;
      }
    } finally {
      await fh.close();
    }
    // A stream cut short must not pass for a complete file.
    if (written !== (header.size ?? 0)) throw new EntryRefused(entry, `is truncated: ${written} of its ${header.size} bytes are in the archive`);
    await this.setOwnerAndMode(entry, rel, header);
    await this.setTimes(rel, header);
  }

  private async symlink(entry: string, rel: string, header: Headers): Promise<void> {
    const target = header.linkname ?? '';
    checkSymlinkTarget(entry, rel, target);
    await this.clear(rel, false);
    await symlink(target, this.abs(rel));
    await this.setOwner(entry, rel, header);
    await this.setTimes(rel, header);
  }

  private async hardLink(entry: string, rel: string, header: Headers): Promise<void> {
    const target = hardLinkTarget(entry, header.linkname ?? '');
    // The target's directories must be real too: a link through a symlinked directory
    // would make a second name for a file outside the root.
    for (const dir of ancestors(target)) {
      if (this.dirs.has(dir)) continue;
      const up = await lstat(this.abs(dir)).catch(() => null);
      if (!up?.isDirectory()) {
        throw new EntryRefused(entry, `is a hard link to ${JSON.stringify(header.linkname)}, but ${JSON.stringify(dir)} is ${up ? 'a symbolic link or a file, not a directory' : 'missing'}`);
      }
      this.dirs.add(dir);
    }
    const st = await lstat(this.abs(target)).catch(() => null);
    if (!st) throw new EntryRefused(entry, `is a hard link to ${JSON.stringify(header.linkname)}, which is not in the archive before it`);
    if (st.isDirectory()) throw new EntryRefused(entry, `is a hard link to the directory ${JSON.stringify(header.linkname)}`);
    if (target === rel) return;
    await this.clear(rel, false);
    // link(2) does not follow a symlink at the target name: the new name is the link itself.
    await link(this.abs(target), this.abs(rel));
  }

  private async special(entry: string, rel: string, header: Headers, type: 'character-device' | 'block-device' | 'fifo'): Promise<void> {
    await this.clear(rel, false);
    // Node has no mknod(2); there are few of these (a rootfs's /dev, usually nothing at all).
    const kind = type === 'fifo' ? ['p'] : [type === 'character-device' ? 'c' : 'b', String(header.devmajor ?? 0), String(header.devminor ?? 0)];
    try {
      await run('mknod', ['-m', '600', this.abs(rel), ...kind]);
    } catch (e) {
      throw new EntryRefused(entry, `could not be created as a ${type} (${firstLine(e)}; the CPI needs root for device nodes)`);
    }
    await this.setOwnerAndMode(entry, rel, header);
    await this.setTimes(rel, header);
  }

  /** chown before chmod: chown clears set-uid/set-gid bits. */
  private async setOwnerAndMode(entry: string, rel: string, header: Headers): Promise<void> {
    await this.setOwner(entry, rel, header);
    await chmod(this.abs(rel), (header.mode ?? (header.type === 'directory' ? 0o755 : 0o644)) & 0o7777);
  }

  private async setOwner(entry: string, rel: string, header: Headers): Promise<void> {
    const uid = header.uid ?? 0;
    const gid = header.gid ?? 0;
    try {
      await lchown(this.abs(rel), uid, gid);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EPERM') {
        throw new EntryRefused(entry, `could not be given its owner ${uid}:${gid} (EPERM: the CPI must run as root to import a container root filesystem)`);
      }
      throw e;
    }
  }

  private async setTimes(rel: string, header: Headers): Promise<void> {
    if (header.mtime) await lutimes(this.abs(rel), header.mtime, header.mtime);
  }

  /** `.wh..wh..opq`: what earlier layers put in `dir` is hidden; this layer's entries stay. */
  private async makeOpaque(entry: string, dir: string): Promise<void> {
    // The marker lies in `dir`: its directories (`dir` included) must be real ones.
    await this.ensureParents(entry, dir === '' ? '.wh..wh..opq' : `${dir}/.wh..wh..opq`);
    await this.removeLower(dir);
  }

  private async removeLower(dir: string): Promise<void> {
    for (const child of await readdir(this.abs(dir))) {
      const rel = dir === '' ? child : `${dir}/${child}`;
      if (!this.layer?.has(rel)) await this.removeTree(rel);
      // A directory this layer has too does not merge with the one below it.
      else if ((await lstat(this.abs(rel))).isDirectory()) await this.removeLower(rel);
    }
  }

  /** `.wh.<name>` deletes what earlier layers made at `<name>` (nothing there is fine). */
  private async whiteOut(entry: string, victim: string): Promise<void> {
    if (this.layer?.has(victim)) return; // a whiteout applies to lower layers only
    for (const dir of ancestors(victim)) {
      if (this.dirs.has(dir)) continue;
      const st = await lstat(this.abs(dir)).catch(() => null);
      if (!st) return; // nothing below a missing directory
      if (!st.isDirectory()) throw new EntryRefused(entry, `deletes ${JSON.stringify(victim)} under ${JSON.stringify(dir)}, which is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`);
      this.dirs.add(dir);
    }
    await this.removeTree(victim);
  }
}

function firstLine(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return (err.stderr || err.message || String(e)).trim().split('\n')[0] ?? '';
}
