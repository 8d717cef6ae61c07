// doctor: recognises a host whose PID 1 leaves exited QEMU processes unreaped (the
// stalls of docs/multi-host.md, "Hosts whose PID 1 does not reap"), and says what to do.
// Recorded process tables for each verdict, then a real one: a QEMU daemonized from
// here (adopted by PID 1, as libvirt's are when libvirtd has no subreaper) is killed,
// and a table that shows its zombie must draw the warning.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseStat, probeReaper, reaperChecks, type ProcessEntry, type ReaperProbe } from '../../src/cli/doctor-reaper.js';
import { scratchDir } from '../helpers/scratch.js';

const proc = (pid: number, ppid: number, state: string, comm: string): ProcessEntry => ({ pid, ppid, state, comm });

function check(p: ReaperProbe) {
  const out: Array<{ name: string; status: string; message: string }> = [];
  reaperChecks(p, (name, status, message) => out.push({ name, status, message }));
  expect(out.map((c) => c.name)).toEqual(['reaper']);
  return out[0]!;
}

describe('doctor: are exited QEMU processes reaped?', () => {
  it('parses /proc/<pid>/stat, also a name with spaces and parentheses', () => {
    expect(parseStat('4164 (libvirtd) S 4161 4161 4161 0 -1 4194560 …')).toEqual(proc(4164, 4161, 'S', 'libvirtd'));
    expect(parseStat('77 (a (b) c) Z 1 77 77 0')).toEqual(proc(77, 1, 'Z', 'a (b) c'));
    expect(parseStat('garbage')).toBeNull();
  });

  it('QEMU zombies whose parent is PID 1: WARN, naming them, PID 1, the stall and the subreaper to use', () => {
    const c = check({
      pid1: 'process_api',
      processes: [proc(1, 0, 'S', 'process_api'), proc(30410, 1, 'S', 'libvirtd'), proc(5001, 1, 'Z', 'qemu-system-x86'), proc(5003, 1, 'Z', 'qemu-system-x86'), proc(5004, 1, 'S', 'qemu-system-x86')],
    });
    expect(c.status).toBe('WARN');
    expect(c.message).toContain('2 exited QEMU process(es) (pid 5001, 5003) are zombies of PID 1 (process_api)');
    expect(c.message).toContain('libvirtd 30410 runs under PID 1 (process_api)');
    expect(c.message).toContain('stall');
    expect(c.message).toContain('tini -s -- libvirtd');
  });

  it('QEMU processes under a subreaper, a zombie of something else, a non-QEMU zombie of PID 1: OK', () => {
    const c = check({
      pid1: 'process_api',
      processes: [proc(1, 0, 'S', 'process_api'), proc(4161, 1, 'S', 'tini'), proc(4164, 4161, 'S', 'libvirtd'), proc(6000, 4161, 'Z', 'qemu-system-x86'), proc(6001, 4161, 'S', 'qemu-system-x86'), proc(6002, 1, 'Z', 'sleep')],
    });
    expect(c).toMatchObject({ status: 'OK', message: expect.stringContaining('libvirtd 4164 runs under tini 4161') });
  });

  it('a real QEMU adopted by PID 1 and killed: its zombie draws the warning while PID 1 leaves it', () => {
    const dir = scratchDir('t-reap-doctor-');
    const pidfile = join(dir, 'qemu.pid');
    const r = spawnSync('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-daemonize', '-pidfile', pidfile], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    const entry = (p: ReaperProbe) => p.processes.find((e) => e.pid === pid);
    const adopter = entry(probeReaper())?.ppid;
    expect(entry(probeReaper())).toMatchObject({ comm: 'qemu-system-x86' });
    process.kill(pid, 'SIGKILL');
    // Until it is reaped (at once by an init), each table shows it as a zombie of PID 1.
    let seen: ReaperProbe | null = null;
    for (let i = 0; i < 200 && !seen; i++) {
      const p = probeReaper();
      const e = entry(p);
      if (!e) break; // reaped
      if (e.state === 'Z') seen = p;
    }
    if (seen && adopter === 1) {
      const c = check(seen);
      expect(c.status).toBe('WARN');
      expect(c.message).toMatch(new RegExp(`\\(pid [0-9, ]*\\b${pid}\\b[0-9, ]*\\) are zombies of PID 1`));
    } else {
      // Reaped before a table showed the zombie (an init as PID 1), or adopted by a
      // subreaper above this test rather than by PID 1: nothing to warn about.
      expect(entry(probeReaper())).toBeUndefined();
      expect(seen ? check(seen).status : 'OK').toBe('OK');
    }
    console.log(`the QEMU was adopted by ${adopter === 1 ? `PID 1 (${probeReaper().pid1})` : `pid ${adopter}`}, which ${seen ? 'left it a zombie' : 'reaped it at once'}`);
  });
});
