// The vbox profile's pieces that need no daemon: which URIs it serves, its file locks
// (holder marker, a dead holder's lock broken), the host-wide flock, and the redefine's
// round trip from libvirt's XML back to a spec (what a cold attach keeps).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkVboxConfig, hostLockPath } from '../../src/driver/vbox/profile.js';
import { takeHostLock, withFileLock, fileLocks } from '../../src/driver/vbox/state.js';
import { specOf } from '../../src/driver/vbox/disks.js';
import { layout, ensureLayout } from '../../src/driver/vbox/files.js';
import { LocalFileHost } from '../../src/driver/vbox/file-host.js';
import { parseVboxDomain, renderVboxDomain, type VboxDomainSpec } from '../../src/xml/index.js';
import { processStart } from '../../src/driver/shared/creator.js';
import { hostname } from 'node:os';
import type { Host } from '../../src/driver/shared/host.js';
import type { Config } from '../../src/config/schema.js';
import { scratchDir } from '../helpers/scratch.js';

const dir = scratchDir('t-vbox-profile-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (uri: string, path = '/var/lib/x') => ({ libvirt: { uri }, storage: { path } }) as unknown as Config;
const logged: string[] = [];
const log = { warn: (_o: unknown, m: string) => logged.push(m), info: () => undefined, debug: () => undefined, error: () => undefined };
const host = { config: { libvirt: { uri: 'vbox:///session' }, storage: { path: dir }, name_prefix: 't-' }, log } as unknown as Host;

describe('vbox: which libvirt URIs the profile serves', () => {
  it.each(['vbox:///session', 'vbox:///session?socket=/var/lib/bosh-cpi-vbox-libvirtd/run/libvirt-sock', 'vbox+unix:///session', 'vbox+ssh://bosh@host/session', 'vbox+ssh://bosh@host:2222/session?keyfile=/k&socket=/s'])('accepts %s (local, or the files over ssh)', (uri) => {
    expect(() => checkVboxConfig(config(uri))).not.toThrow();
  });

  it.each(['vbox+tcp://host/session', 'vbox+tls://host/session', 'vbox://host/session'])('refuses %s (libvirt only, not the host\'s files) naming it and why', (uri) => {
    expect(() => checkVboxConfig(config(uri))).toThrow(expect.objectContaining({
      name: 'NotSupported',
      message: expect.stringMatching(new RegExp(`libvirt\\.uri ${JSON.stringify(uri).replace(/[+?.\/]/g, '\\$&')} is not local and not ssh: the vbox backend writes .* reaches only libvirt, not the host's files; use vbox:///session on the VirtualBox host or vbox\\+ssh://`)),
    }));
  });

  it('refuses a relative storage.path', () => {
    expect(() => checkVboxConfig(config('vbox:///session', 'store'))).toThrow(/storage.path "store" must be an absolute directory/);
  });

  it('has one host lock per daemon URI', () => {
    expect(hostLockPath('vbox:///session')).toBe(hostLockPath('vbox:///session'));
    expect(hostLockPath('vbox:///session')).not.toBe(hostLockPath('vbox:///session?socket=/x'));
  });
});

describe('vbox: file locks in storage.path/state/locks', () => {
  it('writes the holder marker while held and removes the file after', async () => {
    await ensureLayout(new LocalFileHost('vbox:///session'), layout(host.config));
    const file = join(layout(host.config).locks, 't-vm-1.lock');
    await withFileLock(host, 't-vm-1', async () => {
      const m = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; host: string; what: string };
      expect(m).toMatchObject({ pid: process.pid, host: hostname(), what: 'testing' });
      expect(await fileLocks.holder(host, 't-vm-1')).toMatchObject({ state: 'running', marker: { pid: process.pid } });
    }, 'testing');
    expect(() => readFileSync(file)).toThrow(/ENOENT/);
  });

  it('waits for a live holder and then names it', async () => {
    await expect(withFileLock(host, 't-vm-2', () => withFileLock(host, 't-vm-2', async () => 'never', 'inner', 300), 'outer')).rejects.toThrow(
      new RegExp(`Timed out after \\d+ s waiting for lock .*t-vm-2\\.lock, held by pid ${process.pid} on ${hostname()} since .* \\(outer\\)`),
    );
  });

  it('breaks at once a lock whose holder is gone (a process that ran on this host and exited)', async () => {
    // A marker of a real process, written while it ran: same pid and start, now gone.
    const child = spawnSync(process.execPath, ['-e', 'console.log(process.pid, require("fs").readFileSync(`/proc/${process.pid}/stat`, "utf8"))'], { encoding: 'utf8' });
    const pid = Number(child.stdout.split(' ')[0]);
    const stat = child.stdout.slice(child.stdout.indexOf(' ') + 1);
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    expect(processStart(pid)).not.toBe(`${boot}/${ticks}`);
    const file = join(layout(host.config).locks, 't-vm-3.lock');
    mkdirSync(layout(host.config).locks, { recursive: true });
    writeFileSync(file, JSON.stringify({ host: hostname(), pid, start: `${boot}/${ticks}`, at: new Date().toISOString(), token: 'dead' }));
    logged.length = 0;
    expect(await withFileLock(host, 't-vm-3', async () => 'taken', undefined, 5_000)).toBe('taken');
    expect(logged).toContain('breaking a lock left by a CPI process that died');
  });
});

describe('vbox: the host-wide lock (flock held by a child process)', () => {
  it('lets one holder in at a time, names the wait when it gives up, and is free again after release', async () => {
    // A daemon URI of the test's own: its lock file is in the temporary directory.
    const fh = new LocalFileHost(`vbox:///session?socket=${join(dir, 'sock')}`);
    const release = await takeHostLock(fh, 5, log as unknown as Host['log']);
    await expect(takeHostLock(fh, 1, log as unknown as Host['log'])).rejects.toThrow(/Timed out after 1 s waiting for the VirtualBox host lock .*another CPI call holds it/);
    await release();
    const again = await takeHostLock(fh, 1, log as unknown as Host['log']);
    await again();
  });
});

describe('vbox: a redefine keeps what libvirt reads back', () => {
  it('specOf(parse(render(spec))) is the spec: disks on their ports, the ISO, NICs with MACs and models', () => {
    const spec: VboxDomainSpec = {
      name: 't-vm-x',
      uuid: '0b7c4b2e-1111-4222-8333-444455556666',
      memoryMiB: 512,
      vcpus: 2,
      firmware: 'bios',
      disks: [
        { file: '/s/vms/t-vm-x.root.vdi', port: 0 },
        { file: '/s/vms/t-vm-x.ephemeral.vdi', port: 1 },
        { file: '/s/disks/t-d-1.vdi', port: 4 },
      ],
      settings: { file: '/s/vms/t-vm-x.settings.iso', bus: 'sata', port: 2 },
      interfaces: [
        { kind: 'network', network: 'vboxnet0', mac: '52:54:00:aa:bb:01', model: '82540EM' },
        { kind: 'bridge', bridge: 'eth0', mac: '52:54:00:aa:bb:02', model: 'virtio' },
      ],
    };
    expect(specOf(parseVboxDomain(renderVboxDomain(spec)))).toEqual(spec);
  });
});
