// `doctor`: does something reap the QEMU processes libvirtd leaves behind? Read-only.
//
// libvirt runs QEMU daemonized — its capability probes as well as every guest — so each
// QEMU process is orphaned at once and adopted by the nearest child subreaper among its
// ancestors, or else by PID 1. When it exits, only its adopter can reap it. An init
// reaps at once; the PID 1 of many containers and sandboxes does not (or only now and
// then), and the exited QEMU stays a zombie. libvirtd waits for each exited QEMU to
// disappear, so every capability probe and every guest stop stalls meanwhile: a define
// after QEMU's capability cache is invalidated (a new QEMU or libvirt package) took
// minutes on such a host. The symptom is visible in the process table: QEMU zombies whose
// parent is PID 1. The cure: libvirtd under a subreaper that reaps them, e.g. `tini -s`
// (scripts/setup-host.sh starts it so wherever PID 1 does not reap promptly).
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessEntry {
  pid: number;
  ppid: number;
  /** R, S, D, Z, … (the third field of /proc/<pid>/stat) */
  state: string;
  /** the executable's name, cut to 15 characters by the kernel */
  comm: string;
}

export interface ReaperProbe {
  /** PID 1's name, or null when unreadable */
  pid1: string | null;
  processes: ProcessEntry[];
}

/** One /proc/<pid>/stat line: "pid (comm) state ppid …"; comm may hold spaces and parentheses. */
export function parseStat(text: string): ProcessEntry | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const [state, ppid] = text.slice(close + 2).split(' ');
  const pid = Number(text.slice(0, open).trim());
  if (!Number.isInteger(pid) || !state || ppid === undefined || !/^\d+$/.test(ppid)) return null;
  return { pid, ppid: Number(ppid), state, comm: text.slice(open + 1, close) };
}

/** This host's processes as of now (those that exit while being read are left out). */
export function readProcessTable(): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const e = parseStat(readFileSync(`/proc/${d}/stat`, 'utf8'));
      if (e) out.push(e);
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export function probeReaper(): ReaperProbe {
  let pid1: string | null = null;
  try {
    pid1 = readFileSync('/proc/1/comm', 'utf8').trim();
  } catch {
    /* hidden: reported as unknown */
  }
  return { pid1, processes: readProcessTable() };
}

/** QEMU's binaries: qemu-system-<arch> (cut to "qemu-system-x86"), qemu-kvm. */
const isQemu = (comm: string): boolean => comm.startsWith('qemu');

export function reaperChecks(p: ReaperProbe, add: (name: string, status: 'OK' | 'WARN' | 'FAIL', message: string) => void): void {
  const pid1 = p.pid1 ?? 'unknown';
  const zombies = p.processes.filter((e) => e.state === 'Z' && e.ppid === 1 && isQemu(e.comm));
  const byPid = new Map(p.processes.map((e) => [e.pid, e]));
  const daemons = p.processes.filter((e) => e.comm === 'libvirtd' || e.comm === 'virtqemud');
  const parents = daemons.map((d) => `${d.comm} ${d.pid} runs under ${d.ppid === 1 ? `PID 1 (${pid1})` : `${byPid.get(d.ppid)?.comm ?? '?'} ${d.ppid}`}`);
  const where = parents.length ? ` (${parents.join('; ')})` : '';
  if (zombies.length === 0) {
    add('reaper', 'OK', `no exited QEMU process is left unreaped by PID 1 (${pid1})${where}`);
    return;
  }
  const pids = zombies.map((z) => z.pid).join(', ');
  add(
    'reaper',
    'WARN',
    `${zombies.length} exited QEMU process(es) (pid ${pids}) are zombies of PID 1 (${pid1}), which does not reap them${where}: ` +
      'libvirtd runs QEMU daemonized and waits for each exited QEMU to disappear, so capability probes and guest stops stall, ' +
      "for minutes once QEMU's capability cache is invalid (after a QEMU or libvirt upgrade). " +
      'Start libvirtd in the foreground under a child subreaper that reaps them: setsid tini -s -- libvirtd (Debian package tini; ' +
      'scripts/setup-host.sh starts it so where PID 1 does not reap); an init as PID 1 (docker run --init) does as well',
  );
}
