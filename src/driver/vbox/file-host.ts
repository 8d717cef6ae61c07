// Where the vbox backend's files live: every file operation of the backend (files.ts,
// state.ts, stemcells.ts, vms.ts, disks.ts) goes through a FileHost, so the same code
// works on the VirtualBox host itself (vbox:///session: LocalFileHost, node's fs) and
// from another machine (vbox+ssh://user@host/session: SshFileHost, one `ssh` per
// operation, with the ssh options the libvirt ssh transport takes from the URI).
//
// Over ssh every operation is one short sh script (sent as `sh -c '…'`, whatever the
// remote user's login shell); every path and argument in it is single-quoted (shq), so
// names with spaces, quotes, `$` or newlines reach the remote command as one word each.
// Data sent to a file is checked for its size on the host before the file is kept, as a
// lost connection ends the remote `cat`'s input early without an error. The host-wide
// lock's ssh connection (hostLock) is an ssh ControlMaster for the rest of the call: the
// other commands open a channel on it instead of a new connection (and connect on their
// own before it is there). If it ends while the lock is held, the lock is gone and every
// later command refuses with a retryable error until the call releases it.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access, copyFile, constants as fsConstants, link, mkdir, open, readFile, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../log/logger.js';
import { CloudError, NotSupported } from '../../errors.js';
import { parseUri, param, type ParsedUri } from '../../libvirt/uri.js';
import { shq, sshOptionArgs } from '../../libvirt/transports.js';
import { connectOptions } from '../shared/host.js';
import { readFileHead } from '../../util/file-head.js';

const execFileP = promisify(execFile);

/** What a command needs on the VirtualBox host, and the Debian package that has it. */
const PACKAGES: Record<string, string> = { 'qemu-img': 'qemu-utils', flock: 'util-linux' };

export interface FileStat {
  size: number;
  mtimeMs: number;
}

export interface FileHost {
  /** "this host" or "ssh user@host:port", for errors and logs */
  readonly where: string;
  /** true when the VirtualBox host is this host (its paths are this host's) */
  readonly local: boolean;
  /** Replaces `path` with `data` atomically (temporary file beside it, then rename). */
  writeAtomic(path: string, data: string | Buffer, mode?: number): Promise<void>;
  /** The file's bytes, or null when it does not exist. */
  read(path: string): Promise<Buffer | null>;
  /** Up to `bytes` bytes from the file's start. */
  readHead(path: string, bytes: number): Promise<Buffer>;
  stat(path: string): Promise<FileStat | null>;
  /** Removes a file; true when there was one. */
  remove(path: string): Promise<boolean>;
  /** Names in a directory ([] when it does not exist). */
  list(dir: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  /** mkdir -p of each, new directories 0700. */
  mkdirs(dirs: string[]): Promise<void>;
  /** Creates `path` holding `data` unless it exists (O_EXCL); false when it existed. */
  createExclusive(path: string, data: string): Promise<boolean>;
  /** A second name `to` for `from`, never replacing `to` (an error with code EEXIST). */
  linkNew(from: string, to: string): Promise<void>;
  /** The size of the filesystem holding `dir`, bytes. */
  fsTotalBytes(dir: string): Promise<bigint>;
  /** Runs a program there; its stdout. A missing program is a CloudError naming the host and package. */
  run(cmd: string, args: string[], what: string): Promise<string>;
  /**
   * Puts the local file `local` at `path` there (a new name only: EEXIST when it exists):
   * copied under a temporary name beside it, checked for its size and linked into place;
   * nothing half-copied is left when it fails.
   */
  putNew(local: string, path: string): Promise<void>;
  /** The host-wide lock (one CPI call at a time per VirtualBox daemon); returns its release. */
  hostLock(waitSeconds: number, log: Logger): Promise<() => Promise<void>>;
  /** How many ssh commands ran (0 on the local host): what a call cost. */
  readonly commands: number;
}

// ---------------------------------------------------------------------------------------
// Which file host a config uses.

const cache = new WeakMap<object, FileHost>();

/** The URI's transport as the vbox backend serves it: local, ssh, or refused (tcp, tls). */
export function vboxTransport(uri: string): 'local' | 'ssh' {
  let u: ParsedUri;
  try {
    u = parseUri(uri);
  } catch (e) {
    throw new NotSupported(`libvirt.uri ${JSON.stringify(uri)} is not a libvirt URI the vbox backend can use: ${(e as Error).message}`);
  }
  if (u.transport === 'unix' && !u.host) return 'local';
  if (u.transport === 'ssh') return 'ssh';
  throw new NotSupported(
    `libvirt.uri ${JSON.stringify(uri)} is not local and not ssh: the vbox backend writes stemcell, VM and disk files (VDI, settings ISO) and its VM records into storage.path on the VirtualBox host and hands VirtualBox their paths, and a ${u.transport} connection reaches only libvirt, not the host's files; use vbox:///session on the VirtualBox host or vbox+ssh://user@host/session`,
  );
}

export function fileHostFor(config: Config): FileHost {
  let fh = cache.get(config);
  if (!fh) {
    fh = vboxTransport(config.libvirt.uri) === 'ssh' ? new SshFileHost(config) : new LocalFileHost(config.libvirt.uri);
    cache.set(config, fh);
  }
  return fh;
}

/**
 * The host lock's file name: one per VirtualBox daemon (its URI, which names its socket;
 * the uid, whose VirtualBox a vbox:///session daemon drives) in the temporary directory.
 */
export function hostLockName(localUri: string, uid: string): string {
  const digest = createHash('sha256').update(localUri).digest('hex').slice(0, 16);
  return `bosh-libvirt-cpi-vbox-${uid}-${digest}.lock`;
}

// ---------------------------------------------------------------------------------------
// The VirtualBox host is this host.

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

/** What `p` gives, or `missing` when what it looked at does not exist (ENOENT). */
async function ifMissing<T, M>(p: Promise<T>, missing: M): Promise<T | M> {
  try {
    return await p;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return missing;
    throw e;
  }
}


export class LocalFileHost implements FileHost {
  readonly where = 'this host';
  readonly local = true;
  readonly commands = 0;
  constructor(private readonly uri: string) {}

  async writeAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, data, { mode, flag: 'wx' });
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
  read(path: string): Promise<Buffer | null> {
    return ifMissing(readFile(path), null);
  }
  readHead(path: string, bytes: number): Promise<Buffer> {
    return readFileHead(path, bytes);
  }
  async stat(path: string): Promise<FileStat | null> {
    const s = await ifMissing(stat(path), null);
    return s && { size: s.size, mtimeMs: s.mtimeMs };
  }
  remove(path: string): Promise<boolean> {
    return ifMissing(rm(path).then(() => true), false);
  }
  list(dir: string): Promise<string[]> {
    return ifMissing(readdir(dir), []);
  }
  exists(path: string): Promise<boolean> {
    return ifMissing(access(path).then(() => true), false);
  }
  async mkdirs(dirs: string[]): Promise<void> {
    for (const dir of dirs) await mkdir(dir, { recursive: true, mode: 0o700 });
  }
  async createExclusive(path: string, data: string): Promise<boolean> {
    let f;
    try {
      f = await open(path, 'wx', 0o600);
    } catch (e) {
      if (isErrno(e, 'EEXIST')) return false;
      throw e;
    }
    try {
      await f.writeFile(data);
    } finally {
      await f.close();
    }
    return true;
  }
  async linkNew(from: string, to: string): Promise<void> {
    await link(from, to);
  }
  async fsTotalBytes(dir: string): Promise<bigint> {
    const fs = await statfs(dir, { bigint: true });
    return fs.blocks * fs.bsize;
  }
  async run(cmd: string, args: string[], what: string): Promise<string> {
    try {
      return (await execFileP(cmd, args, { maxBuffer: 16 << 20 })).stdout;
    } catch (e) {
      const err = e as { code?: string | number; stderr?: string; message: string };
      if (err.code === 'ENOENT') throw new CloudError(`${what} failed: ${cmd} is not installed on this host${PACKAGES[cmd] ? ` (Debian package ${PACKAGES[cmd]})` : ''}`);
      throw new CloudError(`${what} failed: ${cmd} ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
    }
  }
  async putNew(local: string, path: string): Promise<void> {
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await copyFile(local, tmp, fsConstants.COPYFILE_EXCL);
      await link(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  hostLock(waitSeconds: number, log: Logger): Promise<() => Promise<void>> {
    const path = join(tmpdir(), hostLockName(this.uri, String(process.getuid?.() ?? 'user')));
    return holdLock(spawn('flock', flockArgs(path, waitSeconds), { stdio: ['pipe', 'pipe', 'pipe'] }), path, waitSeconds, 'this host', log);
  }
}

function flockArgs(path: string, waitSeconds: number): string[] {
  return ['--exclusive', '--wait', String(waitSeconds), path, 'sh', '-c', 'echo locked; exec cat >/dev/null'];
}

/**
 * Waits until the flock child says "locked" and returns the release. The lock is held
 * while the child's stdin stays open: when this process dies the pipe closes (over ssh:
 * ssh sees end of input, the remote `cat` ends) and the lock is gone with it, so no stale
 * lock can outlive its holder.
 */
async function holdLock(child: ChildProcess, path: string, waitSeconds: number, where: string, log: Logger, onLost?: (how: string) => void): Promise<() => Promise<void>> {
  const started = Date.now();
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked')) {
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.on('error', (e) => reject(new CloudError(`Cannot take the VirtualBox host lock ${path} on ${where}: flock(1) could not run (${e.message}); it is part of util-linux`)));
    child.on('exit', (code, signal) =>
      reject(
        new CloudError(
          code === 1
            ? `Timed out after ${waitSeconds} s waiting for the VirtualBox host lock ${path} on ${where}: another CPI call holds it (libvirt's vbox driver takes one call at a time; see docs/vbox.md)${stderr.trim() ? ` (${child.spawnfile} said: ${stderr.trim()})` : ''}`
            : code === 127
              ? `Cannot take the VirtualBox host lock ${path}: flock(1) is not installed on ${where} (Debian package util-linux)`
              : `Cannot take the VirtualBox host lock ${path} on ${where}: ${child.spawnfile} ${signal ? `was ended by ${signal}` : `exited with code ${code}`}: ${stderr.trim() || 'no message'}`,
          { okToRetry: code === 1 || code === 255 || signal !== null },
        ),
      ),
    );
  });
  const waited = Date.now() - started;
  if (waited > 1000) log.info({ lock: path, waited_ms: waited }, 'waited for the VirtualBox host lock (one CPI call at a time per vbox host)');
  // Neither the child nor its pipes keep this process alive: its exit releases the lock.
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr] as Array<{ unref?: () => void } | null>) s?.unref?.();
  let released = false;
  // The lock lasts as long as the child: its end before the release means the lock is gone.
  const lost = (code: number | null, signal: NodeJS.Signals | null) => {
    if (!released) onLost?.(signal ? `it was ended by ${signal}` : `it exited with code ${code}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
  };
  if (child.exitCode !== null || child.signalCode !== null) lost(child.exitCode, child.signalCode);
  else child.once('exit', lost);
  return async () => {
    if (released) return;
    released = true;
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        child.stdin!.destroy();
        return resolve();
      }
      // Waited for: ref'd again, or this process could end before the lock is gone.
      child.ref();
      child.once('exit', () => resolve());
      child.stdin!.end();
    });
  };
}

// ---------------------------------------------------------------------------------------
// The VirtualBox host over ssh.

let ownDir: string | undefined;
/** A 0700 directory of this process for an inline ssh key, removed when the process exits. */
function privateDir(): string {
  if (!ownDir) {
    const dir = mkdtempSync(join(tmpdir(), 'bosh-cpi-vbox-ssh-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    ownDir = dir;
  }
  return ownDir;
}

/** Exit statuses the remote scripts use besides 0 and 1. */
const MISSING = 3;
const EXISTS = 4;
/** a file's input was cut short (or could not be written): it was removed */
const SHORT = 5;
const NOT_INSTALLED = 127;

/** ssh options every file-host ssh takes after the user's. */
export const SSH_TIMEOUTS = ['-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=30'];

/**
 * The script line that keeps the file in shell variable `v` only if it holds `size` bytes:
 * a lost connection ends cat's input early and cat still succeeds. Otherwise the file is
 * removed, `before <received> after` goes to stderr and the script exits with `status`.
 */
function sizeCheck(v: string, size: number, before: string, after: string, status: number): string {
  return `n=$(wc -c < "$${v}"); if ! [ "$n" -eq ${size} ] 2>/dev/null; then rm -f -- "$${v}"; echo ${shq(before)} $n ${shq(after)} >&2; exit ${status}; fi`;
}

/** A remote shell command line: each word single-quoted. */
export function shellWords(words: string[]): string {
  return words.map(shq).join(' ');
}

export class SshFileHost implements FileHost {
  readonly where: string;
  readonly local = false;
  commands = 0;
  private readonly u: ParsedUri;
  private readonly options: string[];
  private readonly sshCommand: string;
  /** the lock's ssh connection's control socket, while it is held */
  private controlPath: string | undefined;
  /** how the lock's ssh connection ended while the lock was meant to be held */
  private lockLost: string | undefined;
  private readonly localUri: string;

  constructor(config: Config) {
    this.u = parseUri(config.libvirt.uri);
    const opts = connectOptions(config);
    let keyFile: string | undefined;
    const pk = opts.ssh?.privateKey;
    if (pk && pk.includes('-----BEGIN')) {
      // An inline key, as the libvirt transport takes it: a 0600 file for this process.
      const dir = privateDir();
      keyFile = join(dir, 'id');
      writeFileSync(keyFile, pk.endsWith('\n') ? pk : `${pk}\n`, { mode: 0o600 });
    } else if (pk) keyFile = pk;
    this.options = sshOptionArgs(this.u, opts, keyFile);
    this.sshCommand = param(this.u, 'command') ?? 'ssh';
    this.where = `ssh ${this.u.user ? `${this.u.user}@` : ''}${this.u.host}${this.u.port ? `:${this.u.port}` : ''}`;
    // The daemon as a CPI on that host names it (vbox:///session, with its ?socket=):
    // the same lock file as a local CPI's.
    const socket = param(this.u, 'socket');
    this.localUri = `${this.u.driver}://${this.u.path}${socket !== undefined ? `?socket=${socket}` : ''}`;
  }

  /** ssh's argument vector for one remote script (exported for the quoting test). */
  argv(script: string, master?: string): string[] {
    const mux = master
      ? ['-o', 'ControlMaster=yes', '-o', `ControlPath=${master}`, '-o', 'ControlPersist=no']
      : this.controlPath
        ? ['-o', 'ControlMaster=no', '-o', `ControlPath=${this.controlPath}`]
        : [];
    // Keepalives and a connect timeout after the user's options: ssh keeps the first
    // value of an option, so extra_args can still set their own. A connection that dies
    // without a word is then noticed within about 45 s instead of never.
    // sshd hands the command line to the remote user's login shell, which may be csh or
    // fish: the script goes to sh as one single-quoted word, as the libvirt transport's.
    return [...this.options, ...SSH_TIMEOUTS, ...mux, '--', this.u.host!, `sh -c ${shq(script)}`];
  }

  /** Runs `script` there (sh syntax) with `input` on its stdin; its status, stdout and stderr. */
  private exec(script: string, input?: Buffer | string | { file: string }): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    if (this.lockLost !== undefined) {
      // Without the lock another CPI call may be driving the same VirtualBox: stop here.
      return Promise.reject(
        new CloudError(
          `Lost the VirtualBox host lock on ${this.where}: the ssh connection that held it ended during this call (${this.lockLost}), so the remote flock is gone and this call stops before it touches the host again; retry the call`,
          { okToRetry: true },
        ),
      );
    }
    this.commands++;
    return new Promise((resolve, reject) => {
      const child = spawn(this.sshCommand, this.argv(script), { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
      child.stdin.on('error', () => undefined);
      child.on('error', (e) => reject(new CloudError(`Cannot run ${this.sshCommand} to reach the VirtualBox host (${this.where}): ${e.message}`)));
      child.on('close', (code, signal) => {
        const status = code ?? (signal ? 255 : 0);
        if (status === 255) {
          reject(new CloudError(`Cannot reach the VirtualBox host over ${this.where}: ssh failed (${signal ?? 'status 255'}): ${stderr.trim() || 'no message'}`, { okToRetry: true }));
          return;
        }
        resolve({ code: status, stdout: Buffer.concat(out), stderr: stderr.trim() });
      });
      if (input === undefined) child.stdin.end();
      else if (typeof input === 'object' && 'file' in input) {
        const rs = createReadStream(input.file);
        rs.on('error', (e) => {
          child.kill('SIGTERM');
          reject(new CloudError(`Cannot read ${input.file} to copy it to ${this.where}: ${e.message}`));
        });
        rs.pipe(child.stdin);
      } else child.stdin.end(input);
    });
  }

  /** Runs `script`; any status but 0 and `allowed` is an error naming what failed. */
  private async sh(script: string, what: string, input?: Buffer | string | { file: string }, allowed: number[] = []): Promise<{ code: number; stdout: Buffer }> {
    const r = await this.exec(script, input);
    if (r.code !== 0 && !allowed.includes(r.code)) throw new CloudError(`${what} on the VirtualBox host (${this.where}) failed (status ${r.code}): ${r.stderr || 'no message'}`);
    return r;
  }

  async writeAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    const size = Buffer.byteLength(data);
    // The size check keeps a cut file from being renamed into place.
    const script = [
      `umask 077`,
      `t=${shq(tmp)}`,
      `if ! cat > "$t"; then rm -f -- "$t"; exit 1; fi`,
      sizeCheck('t', size, `${path}: the data was cut short: received`, `of ${size} bytes; the file was left as it was`, SHORT),
      `chmod ${mode.toString(8)} "$t" && mv -f -- "$t" ${shq(path)} || { rm -f -- "$t"; exit 1; }`,
    ].join('\n');
    await this.sh(script, `writing ${path}`, data);
  }
  async read(path: string): Promise<Buffer | null> {
    const r = await this.sh(`[ -e ${shq(path)} ] || exit ${MISSING}; cat -- ${shq(path)}`, `reading ${path}`, undefined, [MISSING]);
    return r.code === MISSING ? null : r.stdout;
  }
  async readHead(path: string, bytes: number): Promise<Buffer> {
    return (await this.sh(`head -c ${Math.floor(bytes)} -- ${shq(path)}`, `reading ${path}`)).stdout;
  }
  async stat(path: string): Promise<FileStat | null> {
    const r = await this.sh(`[ -e ${shq(path)} ] || exit ${MISSING}; stat -c '%s %Y' -- ${shq(path)}`, `stat of ${path}`, undefined, [MISSING]);
    if (r.code === MISSING) return null;
    const [size, mtime] = r.stdout.toString().trim().split(' ').map(Number);
    return { size: size!, mtimeMs: mtime! * 1000 };
  }
  async remove(path: string): Promise<boolean> {
    const r = await this.sh(`[ -e ${shq(path)} ] || [ -L ${shq(path)} ] || exit ${MISSING}; rm -f -- ${shq(path)}`, `removing ${path}`, undefined, [MISSING]);
    return r.code === 0;
  }
  async list(dir: string): Promise<string[]> {
    // One name per line; a name with a newline (never one this backend writes) would split.
    const r = await this.sh(`[ -d ${shq(dir)} ] || exit ${MISSING}; ls -A -- ${shq(dir)}`, `listing ${dir}`, undefined, [MISSING]);
    return r.code === MISSING ? [] : r.stdout.toString().split('\n').filter((n) => n !== '');
  }
  async exists(path: string): Promise<boolean> {
    return (await this.sh(`[ -e ${shq(path)} ] || exit ${MISSING}`, `looking for ${path}`, undefined, [MISSING])).code === 0;
  }
  async mkdirs(dirs: string[]): Promise<void> {
    await this.sh(`umask 077; mkdir -p -- ${shellWords(dirs)}`, `making ${dirs.join(', ')}`);
  }
  async createExclusive(path: string, data: string): Promise<boolean> {
    // noclobber: the shell opens the file O_EXCL; only that step failing on an existing
    // file is "existed". A write that fails or is cut short (the connection lost) removes
    // the file again and is an error, so no partial file is left for others to wait on.
    const size = Buffer.byteLength(data);
    const script = [
      `umask 077`,
      `p=${shq(path)}`,
      `if ! e=$( (set -C; : > "$p") 2>&1 ); then [ -e "$p" ] && exit ${EXISTS}; echo "$e" >&2; exit 1; fi`,
      `if ! cat >> "$p"; then rm -f -- "$p"; exit ${SHORT}; fi`,
      sizeCheck('p', size, `${path}: the data was cut short: received`, `of ${size} bytes; the file was removed`, SHORT),
    ].join('\n');
    const r = await this.sh(script, `creating ${path}`, data, [EXISTS]);
    return r.code === 0;
  }
  async linkNew(from: string, to: string): Promise<void> {
    const r = await this.sh(`[ -e ${shq(to)} ] && exit ${EXISTS}; ln -- ${shq(from)} ${shq(to)} || { [ -e ${shq(to)} ] && exit ${EXISTS}; exit 1; }`, `linking ${to}`, undefined, [EXISTS]);
    if (r.code === EXISTS) throw Object.assign(new Error(`${to} exists on ${this.where}`), { code: 'EEXIST' });
  }
  async fsTotalBytes(dir: string): Promise<bigint> {
    const r = await this.sh(`stat -f -c '%b %S' -- ${shq(dir)}`, `the filesystem size of ${dir}`);
    const [blocks, size] = r.stdout.toString().trim().split(' ');
    return BigInt(blocks!) * BigInt(size!);
  }
  async run(cmd: string, args: string[], what: string): Promise<string> {
    const r = await this.exec(`command -v ${shq(cmd)} >/dev/null 2>&1 || exit ${NOT_INSTALLED}; exec ${shellWords([cmd, ...args])}`);
    if (r.code === NOT_INSTALLED) throw new CloudError(`${what} failed: ${cmd} is not installed on the VirtualBox host (${this.where})${PACKAGES[cmd] ? `; install it there (Debian package ${PACKAGES[cmd]})` : ''}`);
    if (r.code !== 0) throw new CloudError(`${what} failed on the VirtualBox host (${this.where}): ${cmd} ${args.join(' ')}: ${r.stderr || `status ${r.code}`}`);
    return r.stdout.toString();
  }
  async putNew(local: string, path: string): Promise<void> {
    const size = (await stat(local)).size;
    const dir = path.slice(0, path.lastIndexOf('/'));
    const tmp = join(dir, `.${path.slice(dir.length + 1)}.${randomBytes(6).toString('hex')}.partial`);
    // One command: copy, check the size (a connection lost mid-copy ends cat's input
    // early), link into place unless the name exists, and remove the temporary name.
    const script = [
      `umask 077`,
      `t=${shq(tmp)}`,
      `if ! cat > "$t"; then rm -f -- "$t"; exit 1; fi`,
      sizeCheck('t', size, 'copy is short:', `of ${size} bytes`, 1),
      `if e=$(ln -- "$t" ${shq(path)} 2>&1); then rm -f -- "$t"; exit 0; fi`,
      `rm -f -- "$t"; [ -e ${shq(path)} ] && exit ${EXISTS}; echo "$e" >&2; exit 1`,
    ].join('\n');
    let r;
    try {
      r = await this.sh(script, `copying ${local} to ${path}`, { file: local }, [EXISTS]);
    } catch (e) {
      // The script removes its temporary file itself; if the connection broke, once more.
      await this.exec(`rm -f -- ${shq(tmp)}`).catch(() => undefined);
      throw e;
    }
    if (r.code === EXISTS) throw Object.assign(new Error(`${path} exists on ${this.where}`), { code: 'EEXIST' });
  }
  async hostLock(waitSeconds: number, log: Logger): Promise<() => Promise<void>> {
    const name = hostLockName(this.localUri, '$(id -u)');
    const script = `command -v flock >/dev/null 2>&1 || exit ${NOT_INSTALLED}; exec flock --exclusive --wait ${Math.floor(waitSeconds)} "\${TMPDIR:-/tmp}"/${name.replace('$(id -u)', '"$(id -u)"')} sh -c 'echo locked; exec cat >/dev/null'`;
    this.commands++;
    // This connection stays open for the whole call: the other commands ride on it
    // through its control socket, in a directory of its own removed with the connection.
    const dir = mkdtempSync(join(tmpdir(), 'bosh-cpi-vbox-ssh-'));
    const removeDir = () => rmSync(dir, { recursive: true, force: true });
    process.once('exit', removeDir);
    const master = join(dir, 'cm');
    const child = spawn(this.sshCommand, this.argv(script, master), { stdio: ['pipe', 'pipe', 'pipe'] });
    let release: () => Promise<void>;
    try {
      this.lockLost = undefined;
      release = await holdLock(child, `\${TMPDIR:-/tmp}/${name}`, waitSeconds, this.where, log, (how) => {
        this.lockLost = how;
        log.warn?.({ host: this.where, how }, 'lost the VirtualBox host lock: its ssh connection ended');
      });
    } catch (e) {
      removeDir();
      process.off('exit', removeDir);
      throw e;
    }
    this.controlPath = master;
    return async () => {
      this.controlPath = undefined;
      this.lockLost = undefined;
      await release();
      removeDir();
      process.off('exit', removeDir);
    };
  }
}
