// Who is creating something, recorded where libvirt keeps it, so that a creation a kill
// interrupted can be told apart from one still running. A marker names the host, the
// pid and that process's start (boot id + start time in clock ticks, so a pid the
// kernel hands out again later is not mistaken for the creator) and when it began.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface CreatorMarker {
  host: string;
  pid: number;
  /** `<boot id>/<start ticks>` from /proc; empty where /proc cannot tell */
  start: string;
  /** ISO time the creation began */
  at: string;
}

export function creatorMarker(now = new Date()): CreatorMarker {
  return { host: hostname(), pid: process.pid, start: processStart(process.pid) ?? '', at: now.toISOString() };
}

/** Identity of a running process's start, or undefined when it does not run (or /proc cannot say). */
export function processStart(pid: number): string | undefined {
  try {
    const boot = bootId();
    if (boot === undefined) return undefined;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the command name, which may itself hold spaces and ')'.
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return ticks ? `${boot}/${ticks}` : undefined;
  } catch {
    return undefined;
  }
}

export type CreatorState = 'running' | 'gone' | 'unknown';

/**
 * Whether the creator still runs. On the creator's own host /proc answers for certain
 * (the pid with the same start, or not). From another host (the CPI may run on the
 * director while orphans runs on the libvirt host) nothing can be seen: 'unknown', and
 * the caller falls back to the marker's age.
 */
export function creatorState(m: CreatorMarker, here = hostname()): CreatorState {
  if (m.host !== here || m.start === '') return 'unknown';
  // Host names repeat (localhost, containers, cloned VMs): only this machine's current
  // boot can answer for the pid, so a mark from another boot id is judged by age.
  if (m.start.split('/')[0] !== bootId()) return 'unknown';
  return processStart(m.pid) === m.start ? 'running' : 'gone';
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Seconds since the marker was written (0 when its time is unreadable: treated as young). */
export function markerAgeSeconds(m: CreatorMarker, nowMs = Date.now()): number {
  const t = Date.parse(m.at);
  return Number.isFinite(t) ? Math.max(0, Math.round((nowMs - t) / 1000)) : 0;
}
