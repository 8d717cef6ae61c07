// Opening the byte pipe to a daemon: unix socket, TCP, TLS, or an ssh child running
// virt-ssh-helper (or nc) on the remote host, as libvirt's remote driver does.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ConnectOptions } from './api.js';
import type { Transport } from './client.js';
import { ConnectError } from './errors.js';
import {
  type ParsedUri, defaultSocketEnv, param, remoteName, remoteSocketPath, unixSocketCandidates,
} from './uri.js';

export const DEFAULT_TCP_PORT = 16509;
export const DEFAULT_TLS_PORT = 16514;
const STDERR_TAIL = 4096;

export async function openTransport(u: ParsedUri, opts: ConnectOptions): Promise<Transport> {
  switch (u.transport) {
    case 'unix': return openUnix(u);
    case 'tcp': return openTcp(u);
    case 'tls': return openTls(u, opts);
    case 'ssh': return openSsh(u, opts);
  }
}

// ---- sockets ----------------------------------------------------------------

function socketTransport(sock: net.Socket, description: string): Transport {
  let lastError: Error | undefined;
  let closeCb: ((err: Error | undefined) => void) | undefined;
  let closed = false;
  sock.on('error', (e) => { lastError = e; });
  sock.on('close', () => {
    closed = true;
    closeCb?.(lastError);
  });
  return {
    readable: sock,
    writable: sock,
    description,
    ref: () => { sock.ref(); },
    unref: () => { sock.unref(); },
    destroy: () => { sock.destroy(); },
    onClose: (cb) => {
      closeCb = cb;
      if (closed) cb(lastError);
    },
    diagnostics: () => '',
  };
}

function connectSocket(sock: net.Socket, readyEvent: 'connect' | 'secureConnect'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => { sock.destroy(); reject(e); };
    sock.once('error', onError);
    sock.once(readyEvent, () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

async function openUnix(u: ParsedUri): Promise<Transport> {
  const candidates = unixSocketCandidates(u, defaultSocketEnv());
  const failures: string[] = [];
  const explicit = param(u, 'socket') !== undefined;
  for (const path of candidates) {
    if (!explicit && candidates.length > 1 && !existsSync(path)) {
      failures.push(`${path}: does not exist`);
      continue;
    }
    try {
      const sock = await connectSocket(net.createConnection({ path }), 'connect');
      return socketTransport(sock, `unix:${path}`);
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message}`);
    }
  }
  throw new ConnectError(
    `cannot connect to libvirt for '${u.raw}' over a unix socket (${failures.join('; ')}); is libvirtd (or virt${u.driver}d) running?`,
  );
}

async function openTcp(u: ParsedUri): Promise<Transport> {
  const host = u.host ?? 'localhost';
  const port = u.port ?? DEFAULT_TCP_PORT;
  try {
    const sock = await connectSocket(net.createConnection({ host, port }), 'connect');
    sock.setNoDelay(true);
    return socketTransport(sock, `tcp:${host}:${port}`);
  } catch (e) {
    throw new ConnectError(`cannot connect to libvirt at tcp ${host}:${port}: ${(e as Error).message}`, { cause: e });
  }
}

// ---- TLS --------------------------------------------------------------------

interface PkiPaths { ca: string; cert: string; key: string }

/** libvirt's default PKI locations (root: /etc/pki; others: ~/.pki/libvirt when present). */
export function defaultPkiPaths(u: ParsedUri): PkiPaths {
  const pkipath = param(u, 'pkipath');
  if (pkipath) return { ca: join(pkipath, 'cacert.pem'), cert: join(pkipath, 'clientcert.pem'), key: join(pkipath, 'clientkey.pem') };
  const euid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
  if (euid !== 0) {
    const dir = join(homedir(), '.pki', 'libvirt');
    if (existsSync(join(dir, 'clientcert.pem'))) {
      return { ca: join(dir, 'cacert.pem'), cert: join(dir, 'clientcert.pem'), key: join(dir, 'clientkey.pem') };
    }
  }
  return { ca: '/etc/pki/CA/cacert.pem', cert: '/etc/pki/libvirt/clientcert.pem', key: '/etc/pki/libvirt/private/clientkey.pem' };
}

/** A PEM given inline, or a path to one. */
function loadPem(value: string | undefined, fallbackPath: string, what: string): Buffer {
  if (value && value.includes('-----BEGIN')) return Buffer.from(value);
  const path = value ?? fallbackPath;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConnectError(`cannot read the TLS ${what} from ${path} (set ConnectOptions.tls.${what === 'CA certificate' ? 'caCert' : what === 'client certificate' ? 'clientCert' : 'clientKey'}): ${(e as Error).message}`);
  }
}

async function openTls(u: ParsedUri, opts: ConnectOptions): Promise<Transport> {
  const host = u.host ?? 'localhost';
  const port = u.port ?? DEFAULT_TLS_PORT;
  const paths = defaultPkiPaths(u);
  const t = opts.tls ?? {};
  const ca = loadPem(t.caCert, paths.ca, 'CA certificate');
  const cert = loadPem(t.clientCert, paths.cert, 'client certificate');
  const key = loadPem(t.clientKey, paths.key, 'client key');
  const verify = t.verify ?? param(u, 'no_verify') !== '1';
  const sock = tls.connect({
    host, port, ca, cert, key,
    rejectUnauthorized: verify,
    ...(net.isIP(host) ? {} : { servername: host }),
  });
  try {
    await connectSocket(sock, 'secureConnect');
  } catch (e) {
    throw new ConnectError(`TLS connection to libvirt at ${host}:${port} failed: ${(e as Error).message}`, { cause: e });
  }
  sock.setNoDelay(true);
  return socketTransport(sock, `tls:${host}:${port}`);
}

// ---- ssh --------------------------------------------------------------------

/** Single-quotes for a POSIX shell. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The remote command, mirroring libvirt's: prefer virt-ssh-helper (which finds the right
 * daemon for the URI), otherwise nc to the daemon's unix socket. `proxy` is libvirt's
 * `?proxy=auto|native|netcat`.
 */
export function sshRemoteCommand(u: ParsedUri): string {
  const proxy = param(u, 'proxy') ?? 'auto';
  const netcat = param(u, 'netcat') ?? 'nc';
  const socket = remoteSocketPath(u);
  const readonly = param(u, 'readonly') === '1' ? ' -r' : '';
  const name = remoteName(u) ?? `${u.driver}://${u.path}`;
  const helper = `virt-ssh-helper${readonly} ${shq(name)}`;
  const nc =
    `if ${shq(netcat)} -q 2>&1 | grep "requires an argument" >/dev/null 2>&1; then ARG=-q0; else ARG=; fi; ` +
    `${shq(netcat)} $ARG -U ${shq(socket)}`;
  let script: string;
  switch (proxy) {
    case 'native': script = helper; break;
    case 'netcat': script = nc; break;
    case 'auto':
      script = `which virt-ssh-helper 1>/dev/null 2>&1; if test $? = 0; then ${helper}; else ${nc}; fi`;
      break;
    default:
      throw new ConnectError(`unknown proxy '${proxy}' in '${u.raw}' (auto, native or netcat)`);
  }
  return `sh -c ${shq(script)}`;
}

export function sshArgs(u: ParsedUri, opts: ConnectOptions, keyFile: string | undefined): string[] {
  return [...sshOptionArgs(u, opts, keyFile), '--', u.host!, sshRemoteCommand(u)];
}

/**
 * ssh's options for the URI (port, user, keyfile, known_hosts, no_verify) and the
 * config's ssh settings, without the host and the remote command: what every ssh this
 * project runs to the URI's host takes (the libvirt transport here, the vbox backend's
 * file commands in src/driver/vbox/file-host.ts).
 */
export function sshOptionArgs(u: ParsedUri, opts: ConnectOptions, keyFile: string | undefined): string[] {
  if (!u.host) throw new ConnectError(`ssh transport needs a host in '${u.raw}'`);
  const s = opts.ssh ?? {};
  const args: string[] = ['-T', '-e', 'none', '-o', 'BatchMode=yes'];
  if (u.port) args.push('-p', String(u.port));
  if (u.user) args.push('-l', u.user);
  const key = keyFile ?? param(u, 'keyfile');
  if (key) args.push('-i', key, '-o', 'IdentitiesOnly=yes');
  const knownHosts = s.knownHosts ?? param(u, 'known_hosts');
  if (knownHosts) args.push('-o', `UserKnownHostsFile=${knownHosts}`);
  if (s.strictHostKeyChecking !== undefined) {
    args.push('-o', `StrictHostKeyChecking=${s.strictHostKeyChecking ? 'yes' : 'no'}`);
  } else if (param(u, 'no_verify') === '1') {
    args.push('-o', 'StrictHostKeyChecking=no');
  }
  if (s.extraArgs) args.push(...s.extraArgs);
  return args;
}

async function openSsh(u: ParsedUri, opts: ConnectOptions): Promise<Transport> {
  // An inline private key goes to a 0600 temp file for the lifetime of the ssh child.
  let tempDir: string | undefined;
  let keyFile: string | undefined;
  const pk = opts.ssh?.privateKey;
  if (pk && pk.includes('-----BEGIN')) {
    tempDir = mkdtempSync(join(tmpdir(), 'libvirt-ssh-'));
    keyFile = join(tempDir, 'id');
    writeFileSync(keyFile, pk.endsWith('\n') ? pk : `${pk}\n`, { mode: 0o600 });
  } else if (pk) {
    keyFile = pk;
  }
  const cleanup = () => { if (tempDir) rmSync(tempDir, { recursive: true, force: true }); tempDir = undefined; };

  const command = param(u, 'command') ?? 'ssh';
  let args: string[];
  try {
    args = sshArgs(u, opts, keyFile);
  } catch (e) {
    cleanup();
    throw e;
  }
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-STDERR_TAIL);
  });
  let spawnError: Error | undefined;
  let closeCb: ((err: Error | undefined) => void) | undefined;
  let closedWith: { err: Error | undefined } | undefined;
  const finish = (err: Error | undefined) => {
    if (closedWith) return;
    cleanup();
    closedWith = { err };
    closeCb?.(err);
  };
  child.on('error', (e) => {
    spawnError = e;
    // A failed spawn never emits 'close' on some Node versions.
    setImmediate(() => finish(new Error(`cannot run ${command}: ${e.message}`)));
  });
  child.on('close', (code, signal) => {
    finish(spawnError ?? (code ? new Error(`${command} exited with status ${code}`) : signal ? new Error(`${command} killed by ${signal}`) : undefined));
  });
  child.stdin.on('error', () => { /* EPIPE when ssh dies; reported through 'close' */ });
  child.stdout.on('error', () => {});

  const pipes = [child.stdin, child.stdout, child.stderr] as unknown as Array<{ ref?: () => void; unref?: () => void }>;
  const description = `ssh:${u.user ? `${u.user}@` : ''}${u.host}${u.port ? `:${u.port}` : ''}`;
  return {
    readable: child.stdout,
    writable: child.stdin,
    description,
    ref: () => { child.ref(); for (const p of pipes) p.ref?.(); },
    unref: () => { child.unref(); for (const p of pipes) p.unref?.(); },
    destroy: () => {
      child.stdin.destroy();
      child.stdout.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
    onClose: (cb) => {
      closeCb = cb;
      if (closedWith) cb(closedWith.err);
    },
    diagnostics: () => {
      const tail = stderr.trim();
      return tail ? `ssh stderr: ${tail}` : '';
    },
  };
}
