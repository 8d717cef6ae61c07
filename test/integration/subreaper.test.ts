// libvirtd under a subreaper where PID 1 does not reap orphans (scripts/reaper.sh,
// docs/multi-host.md "Hosts whose PID 1 does not reap"). libvirt probes an emulator's
// capabilities by running it daemonized; the daemonized QEMU is adopted by the nearest
// subreaper above libvirtd, or else by PID 1, which on such a host leaves it a zombie
// when it exits while libvirtd waits for it to go.
//
// For each daemon the scripts start (the system one, scripts/setup-host.sh; the second
// one, scripts/second-libvirtd.sh) this defines a domain whose emulator is this test's
// own (a script that runs QEMU, so only its capability cache entry is touched),
// invalidates that entry by changing the script's ctime as a QEMU upgrade would, and
// defines again. While libvirtd probes, the process table is sampled: every QEMU it runs
// for the test (named t-reap-qemu) must have been adopted by the daemon's subreaper,
// never by PID 1, and none may be left a zombie once the define has answered.
//
// Runs in the alone phase of scripts/test: it may restart the second daemon (start does
// when that one runs without the subreaper).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readProcessTable, type ProcessEntry } from '../../src/cli/doctor-reaper.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { SECOND_DIR, SECOND_URI, secondDaemon } from '../helpers/second-daemon.js';

const PREFIX = 't-reap-';
/** The copy's name, so its processes are told from every other QEMU (comm is cut to 15 characters). */
const EMULATOR = 't-reap-qemu';
const FIRST = 'qemu:///system';
const run = promisify(execFile);
const virsh = (uri: string, ...args: string[]) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

/** Whether PID 1 reaps an orphan before half a second is up (the scripts' own test, scripts/reaper.sh). */
async function pid1Reaps(): Promise<boolean> {
  const { stdout } = await run('sh', ['-c', 'sleep 0.1 </dev/null >/dev/null 2>&1 & echo $!']);
  const pid = Number(stdout.trim());
  let zombie = 0;
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const e = readProcessTable().find((p) => p.pid === pid);
    if (!e) return true;
    if (e.ppid !== 1) return false;
    if (e.state === 'Z' && ++zombie >= 10) return false;
  }
  return false;
}

function daemonPid(uri: string): number {
  const file = uri === FIRST ? '/run/libvirtd.pid' : join(SECOND_DIR, 'libvirtd.pid');
  return Number(readFileSync(file, 'utf8').trim());
}

function cleanup(uri: string): void {
  for (const d of virsh(uri, 'list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX))) virsh(uri, 'undefine', d);
}

let reaps: boolean;
const dirs: string[] = [];

beforeAll(async () => {
  requireDaemon();
  secondDaemon('start');
  reaps = await pid1Reaps();
  cleanup(FIRST);
  cleanup(SECOND_URI);
});

afterAll(() => {
  cleanup(FIRST);
  cleanup(SECOND_URI);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.each([
  ['the system daemon (scripts/setup-host.sh)', FIRST],
  ['the second daemon (scripts/second-libvirtd.sh)', SECOND_URI],
])('%s', (_what, uri) => {
  it('probes a QEMU whose capability cache entry is invalid without leaving it to PID 1, and the define answers', async () => {
    // A fixed place: libvirt keeps a cache file per emulator path, which a new path per
    // run would pile up; this one's is rewritten each time.
    const dir = `/var/tmp/${PREFIX}emulator-${uri === FIRST ? 'a' : 'b'}`;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o755 }); // the probe runs as libvirt's QEMU user
    dirs.push(dir);
    // The emulator: a script of this test's own (its ctime is the cache entry's) that
    // runs QEMU through a link named t-reap-qemu, the name its processes then carry. (A
    // copy of the binary would not do: QEMU finds its modules relative to its own path.)
    const emulator = join(dir, 'emulator');
    symlinkSync('/usr/bin/qemu-system-x86_64', join(dir, EMULATOR));
    writeFileSync(emulator, `#!/bin/sh\nexec ${join(dir, EMULATOR)} "$@"\n`, { mode: 0o755 });
    const name = `${PREFIX}${uri === FIRST ? 'a' : 'b'}`;
    const xml = join(dir, 'domain.xml');
    writeFileSync(xml, `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>${emulator}</emulator></devices></domain>`);

    // Every t-reap-qemu process seen while libvirtd works, as (pid, parent, state).
    const seen = new Map<string, ProcessEntry>();
    const sample = () => {
      for (const p of readProcessTable()) if (p.comm === EMULATOR) seen.set(`${p.pid}/${p.ppid}/${p.state}`, p);
    };
    const timer = setInterval(sample, 10);
    const define = async () => {
      await run('virsh', ['-q', '-c', uri, 'define', xml]);
      await run('virsh', ['-q', '-c', uri, 'undefine', name]);
    };
    const took: number[] = [];
    try {
      let t = Date.now();
      await define(); // the first probe: no cache entry yet
      took.push(Date.now() - t);
      const later = new Date(Date.now() + 5000);
      utimesSync(emulator, later, later); // a new ctime: the entry is invalid
      t = Date.now();
      await define(); // probed again
      took.push(Date.now() - t);
    } finally {
      clearInterval(timer);
    }
    sample();
    const all = [...seen.values()];
    const daemon = daemonPid(uri);
    const subreaper = readProcessTable().find((p) => p.pid === daemon)?.ppid;
    console.log(`${uri}: PID 1 ${reaps ? 'reaps' : 'does not reap'} promptly; libvirtd ${daemon} runs under ${subreaper}; the defines took ${took.join(' and ')} ms; its QEMU processes: ${all.map((p) => `${p.pid}<${p.ppid} ${p.state}`).join(', ')}`);

    expect(all.length, 'no t-reap-qemu process was seen: did libvirt probe it?').toBeGreaterThan(0);
    // QEMU daemonizes by forking twice: the first process is libvirtd's child, the
    // second that one's, the last ends up with an adopter once its parent has exited.
    if (!reaps) {
      expect(all.filter((p) => p.ppid === 1), 'QEMU processes adopted by PID 1, which does not reap').toEqual([]);
      expect(subreaper, 'libvirtd runs directly under PID 1, which does not reap').not.toBe(1);
      expect(all.filter((p) => p.ppid === subreaper).length, 'no QEMU seen adopted by the subreaper').toBeGreaterThan(0);
    }
    // No t-reap-qemu is left a zombie once the defines have answered.
    expect(readProcessTable().filter((p) => p.comm === EMULATOR && p.state === 'Z')).toEqual([]);
  }, 300_000);
});
