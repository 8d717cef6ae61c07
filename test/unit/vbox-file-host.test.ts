// The vbox backend's ssh file host (src/driver/vbox/file-host.ts) with hostile paths:
// every operation's remote script is run by a real shell, through an "ssh" that is a
// stand-in (the URI's ?command=, as libvirt's) which runs the remote command line with
// `sh -c` on this host, exactly as sshd hands it to the user's shell. So the quoting is
// what is tested: names with spaces, quotes, `$(…)`, backquotes, globs, a leading "-"
// and a newline must reach each command as one word, and nothing else may run.
// (test/e2e/vbox-ssh.test.ts runs the same class through a real sshd.)
import { existsSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalFileHost, SshFileHost, shellWords } from '../../src/driver/vbox/file-host.js';
import { hostLockPath } from '../../src/driver/vbox/profile.js';
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/log/logger.js';
import { scratchDir } from '../helpers/scratch.js';

const dir = scratchDir('t-vbfh-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The stand-in ssh: drops the options and the host, runs the last argument as sshd would.
const fakeSsh = join(dir, 'fake-ssh');
writeFileSync(fakeSsh, '#!/bin/bash\nn=$#\nexec sh -c "${!n}"\n', { mode: 0o755 });
// Would be made in $HOME if any name were run as a command (names hold no '/').
const canary = join(homedir(), 't-vbfh-pwned');

function host(): SshFileHost {
  const uri = `vbox+ssh://user@vbox.invalid:2222/session?command=${encodeURIComponent(fakeSsh)}&socket=/x`;
  const config = {
    libvirt: { uri, call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
    storage: { path: dir },
  } as unknown as Config;
  return new SshFileHost(config);
}

// A stand-in for a dropped connection: this "ssh" passes only the first 1000 bytes of
// its input to the remote command, which then sees end of input as after a cut.
function cutHost(): SshFileHost {
  const cutSsh = join(dir, 'cut-ssh');
  writeFileSync(cutSsh, '#!/bin/bash\nn=$#\nhead -c 1000 | sh -c "${!n}"\n', { mode: 0o755 });
  return new SshFileHost({
    libvirt: { uri: `vbox+ssh://user@vbox.invalid/session?command=${encodeURIComponent(cutSsh)}`, call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
  } as unknown as Config);
}

describe('vbox ssh file host: ssh options', () => {
  it('every ssh has keepalives and a connect timeout, and the user\'s extra_args still win (ssh -G shows what ssh would use)', async () => {
    const { execFileSync } = await import('node:child_process');
    const mk = (extra: string[]) =>
      new SshFileHost({
        libvirt: { uri: 'vbox+ssh://user@vbox.invalid/session', call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: extra }, tls: { verify: true } },
      } as unknown as Config);
    const effective = (fh: SshFileHost) => {
      const argv = fh.argv('true');
      // ssh -G prints the configuration it would use, without connecting.
      const out = execFileSync('ssh', ['-G', '-F', '/dev/null', ...argv.slice(0, argv.indexOf('--')), 'vbox.invalid'], { encoding: 'utf8' });
      return Object.fromEntries(out.split('\n').filter((l) => /^(serveraliveinterval|serveralivecountmax|connecttimeout) /.test(l)).map((l) => l.split(' ')));
    };
    expect(effective(mk([]))).toEqual({ serveraliveinterval: '15', serveralivecountmax: '3', connecttimeout: '30' });
    expect(effective(mk(['-o', 'ServerAliveInterval=5', '-o', 'ConnectTimeout=7']))).toEqual({ serveraliveinterval: '5', serveralivecountmax: '3', connecttimeout: '7' });
  });
});

describe('vbox ssh file host: a login shell that is not sh', () => {
  it('every remote script reaches sh as one word, so a csh or fish login shell only starts sh', async () => {
    // A stand-in for a non-POSIX login shell (csh, fish are not installed here): it knows
    // quoting and nothing else of sh's syntax (no `;`, `if`, `$(…)`, redirections), splits
    // the command line into words as they do and runs them as one program.
    const py = join(dir, 'nosh.py');
    writeFileSync(py, 'import os, shlex, sys\nw = shlex.split(sys.argv[1])\nos.execvp(w[0], w)\n');
    const nosh = join(dir, 'nosh-ssh');
    writeFileSync(nosh, `#!/bin/bash\nn=$#\nexec python3 '${py}' "\${!n}"\n`, { mode: 0o755 });
    const fh = new SshFileHost({
      libvirt: { uri: `vbox+ssh://user@vbox.invalid/session?command=${encodeURIComponent(nosh)}&socket=/nosh`, call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
    } as unknown as Config);
    const p = join(dir, "nosh it's $(x).json");
    await fh.writeAtomic(p, '{"a":1}');
    expect((await fh.read(p))!.toString()).toBe('{"a":1}');
    expect(await fh.createExclusive(`${p}.lock`, 'x')).toBe(true);
    expect(await fh.createExclusive(`${p}.lock`, 'x')).toBe(false);
    expect(await fh.remove(p)).toBe(true);
    expect(await fh.exists(p)).toBe(false);
    const log = { info: () => undefined } as unknown as Logger;
    await (await fh.hostLock(5, log))();
  });
});

const HOSTILE = [
  "a b",
  "it's",
  'double"quote',
  '$(cd; touch t-vbfh-pwned)',
  '`cd; touch t-vbfh-pwned`',
  '*',
  '-rf',
  'semi;colon && echo x',
  'back\\slash',
  "tab\there",
  '$HOME ${PATH}',
];

describe('vbox ssh file host: every path crosses the remote shell as one word', () => {
  const fh = host();
  const root = join(dir, "store it's $(x)");

  it('shellWords quotes each word so sh -c sees them unchanged', async () => {
    const { execFileSync } = await import('node:child_process');
    const words = [...HOSTILE, 'new\nline', ''];
    const out = execFileSync('sh', ['-c', `for w in ${shellWords(words)}; do printf '%s\\0' "$w"; done`], { encoding: 'utf8' });
    expect(out.split('\0').slice(0, -1)).toEqual(words);
    expect(existsSync(canary)).toBe(false);
  });

  it('mkdirs, writeAtomic, read, stat, readHead, list, exists, remove with hostile names', async () => {
    const sub = join(root, 'sub dir');
    await fh.mkdirs([root, sub]);
    for (const name of HOSTILE) {
      const p = join(sub, name);
      await fh.writeAtomic(p, `data of ${name}\n`);
      expect(readFileSync(p, 'utf8')).toBe(`data of ${name}\n`);
      expect((await fh.read(p))!.toString()).toBe(`data of ${name}\n`);
      expect(await fh.stat(p)).toMatchObject({ size: Buffer.byteLength(`data of ${name}\n`) });
      expect((await fh.readHead(p, 4)).toString()).toBe('data');
      expect(await fh.exists(p)).toBe(true);
    }
    expect((await fh.list(sub)).sort()).toEqual([...HOSTILE].sort());
    // A newline in a name: written and read back as one name (list splits lines, so it is not listed here).
    const nl = join(root, 'new\nline');
    await fh.writeAtomic(nl, 'x');
    expect((await fh.read(nl))!.toString()).toBe('x');
    expect(await fh.remove(nl)).toBe(true);
    for (const name of HOSTILE) expect(await fh.remove(join(sub, name))).toBe(true);
    expect(await fh.remove(join(sub, 'a b'))).toBe(false);
    expect(await fh.read(join(sub, 'a b'))).toBeNull();
    expect(await fh.stat(join(sub, 'a b'))).toBeNull();
    expect(await fh.exists(join(sub, 'a b'))).toBe(false);
    expect(await fh.list(join(root, 'no such dir'))).toEqual([]);
    expect(readdirSync(sub)).toEqual([]);
    expect(existsSync(canary)).toBe(false);
  });

  it('createExclusive and linkNew never replace a file', async () => {
    const lock = join(root, "lock '$(x)'.lock");
    expect(await fh.createExclusive(lock, 'one')).toBe(true);
    expect(await fh.createExclusive(lock, 'two')).toBe(false);
    expect(readFileSync(lock, 'utf8')).toBe('one');
    const target = join(root, 'linked `x`');
    await fh.linkNew(lock, target);
    await expect(fh.linkNew(lock, target)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(target, 'utf8')).toBe('one');
    expect(existsSync(canary)).toBe(false);
  });

  it('run passes hostile arguments as they are, and names a missing program with its package', async () => {
    expect(await fh.run('printf', ['%s|', ...HOSTILE], 'test')).toBe(`${HOSTILE.join('|')}|`);
    await expect(fh.run('qemu-img-not-here', ['x'], 'create_disk of d')).rejects.toThrow(/create_disk of d failed: qemu-img-not-here is not installed on the VirtualBox host \(ssh user@vbox\.invalid:2222\)/);
    expect(existsSync(canary)).toBe(false);
  });

  it('putNew copies a file to a hostile name, refuses an existing one, and leaves no temporary file', async () => {
    const local = join(dir, 'local.vdi');
    writeFileSync(local, Buffer.alloc(300_000, 7));
    const dest = join(root, "sc $(x) 'q'.vdi");
    await fh.putNew(local, dest);
    expect(readFileSync(dest).equals(readFileSync(local))).toBe(true);
    await expect(fh.putNew(local, dest)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readdirSync(root).filter((n) => n.includes('partial'))).toEqual([]);
    // A copy that cannot be placed (its directory is missing) leaves nothing.
    await expect(fh.putNew(local, join(root, 'missing dir', 'x.vdi'))).rejects.toThrow(/copying .* failed/);
    expect(readdirSync(root).filter((n) => n.includes('partial'))).toEqual([]);
  });

  it('putNew: a copy cut short (the connection lost mid-copy) is removed on the host and not linked', async () => {
    const cut = cutHost();
    const local = join(dir, 'big.vdi');
    writeFileSync(local, Buffer.alloc(300_000, 9));
    const dest = join(root, 'cut copy.vdi');
    await expect(cut.putNew(local, dest)).rejects.toThrow(/copy is short: 1000 of 300000 bytes/);
    expect(existsSync(dest)).toBe(false);
    expect(readdirSync(root).filter((n) => n.includes('cut copy'))).toEqual([]);
  });

  it('putNew: a link that fails says why (ln\'s message), and a lock child ended by a signal is not called a timeout', async () => {
    const local = join(dir, 'small.vdi');
    writeFileSync(local, Buffer.alloc(2000, 3));
    // A dangling symlink: not "existing" to [ -e ], but ln cannot make that name.
    const dest = join(dir, 'dangling.vdi');
    symlinkSync(join(dir, 'nowhere'), dest);
    await expect(fh.putNew(local, dest)).rejects.toThrow(/copying .* failed \(status 1\): ln: .*dangling\.vdi.*File exists/);
    rmSync(dest);
    expect(readdirSync(dir).filter((n) => n.includes('partial'))).toEqual([]);
    const killSsh = join(dir, 'kill-ssh');
    writeFileSync(killSsh, '#!/bin/bash\nkill -TERM $$\n', { mode: 0o755 });
    const killed = new SshFileHost({
      libvirt: { uri: `vbox+ssh://user@vbox.invalid/session?command=${encodeURIComponent(killSsh)}`, call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
    } as unknown as Config);
    await expect(killed.hostLock(5, { info: () => undefined } as unknown as Logger)).rejects.toThrow(/Cannot take the VirtualBox host lock .* on ssh user@vbox\.invalid: .*kill-ssh was ended by SIGTERM/);
  });

  it('writeAtomic: data cut short (the connection lost mid-write) leaves the old file in place and no temporary file', async () => {
    const cut = cutHost();
    const dest = join(root, "record 'cut'.json");
    await fh.writeAtomic(dest, '{"old":true}');
    await expect(cut.writeAtomic(dest, `{"x":"${'y'.repeat(5000)}"}`)).rejects.toThrow(/record 'cut'\.json: the data was cut short: received 1000 of 5008 bytes/);
    expect(readFileSync(dest, 'utf8')).toBe('{"old":true}');
    expect(readdirSync(root).filter((n) => n.includes("record 'cut'") && n.endsWith('.tmp'))).toEqual([]);
  });

  it('createExclusive: data cut short is an error (not "existed") and leaves no partial file', async () => {
    const marker = join(root, 'cut marker.lock');
    await expect(cutHost().createExclusive(marker, 'z'.repeat(3000))).rejects.toThrow(/creating .*cut marker\.lock .*failed \(status 5\): .*the data was cut short: received 1000 of 3000 bytes/);
    expect(existsSync(marker)).toBe(false);
    // A file that cannot be made for another reason (no such directory) is an error too, with the shell's message.
    await expect(fh.createExclusive(join(root, 'no dir', 'm.lock'), 'x')).rejects.toThrow(/creating .*m\.lock .*failed \(status 1\): .*(No such file|nonexistent|cannot create)/i);
    expect(await fh.createExclusive(marker, 'whole')).toBe(true);
    expect(readFileSync(marker, 'utf8')).toBe('whole');
  });

  it('over ssh the host lock is the same file a CPI on that host uses: the two take turns', async () => {
    const log = { info: () => undefined } as unknown as Logger;
    // The ssh URI names socket /x: a CPI on the host would say vbox:///session?socket=/x.
    const local = new LocalFileHost('vbox:///session?socket=/x');
    const release = await fh.hostLock(5, log);
    expect(existsSync(hostLockPath('vbox:///session?socket=/x'))).toBe(true);
    await expect(local.hostLock(1, log)).rejects.toThrow(/Timed out after 1 s waiting for the VirtualBox host lock/);
    await release();
    await (await local.hostLock(1, log))();
  });

  it('a lock whose connection ends mid-call makes every later command refuse, retryably, until it is released', async () => {
    const log = { info: () => undefined } as unknown as Logger;
    // A stand-in ssh that records the lock's pid (kept through the execs down to flock), so the
    // test can end the lock's "connection" as a dead ssh master would end.
    const pidFile = join(dir, 'lock-ssh.pid');
    const pidSsh = join(dir, 'pid-ssh');
    writeFileSync(pidSsh, `#!/bin/bash\nn=$#\ncase "\${!n}" in *flock*) echo $$ > '${pidFile}';; esac\nexec sh -c "\${!n}"\n`, { mode: 0o755 });
    const fh2 = new SshFileHost({
      libvirt: { uri: `vbox+ssh://user@vbox.invalid/session?command=${encodeURIComponent(pidSsh)}&socket=/lost`, call_timeout_seconds: 30, ssh: { strict_host_key_checking: true, extra_args: [] }, tls: { verify: true } },
    } as unknown as Config);
    const release = await fh2.hostLock(5, log);
    expect(await fh2.exists(dir)).toBe(true);
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    // Bounded wait for the child's end to be seen (a signal is not delivered synchronously).
    let err: unknown;
    for (let i = 0; i < 100 && !err; i++) {
      err = await fh2.exists(dir).then(() => undefined, (e: unknown) => e);
      if (!err) await new Promise((r) => setTimeout(r, 50));
    }
    expect(err).toMatchObject({ okToRetry: true, message: expect.stringMatching(/Lost the VirtualBox host lock on ssh user@vbox\.invalid: .*SIGKILL/) });
    await expect(fh2.writeAtomic(join(dir, 'after-lost'), 'x')).rejects.toThrow(/Lost the VirtualBox host lock/);
    expect(existsSync(join(dir, 'after-lost'))).toBe(false);
    await release();
    // Released: commands run again (on their own connections), and the lock can be taken anew.
    expect(await fh2.exists(dir)).toBe(true);
    await (await fh2.hostLock(5, log))();
  });

  it('the host lock is one holder at a time and free after release', async () => {
    const log = { info: () => undefined } as unknown as Logger;
    const release = await fh.hostLock(5, log);
    await expect(host().hostLock(1, log)).rejects.toThrow(/Timed out after 1 s waiting for the VirtualBox host lock .* on ssh user@vbox\.invalid:2222/);
    await release();
    await (await host().hostLock(1, log))();
  });
});
