import { describe, expect, it } from 'vitest';
import { parseUri, remoteName, unixSocketCandidates, type SocketEnv } from '../../src/libvirt/uri.js';
import { sshArgs, sshRemoteCommand } from '../../src/libvirt/transports.js';

const root: SocketEnv = { euid: 0, xdgRuntimeDir: '/run/user/0', home: '/root', exists: () => true };
const user: SocketEnv = { euid: 1000, xdgRuntimeDir: '/run/user/1000', home: '/home/u', exists: () => true };

describe('parseUri', () => {
  it('splits driver, transport, user, host, port, path and params', () => {
    const u = parseUri('qemu+ssh://bosh@host.example:2222/system?keyfile=/k&foo=a%20b');
    expect(u).toMatchObject({
      driver: 'qemu', transport: 'ssh', user: 'bosh', host: 'host.example', port: 2222, path: '/system',
      params: [['keyfile', '/k'], ['foo', 'a b']],
    });
  });

  it('defaults the transport to unix without a host and tls with one', () => {
    expect(parseUri('qemu:///system').transport).toBe('unix');
    expect(parseUri('qemu://h/system').transport).toBe('tls');
    expect(parseUri('test+tcp://127.0.0.1:5000/default')).toMatchObject({ transport: 'tcp', port: 5000 });
  });

  it('handles IPv6 literals', () => {
    expect(parseUri('qemu+tls://[fd00::1]:16514/system')).toMatchObject({ host: 'fd00::1', port: 16514 });
  });

  it('rejects unknown or unsupported transports, bad ports and unix with a host', () => {
    expect(() => parseUri('qemu+foo:///system')).toThrow(/not recognised/);
    expect(() => parseUri('qemu+libssh2://h/system')).toThrow(/not supported/);
    expect(() => parseUri('qemu+tcp://h:99999/system')).toThrow(/bad port/);
    expect(() => parseUri('qemu+unix://h/system')).toThrow(/remote server/);
    expect(() => parseUri('not a uri')).toThrow(/not a libvirt URI/);
  });
});

describe('remoteName (the URI sent in CONNECT_OPEN)', () => {
  it.each([
    ['qemu+ssh://h/system', 'qemu:///system'],
    ['qemu+ssh://u@h:22/system?keyfile=/x&no_verify=1', 'qemu:///system'],
    ['test+unix:///default', 'test:///default'],
    ['qemu:///session', 'qemu:///session'],
    ['qemu+tls://h/system?pkipath=/p&mode=legacy&extra=1', 'qemu:///system?extra=1'],
  ])('%s → %s', (raw, name) => {
    expect(remoteName(parseUri(raw))).toBe(name);
  });

  it('honours ?name= and sends null for the remote pseudo-driver', () => {
    expect(remoteName(parseUri('remote+ssh://h/?name=qemu:///system'))).toBe('qemu:///system');
    expect(remoteName(parseUri('remote+ssh://h/'))).toBeNull();
  });
});

describe('unix socket selection', () => {
  it('prefers the modular daemon socket, then libvirtd', () => {
    expect(unixSocketCandidates(parseUri('qemu:///system'), root)).toEqual([
      '/var/run/libvirt/virtqemud-sock', '/var/run/libvirt/libvirt-sock',
    ]);
  });

  it('uses the system daemon for test+unix as root and the session daemon otherwise', () => {
    expect(unixSocketCandidates(parseUri('test+unix:///default'), root)[1]).toBe('/var/run/libvirt/libvirt-sock');
    expect(unixSocketCandidates(parseUri('test+unix:///default'), user)).toEqual([
      '/run/user/1000/libvirt/virttestd-sock', '/run/user/1000/libvirt/libvirt-sock',
    ]);
  });

  it('uses $XDG_RUNTIME_DIR for session URIs, ~/.cache without it', () => {
    expect(unixSocketCandidates(parseUri('qemu:///session'), user)[0]).toBe('/run/user/1000/libvirt/virtqemud-sock');
    expect(unixSocketCandidates(parseUri('vbox:///session'), { ...user, xdgRuntimeDir: undefined })[0])
      .toBe('/home/u/.cache/libvirt/virtvboxd-sock');
  });

  it('lets ?socket= override and ?readonly=1 pick the -ro socket', () => {
    expect(unixSocketCandidates(parseUri('qemu:///system?socket=/tmp/s'), root)).toEqual(['/tmp/s']);
    expect(unixSocketCandidates(parseUri('qemu:///system?readonly=1'), root)[1]).toBe('/var/run/libvirt/libvirt-sock-ro');
  });
});

describe('ssh command line', () => {
  it('passes port, user, key and host, then the helper-or-nc shell snippet', () => {
    const u = parseUri('qemu+ssh://bosh@h:2222/system');
    const args = sshArgs(u, { ssh: { knownHosts: '/kh', strictHostKeyChecking: true, extraArgs: ['-o', 'X=1'] } }, '/key');
    expect(args.slice(0, 5)).toEqual(['-T', '-e', 'none', '-o', 'BatchMode=yes']);
    expect(args).toEqual(expect.arrayContaining(['-p', '2222', '-l', 'bosh', '-i', '/key', '-o', 'UserKnownHostsFile=/kh', '-o', 'StrictHostKeyChecking=yes', 'X=1']));
    expect(args.at(-3)).toBe('--');
    expect(args.at(-2)).toBe('h');
    const cmd = args.at(-1)!;
    expect(cmd).toMatch(/^sh -c '/);
    expect(cmd).toContain('which virt-ssh-helper');
    expect(cmd).toContain("virt-ssh-helper '\\''qemu:///system'\\''");
    expect(cmd).toContain("-U '\\''/var/run/libvirt/libvirt-sock'\\''");
  });

  it('supports proxy=netcat and proxy=native like libvirt', () => {
    expect(sshRemoteCommand(parseUri('qemu+ssh://h/system?proxy=netcat'))).not.toContain('virt-ssh-helper');
    expect(sshRemoteCommand(parseUri('qemu+ssh://h/system?proxy=native'))).not.toContain(' -U ');
  });
});
