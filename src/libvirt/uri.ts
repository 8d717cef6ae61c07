// libvirt connection URIs, resolved the way libvirt's remote driver does
// (src/remote/remote_sockets.c, remote_driver.c): driver[+transport]://[user@][host][:port]/path[?params]
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgError } from './errors.js';

export type TransportKind = 'unix' | 'tcp' | 'tls' | 'ssh';

export interface ParsedUri {
  /** as given */
  raw: string;
  /** hypervisor driver: qemu, test, lxc, vbox, … ("remote" means "whatever the daemon serves") */
  driver: string;
  transport: TransportKind;
  /** transport as written in the URI, before defaulting (undefined when absent) */
  explicitTransport: TransportKind | undefined;
  user: string | undefined;
  host: string | undefined;
  port: number | undefined;
  path: string;
  /** query parameters in order, percent-decoded */
  params: Array<[string, string]>;
}

const SUPPORTED: readonly TransportKind[] = ['unix', 'tcp', 'tls', 'ssh'];
const KNOWN_BUT_UNSUPPORTED = ['ext', 'libssh', 'libssh2'];

/**
 * Query parameters the client consumes (libvirt's remote driver strips these before
 * forwarding the URI to the daemon); everything else is forwarded.
 */
const CLIENT_PARAMS = new Set([
  'name', 'command', 'socket', 'auth', 'netcat', 'keyfile', 'no_verify', 'no_tty', 'pkipath',
  'known_hosts', 'known_hosts_verify', 'sshauth', 'proxy', 'mode', 'tls_priority', 'readonly',
]);

const URI_RE = /^([A-Za-z][A-Za-z0-9+.-]*):(?:\/\/(?:([^@/?#]*)@)?(\[[^\]]*\]|[^:/?#]*)(?::(\d*))?)?([^?#]*)(?:\?([^#]*))?(?:#.*)?$/;

export function parseUri(raw: string): ParsedUri {
  const m = URI_RE.exec(raw.trim());
  if (!m) throw new InvalidArgError(`not a libvirt URI: '${raw}'`);
  const scheme = m[1]!;
  const [driverPart, transportPart, ...extra] = scheme.split('+');
  if (extra.length) throw new InvalidArgError(`URI scheme '${scheme}' has more than one '+'`);
  const driver = driverPart!.toLowerCase();
  let explicitTransport: TransportKind | undefined;
  if (transportPart !== undefined) {
    const t = transportPart.toLowerCase();
    if (KNOWN_BUT_UNSUPPORTED.includes(t)) {
      throw new InvalidArgError(`transport '${t}' in '${raw}' is not supported by bosh-libvirt-cpi (use unix, tcp, tls or ssh)`);
    }
    if (!(SUPPORTED as readonly string[]).includes(t)) {
      throw new InvalidArgError(`transport '${t}' in '${raw}' is not recognised (should be unix, tcp, tls or ssh)`);
    }
    explicitTransport = t as TransportKind;
  }
  const user = m[2] !== undefined && m[2] !== '' ? decodeURIComponent(m[2]) : undefined;
  let host = m[3] !== undefined && m[3] !== '' ? m[3] : undefined;
  if (host?.startsWith('[')) host = host.slice(1, -1);
  let port: number | undefined;
  if (m[4] !== undefined && m[4] !== '') {
    port = Number(m[4]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgError(`bad port '${m[4]}' in '${raw}'`);
  }
  const path = decodeURIComponent(m[5] ?? '');
  const params: Array<[string, string]> = [];
  if (m[6]) {
    for (const part of m[6].split('&')) {
      if (!part) continue;
      const eq = part.indexOf('=');
      const k = eq < 0 ? part : part.slice(0, eq);
      const v = eq < 0 ? '' : part.slice(eq + 1);
      params.push([decodeURIComponent(k.replace(/\+/g, ' ')), decodeURIComponent(v.replace(/\+/g, ' '))]);
    }
  }
  if (explicitTransport === 'unix' && host) {
    throw new InvalidArgError(`using unix socket and remote server '${host}' is not supported ('${raw}')`);
  }
  const transport: TransportKind = explicitTransport ?? (host ? 'tls' : 'unix');
  return { raw, driver, transport, explicitTransport, user, host, port, path, params };
}

export function param(u: ParsedUri, name: string): string | undefined {
  let v: string | undefined;
  for (const [k, val] of u.params) if (k === name) v = val;
  return v;
}

/**
 * The URI forwarded in CONNECT_OPEN: no transport, host, user or port, and without the
 * parameters only the client understands (`qemu+ssh://h/system?keyfile=k` → `qemu:///system`).
 * null means "let the daemon pick" (the `remote` pseudo-driver).
 */
export function remoteName(u: ParsedUri): string | null {
  const explicit = param(u, 'name');
  if (explicit !== undefined) return explicit;
  if (u.driver === 'remote') return null;
  const kept = u.params.filter(([k]) => !CLIENT_PARAMS.has(k));
  const query = kept.length ? `?${kept.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}` : '';
  return `${u.driver}://${u.path}${query}`;
}

export interface SocketEnv {
  euid: number;
  xdgRuntimeDir: string | undefined;
  home: string;
  exists(path: string): boolean;
}

export function defaultSocketEnv(): SocketEnv {
  return {
    euid: typeof process.geteuid === 'function' ? process.geteuid() : 0,
    xdgRuntimeDir: process.env['XDG_RUNTIME_DIR'] || undefined,
    home: homedir(),
    exists: existsSync,
  };
}

/** True when libvirt would use the per-user daemon (…/session, or test+… as non-root). */
export function isSessionUri(u: ParsedUri, env: SocketEnv): boolean {
  if (env.euid === 0) return false;
  return u.path === '/session' || u.explicitTransport !== undefined && u.driver === 'test';
}

/**
 * Candidate unix socket paths, most preferred first: the modular daemon's socket
 * (virt<driver>d-sock) then the monolithic libvirtd's (libvirt-sock); `?socket=` wins.
 * The caller connects to the first that exists (and reports all of them if none does).
 */
export function unixSocketCandidates(u: ParsedUri, env: SocketEnv = defaultSocketEnv()): string[] {
  const explicit = param(u, 'socket');
  if (explicit) return [explicit];
  const readonly = param(u, 'readonly') === '1';
  const direct = u.driver === 'remote' ? 'libvirt' : `virt${u.driver}d`;
  if (isSessionUri(u, env)) {
    const dir = env.xdgRuntimeDir ? join(env.xdgRuntimeDir, 'libvirt') : join(env.home, '.cache', 'libvirt');
    return unique([join(dir, `${direct}-sock`), join(dir, 'libvirt-sock')]);
  }
  const suffix = readonly ? 'sock-ro' : 'sock';
  return unique([`/var/run/libvirt/${direct}-${suffix}`, `/var/run/libvirt/libvirt-${suffix}`]);
}

/** The socket a remote (ssh) host should be reached on; libvirt assumes the monolithic daemon's. */
export function remoteSocketPath(u: ParsedUri): string {
  const explicit = param(u, 'socket');
  if (explicit) return explicit;
  return param(u, 'readonly') === '1' ? '/var/run/libvirt/libvirt-sock-ro' : '/var/run/libvirt/libvirt-sock';
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}
