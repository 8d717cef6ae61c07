// The vbox backend over vbox+ssh:// end to end, over the SIMULATED VirtualBox: bin/cpi
// reaches the libvirtd of scripts/vbox-host.sh (libvirt's real vbox driver over
// fixtures/vbox-sim, never a real VirtualBox) through a private sshd on 127.0.0.1
// (test/helpers/libvirt-fixtures.ts startSshd, throwaway keys), and writes every file of
// storage.path through that ssh: the "VirtualBox host" is this machine seen over ssh, so
// the test reads the files it expects directly, and what the simulated VirtualBox holds
// from its state file. The storage directory's name has a space and a quote in it: every
// path crosses the remote shell quoted.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPI_BUNDLE, ROOT, request, runCpi, writeConfig } from '../helpers/cpi.js';
import { creatorMarker } from '../../src/driver/shared/creator.js';
import { hostLockPath } from '../../src/driver/vbox/profile.js';
import { scratchDir } from '../helpers/scratch.js';
import { attachments, filesUnder, machine, ours, removeOurs, sim, VBOX_DAEMON_DIR, VBOX_DAEMON_SOCKET } from '../helpers/vbox-sim.js';
import { tinyStemcell } from '../helpers/driver-fixtures.js';
import { startSshd, type Sshd } from '../helpers/libvirt-fixtures.js';
import { vdiUuid } from '../../src/driver/vbox/stemcell-image.js';
import { vboxDiskByIdPath } from '../../src/driver/vbox/disk-hints.js';
import { SshFileHost } from '../../src/driver/vbox/file-host.js';
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/log/logger.js';

const SCRIPT = join(ROOT, 'scripts', 'vbox-host.sh');
const DIR = VBOX_DAEMON_DIR;
const SOCKET = VBOX_DAEMON_SOCKET;
const PREFIX = 't-vbssh-';
const STORE = join(DIR, `${PREFIX}store it's here`);


let localUri = '';
let sshd: Sshd | undefined;
let base: Record<string, Record<string, unknown>> = {};
let config = '';
const scratch = scratchDir(PREFIX);
/** ssh commands each call ran (from the CPI's log), for docs/vbox.md. */
const cost: Record<string, number> = {};

function sshUri(extra = ''): string {
  const q = new URLSearchParams({ socket: SOCKET, proxy: 'netcat', keyfile: sshd!.clientKey, known_hosts: sshd!.knownHosts });
  return `vbox+ssh://root@127.0.0.1:${sshd!.port}/session?${q.toString()}${extra}`;
}

async function call(method: string, args: unknown[], cfg = config) {
  const run = await runCpi(request(method, args), { config: cfg });
  const n = [...run.stderr.matchAll(/"ssh_commands":(\d+)/g)].map((m) => Number(m[1]));
  if (n.length) cost[method] = Math.max(cost[method] ?? 0, ...n);
  return { ...run.response, stderr: run.stderr };
}
async function ok(method: string, args: unknown[]): Promise<{ result: unknown; log: string; stderr: string }> {
  const r = await call(method, args);
  if (r.error) throw new Error(`${method} failed: ${r.error.type}: ${r.error.message}`);
  return r;
}

function cleanup(): void {
  if (localUri) removeOurs(localUri, PREFIX, STORE);
}

beforeAll(async () => {
  execFileSync(SCRIPT, ['start'], { stdio: ['ignore', 'ignore', 'pipe'] });
  localUri = execFileSync(SCRIPT, ['uri'], { encoding: 'utf8' }).trim();
  cleanup();
  sshd = await startSshd();
  base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/vbox.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  config = writeConfig({ ...base, name_prefix: PREFIX, libvirt: { uri: sshUri() }, storage: { ...base.storage, path: STORE }, vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 2 } });
}, 120_000);

afterAll(async () => {
  cleanup();
  await sshd?.stop();
  rmSync(scratch, { recursive: true, force: true });
  if (Object.keys(cost).length) console.log(`ssh commands per call: ${JSON.stringify(cost)}`);
}, 120_000);

describe('the vbox backend over vbox+ssh:// (bin/cpi, private sshd, simulated VirtualBox)', () => {
  let stemcell = '';
  let vm = '';
  let disk = '';

  it('create_stemcell converts here and copies the VDI into the remote stemcells directory, nothing else left there', async () => {
    const { result, stderr } = await ok('create_stemcell', [tinyStemcell(), { name: 'ssh', version: '1', disk_format: 'qcow2' }]);
    stemcell = String(result);
    expect(stemcell).toMatch(new RegExp(`^${PREFIX}sc-`));
    expect(stderr).toContain('stemcell VDI copied to the VirtualBox host');
    expect(filesUnder(join(STORE, 'stemcells'))).toEqual([`${stemcell}.vdi`]);
    expect(await vdiUuid(join(STORE, 'stemcells', `${stemcell}.vdi`))).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(readFileSync(join(STORE, 'state', 'tags', `${stemcell}.json`), 'utf8'))).toMatchObject({ kind: 'stemcell', source: 'qcow2' });
    expect(ours(sim(), PREFIX, STORE)).toEqual({ machines: [], hardDisks: [] });
  }, 120_000);

  it('create_vm makes the root and ephemeral VDIs with qemu-img on the VirtualBox host and defines the machine', async () => {
    const { result } = await ok('create_vm', ['agent-ssh', stemcell, { cpu: 1, ram: 256 }, { d: { type: 'dynamic', cloud_properties: { name: 'vboxnet0' } } }, null, {}]);
    vm = (result as [string])[0];
    const m = machine(vm)!;
    expect(m).toMatchObject({ state: 'Running' });
    const vms = join(STORE, 'vms');
    expect(attachments(m).map((a) => [a.bus, a.port, a.type, a.medium])).toEqual([
      ['SATA', 0, 'HardDisk', join(vms, `${vm}.root.vdi`)],
      ['SATA', 1, 'HardDisk', join(vms, `${vm}.ephemeral.vdi`)],
      ['SATA', 2, 'DVD', join(vms, `${vm}.settings.iso`)],
    ]);
    expect(filesUnder(vms)).toEqual([`${vm}.ephemeral.vdi`, `${vm}.root.vdi`, `${vm}.settings.iso`]);
    expect(await vdiUuid(join(vms, `${vm}.root.vdi`))).not.toBe(await vdiUuid(join(STORE, 'stemcells', `${stemcell}.vdi`)));
    expect(execFileSync('isoinfo', ['-d', '-i', join(vms, `${vm}.settings.iso`)], { encoding: 'utf8' })).toMatch(/Volume id: config-2/);
    expect(JSON.parse(readFileSync(join(STORE, 'state', 'records', `${vm}.json`), 'utf8'))).toMatchObject({ agentId: 'agent-ssh' });
  }, 120_000);

  it('create_disk and a cold attach_disk: the disk on SATA port 3, its hint from the VDI read over ssh', async () => {
    disk = String((await ok('create_disk', [128, {}, vm])).result);
    const path = join(STORE, 'disks', `${disk}.vdi`);
    expect(filesUnder(join(STORE, 'disks'))).toEqual([`${disk}.vdi`]);
    const { result, log } = await ok('attach_disk', [vm, disk]);
    expect(result).toEqual({ path: vboxDiskByIdPath(await vdiUuid(path)) });
    expect(log).toMatch(/stopped and started again to attach .*SATA port 3/);
    const m = machine(vm)!;
    expect(m.state).toBe('Running');
    expect(attachments(m).filter((a) => a.port === 3).map((a) => a.medium)).toEqual([path]);
    expect((await ok('get_disks', [vm])).result).toEqual([disk]);
    expect(readdirSync(join(STORE, 'state', 'locks'))).toEqual([]);
  }, 120_000);

  it('detach_disk takes it off again', async () => {
    await ok('detach_disk', [vm, disk]);
    expect(attachments(machine(vm)!).map((a) => a.port)).toEqual([0, 1, 2]);
    expect((await ok('get_disks', [vm])).result).toEqual([]);
  }, 120_000);

  it('delete_vm, delete_disk and delete_stemcell leave no machine, no hard disk and no file behind', async () => {
    await ok('delete_vm', [vm]);
    await ok('delete_disk', [disk]);
    await ok('delete_stemcell', [stemcell]);
    expect(ours(sim(), PREFIX, STORE)).toEqual({ machines: [], hardDisks: [] });
    expect(filesUnder(STORE)).toEqual([]);
    expect((await call('has_vm', [vm])).result).toBe(false);
  }, 120_000);

  it('every call above ran its file commands over ssh (the CPI counts them)', () => {
    for (const method of ['create_stemcell', 'create_vm', 'create_disk', 'attach_disk', 'detach_disk', 'delete_vm', 'delete_disk', 'delete_stemcell']) {
      expect(cost[method], method).toBeGreaterThan(0);
    }
  });

  it('qemu-img missing on the VirtualBox host is a CloudError naming the host and the package, leaving no disk', async () => {
    // qemu-img cannot be uninstalled on this shared machine, and the remote session's
    // PATH is reset by root's shell start-up files; so (a stand-in for a host without
    // qemu-img) the URI's ?command= names an ssh wrapper that runs each remote command
    // with a PATH holding every tool the backend uses there but qemu-img.
    const bin = join(scratch, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const tool of ['sh', 'cat', 'nc', 'grep', 'flock', 'mkdir', 'ls', 'rm', 'ln', 'mv', 'chmod', 'stat', 'head', 'id']) {
      symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), join(bin, tool));
    }
    const wrapper = join(scratch, 'ssh-without-qemu-img');
    writeFileSync(wrapper, `#!/bin/bash\nn=$#\nexec ssh "\${@:1:$((n-1))}" "PATH=${bin}; export PATH; \${!n}"\n`, { mode: 0o755 });
    const cfg = writeConfig({ ...JSON.parse(readFileSync(config, 'utf8')), libvirt: { uri: sshUri(`&command=${encodeURIComponent(wrapper)}`) } });
    const r = await call('create_disk', [64, {}, null], cfg);
    expect(r.error).toMatchObject({
      type: 'Bosh::Clouds::CloudError',
      message: expect.stringMatching(new RegExp(`qemu-img is not installed on the VirtualBox host \\(ssh root@127\\.0\\.0\\.1:${sshd!.port}\\); install it there \\(Debian package qemu-utils\\)`)),
    });
    expect(filesUnder(join(STORE, 'disks'))).toEqual([]);
  }, 120_000);

  it('a CPI killed while it holds the host lock over ssh releases it (the remote flock ends with the ssh input)', async () => {
    // The CPI waits, holding the host lock, for a VM lock this test holds (a live holder:
    // this process), and is killed there.
    const vmName = `${PREFIX}vm-00000000-0000-4000-8000-00000000cafe`;
    mkdirSync(join(STORE, 'state', 'locks'), { recursive: true });
    const vmLock = join(STORE, 'state', 'locks', `${vmName}.lock`);
    writeFileSync(vmLock, JSON.stringify({ ...creatorMarker(), what: 'the test', token: 'test' }));
    const lockFile = hostLockPath(`vbox:///session?socket=${SOCKET}`);
    const held = () => spawnSync('flock', ['--nonblock', lockFile, 'true']).status === 1;
    const cpi = spawn(process.execPath, [CPI_BUNDLE, config], { stdio: ['pipe', 'ignore', 'ignore'] });
    cpi.stdin.end(JSON.stringify(request('attach_disk', [vmName, `${PREFIX}d-x`])));
    try {
      const until = Date.now() + 60_000;
      while (!held() && Date.now() < until && cpi.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      expect(held()).toBe(true);
    } finally {
      cpi.kill('SIGKILL');
    }
    // Free again once ssh has passed on the end of its input (bounded wait, not a timing assert).
    expect(spawnSync('flock', ['--wait', '30', lockFile, 'true']).status).toBe(0);
    rmSync(vmLock);
  }, 120_000);

  it('a host lock whose ssh connection dies mid-call: the remote flock is free and every later file command refuses, retryably', async () => {
    const fh = new SshFileHost({
      libvirt: { uri: sshUri(), call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
    } as unknown as Config);
    const log = { info: () => undefined, warn: () => undefined } as unknown as Logger;
    const lockFile = hostLockPath(`vbox:///session?socket=${SOCKET}`);
    const held = () => spawnSync('flock', ['--nonblock', lockFile, 'true']).status === 1;
    const release = await fh.hostLock(30, log);
    try {
      expect(held()).toBe(true);
      expect(await fh.exists(DIR)).toBe(true);
      // The lock's ssh (the ControlMaster) is a child of this process: found by its parent
      // and its options, ended as a dead connection would end it.
      const master = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('ControlMaster=yes') && l.includes('flock'))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
      expect(master).toHaveLength(1);
      process.kill(master[0]!, 'SIGKILL');
      // Bounded waits: for the remote flock to end, and for the child's end to be seen here.
      expect(spawnSync('flock', ['--wait', '30', lockFile, 'true']).status).toBe(0);
      let err: unknown;
      for (let i = 0; i < 200 && !err; i++) {
        err = await fh.exists(DIR).then(() => undefined, (e: unknown) => e);
        if (!err) await new Promise((r) => setTimeout(r, 50));
      }
      expect(err).toMatchObject({ okToRetry: true, message: expect.stringMatching(/Lost the VirtualBox host lock on ssh root@127\.0\.0\.1:\d+: .*SIGKILL/) });
    } finally {
      await release();
    }
    expect(await fh.exists(DIR)).toBe(true);
  }, 120_000);

  it('vbox+tcp is refused before connecting: it reaches libvirt but not the host\'s files', async () => {
    const cfg = writeConfig({ ...JSON.parse(readFileSync(config, 'utf8')), libvirt: { uri: 'vbox+tcp://127.0.0.1/session' } });
    const r = await call('create_disk', [64, {}, null], cfg);
    expect(r.error).toMatchObject({ type: 'Bosh::Clouds::NotSupported', message: expect.stringContaining('is not local and not ssh') });
  }, 120_000);
});
