// Remote transports against loopback endpoints on this machine:
// - ssh: a private sshd on 127.0.0.1 (throwaway keys) → virt-ssh-helper, or nc -U to the daemon socket;
// - tcp: a loopback TCP proxy that forwards to the daemon's unix socket (libvirtd itself is
//   not reconfigured to listen on TCP);
// - tls: a Node TLS server on loopback (throwaway openssl CA, client cert required) that
//   forwards to the daemon's unix socket.
// Missing prerequisites (sshd, ssh-keygen, openssl, the daemon) fail these tests with the reason.
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectError, connect, isLibvirtError, ErrorCode } from '../../src/libvirt/index.js';
import {
  makeCerts, requireDaemon, startSshd, startTcpProxy, startTlsProxy, tempDir, type Certs, type Proxy, type Sshd,
} from '../helpers/libvirt-fixtures.js';

beforeAll(() => requireDaemon());

describe('ssh transport (private sshd on 127.0.0.1)', () => {
  let sshd: Sshd;
  beforeAll(async () => { sshd = await startSshd(); });
  afterAll(async () => { await sshd?.stop(); });

  const opts = () => ({ ssh: { privateKey: sshd.clientKey, knownHosts: sshd.knownHosts, strictHostKeyChecking: true } });

  it('reaches qemu:///system through virt-ssh-helper', async () => {
    const c = await connect(`qemu+ssh://root@127.0.0.1:${sshd.port}/system`, opts());
    try {
      expect(c.uri).toBe('qemu:///system');
      expect(await c.capabilities()).toContain('<capabilities>');
    } finally {
      await c.close();
    }
  });

  it('reaches test:///default through the nc fallback (?proxy=netcat)', async () => {
    const c = await connect(`test+ssh://root@127.0.0.1:${sshd.port}/default?proxy=netcat`, opts());
    try {
      expect((await c.domains.lookupByName('test')).name).toBe('test');
    } finally {
      await c.close();
    }
  });

  it('falls back to nc when virt-ssh-helper is not on the remote PATH (auto mode)', async () => {
    const c = await connect(`test+ssh://root@127.0.0.1:${sshd.port}/default`, {
      ssh: { ...opts().ssh, extraArgs: ['-o', `SetEnv=PATH=${sshd.helperlessBin}`] },
    });
    try {
      expect((await c.domains.listAll()).map((d) => d.name)).toContain('test');
    } finally {
      await c.close();
    }
  });

  it('accepts the private key as PEM content', async () => {
    const c = await connect(`test+ssh://root@127.0.0.1:${sshd.port}/default`, {
      ssh: { ...opts().ssh, privateKey: readFileSync(sshd.clientKey, 'utf8') },
    });
    try {
      expect(await c.libVersion()).toBeGreaterThan(0n);
    } finally {
      await c.close();
    }
  });

  it("surfaces ssh's stderr when authentication fails", async () => {
    const wrongKeyDir = tempDir('nokey');
    try {
      const err = await connect(`test+ssh://nobody@127.0.0.1:${sshd.port}/default`, opts()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as Error).message).toMatch(/ssh stderr: .*Permission denied/);
    } finally {
      rmSync(wrongKeyDir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown host key with strict checking', async () => {
    const err = await connect(`test+ssh://root@127.0.0.1:${sshd.port}/default`, {
      ssh: { privateKey: sshd.clientKey, knownHosts: '/dev/null', strictHostKeyChecking: true },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as Error).message).toMatch(/Host key verification failed|No .* host key is known/);
  });
});

describe('tcp transport (loopback TCP proxy to the daemon socket)', () => {
  let proxy: Proxy;
  beforeAll(async () => { proxy = await startTcpProxy(); });
  afterAll(async () => { await proxy?.close(); });

  it('opens test:///default over tcp', async () => {
    const c = await connect(`test+tcp://127.0.0.1:${proxy.port}/default`);
    try {
      expect(c.uri).toBe('test:///default');
      expect((await c.domains.lookupByName('test')).name).toBe('test');
      expect(proxy.bytesIn).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });

  it('reports a refused connection as a ConnectError', async () => {
    const err = await connect('test+tcp://127.0.0.1:1/default').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(isLibvirtError(err, ErrorCode.NO_CONNECT)).toBe(true);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  });
});

describe('tls transport (Node TLS proxy with throwaway openssl certificates)', () => {
  let certs: Certs;
  let proxy: Proxy & { authorizedClients: number };
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('tls');
    certs = makeCerts(dir);
    proxy = await startTlsProxy(certs);
  });
  afterAll(async () => {
    await proxy?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens test:///default with a client certificate (paths and PEM content)', async () => {
    const c = await connect(`test+tls://localhost:${proxy.port}/default`, {
      tls: { caCert: certs.ca, clientCert: readFileSync(certs.clientCert, 'utf8'), clientKey: certs.clientKey },
    });
    try {
      expect((await c.domains.lookupByName('test')).name).toBe('test');
      expect(proxy.authorizedClients).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });

  it('finds the certificates under ?pkipath= like libvirt', async () => {
    const { mkdirSync, copyFileSync } = await import('node:fs');
    const pki = `${dir}/pki`;
    mkdirSync(pki);
    copyFileSync(certs.ca, `${pki}/cacert.pem`);
    copyFileSync(certs.clientCert, `${pki}/clientcert.pem`);
    copyFileSync(certs.clientKey, `${pki}/clientkey.pem`);
    const c = await connect(`test+tls://127.0.0.1:${proxy.port}/default?pkipath=${pki}`);
    try {
      expect(await c.libVersion()).toBeGreaterThan(0n);
    } finally {
      await c.close();
    }
  });

  it('rejects a server certificate from an untrusted CA', async () => {
    const err = await connect(`test+tls://localhost:${proxy.port}/default`, {
      tls: { caCert: certs.otherCa, clientCert: certs.clientCert, clientKey: certs.clientKey },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as Error).message).toMatch(/TLS connection.*failed/);
  });

  it('names the missing file when no client certificate is available', async () => {
    const err = await connect(`test+tls://localhost:${proxy.port}/default?pkipath=/nonexistent-t-rpc`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as Error).message).toMatch(/nonexistent-t-rpc\/cacert\.pem/);
  });
});
