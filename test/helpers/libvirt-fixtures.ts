// Real plumbing for the libvirt client's integration tests: proxies to the daemon's unix
// socket (to cut a connection mid-call, or to expose it over TCP/TLS on loopback),
// throwaway certificates, and a private sshd.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { scratchDir } from './scratch.js';

export const DAEMON_SOCKET = '/var/run/libvirt/libvirt-sock';
export const PREFIX = 't-rpc-';

export function requireDaemon(): void {
  if (!existsSync(DAEMON_SOCKET)) {
    throw new Error(`libvirtd socket ${DAEMON_SOCKET} is missing: start the daemons (virtlogd -d; libvirtd -d) — scripts/setup-host.sh does this`);
  }
}

export function requireTool(path: string, why: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing; it is needed for ${why}`);
}

export function uniq(kind: string): string {
  return `${PREFIX}${kind}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export function tempDir(kind: string): string {
  return scratchDir(`${PREFIX}${kind}-`);
}

export interface Proxy {
  /** unix path or TCP port the client should connect to */
  address: string;
  port: number;
  /** bytes received from clients so far */
  readonly bytesIn: number;
  /** stop forwarding client→daemon bytes (calls stay in flight) */
  stall(): void;
  /** hang up every proxied connection, as a dying daemon would */
  cutAll(): void;
  close(): Promise<void>;
}

function pipePair(client: net.Socket, state: { stalled: boolean; bytesIn: number }, sockets: Set<net.Socket>): void {
  const upstream = net.createConnection({ path: DAEMON_SOCKET });
  sockets.add(client);
  sockets.add(upstream);
  client.on('data', (d: Buffer) => {
    state.bytesIn += d.length;
    if (!state.stalled) upstream.write(d);
  });
  upstream.on('data', (d: Buffer) => client.write(d));
  const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
  client.on('close', end);
  upstream.on('close', end);
  client.on('error', end);
  upstream.on('error', end);
}

async function listen(server: net.Server, where: { path?: string; port?: number; host?: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => resolve());
  });
}

function makeProxy(server: net.Server, address: string, port: number, state: { stalled: boolean; bytesIn: number }, sockets: Set<net.Socket>): Proxy {
  return {
    address,
    port,
    get bytesIn() { return state.bytesIn; },
    stall: () => { state.stalled = true; },
    cutAll: () => { for (const s of sockets) s.destroy(); sockets.clear(); },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

export async function startUnixProxy(dir: string): Promise<Proxy> {
  const state = { stalled: false, bytesIn: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => pipePair(c, state, sockets));
  const path = join(dir, 'proxy.sock');
  await listen(server, { path });
  return makeProxy(server, path, 0, state, sockets);
}

export async function startTcpProxy(): Promise<Proxy> {
  const state = { stalled: false, bytesIn: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => pipePair(c, state, sockets));
  await listen(server, { port: 0, host: '127.0.0.1' });
  const port = (server.address() as net.AddressInfo).port;
  return makeProxy(server, `127.0.0.1:${port}`, port, state, sockets);
}

export interface Certs { dir: string; ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string; otherCa: string }

/** A throwaway CA, a server cert for localhost/127.0.0.1 and a client cert, all via openssl. */
export function makeCerts(dir: string): Certs {
  requireTool('/usr/bin/openssl', 'the TLS transport test');
  const o = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ext = join(dir, 'san.ext');
  writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=t-rpc CA');
  o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=t-rpc other CA');
  for (const who of ['server', 'client']) {
    o('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? 'localhost' : 't-rpc-client'}`);
    o('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.pem`, '-days', '2',
      ...(who === 'server' ? ['-extfile', ext] : []));
  }
  return {
    dir, ca: join(dir, 'ca.pem'), otherCa: join(dir, 'other.pem'),
    serverCert: join(dir, 'server.pem'), serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'), clientKey: join(dir, 'client.key'),
  };
}

/** TLS terminator on loopback that requires a client cert from our CA and forwards to the daemon socket. */
export async function startTlsProxy(certs: Certs): Promise<Proxy & { authorizedClients: number }> {
  const state = { stalled: false, bytesIn: 0 };
  const sockets = new Set<net.Socket>();
  let authorizedClients = 0;
  const server = tls.createServer({
    key: readFileSync(certs.serverKey), cert: readFileSync(certs.serverCert), ca: readFileSync(certs.ca),
    requestCert: true, rejectUnauthorized: true,
  }, (c) => {
    if (c.authorized) authorizedClients++;
    pipePair(c, state, sockets);
  });
  server.on('tlsClientError', () => {});
  await listen(server, { port: 0, host: '127.0.0.1' });
  const port = (server.address() as net.AddressInfo).port;
  const p = makeProxy(server, `127.0.0.1:${port}`, port, state, sockets);
  // A getter, not a copied value: the count grows as clients connect.
  return Object.defineProperty(p, 'authorizedClients', { get: () => authorizedClients }) as Proxy & { authorizedClients: number };
}

export interface Sshd {
  port: number;
  dir: string;
  clientKey: string;
  knownHosts: string;
  /** a PATH directory with sh/which/grep/nc but no virt-ssh-helper */
  helperlessBin: string;
  stop(): Promise<void>;
}

/** A private sshd on 127.0.0.1 with throwaway host and client keys. */
export async function startSshd(): Promise<Sshd> {
  requireTool('/usr/sbin/sshd', 'the ssh transport test (package openssh-server)');
  requireTool('/usr/bin/ssh-keygen', 'the ssh transport test');
  const dir = tempDir('sshd');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const port = await freePort();
  const hostPub = readFileSync(join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const tool of ['sh', 'which', 'grep', 'nc', 'cat']) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    symlinkSync(real, join(bin, tool));
  }
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'UsePAM no', 'StrictModes no', 'AcceptEnv PATH', 'LogLevel ERROR', '',
  ].join('\n'));
  mkdirSync('/run/sshd', { recursive: true });
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => { err += String(d); });
  // Ready when the port accepts connections.
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${err}`);
    if (await canConnect(port)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!(await canConnect(port))) throw new Error(`sshd did not listen on 127.0.0.1:${port}: ${err}`);
  return {
    port, dir, clientKey: join(dir, 'client_key'), knownHosts: join(dir, 'known_hosts'), helperlessBin: bin,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}
