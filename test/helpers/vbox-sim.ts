// What the SIMULATED VirtualBox (fixtures/vbox-sim, loaded by the libvirtd of
// scripts/vbox-host.sh) holds, read from its state file, and the files a test's storage
// directory holds: the vbox e2e files compare both with what each bin/cpi call did.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const VBOX_DAEMON_DIR = '/var/lib/bosh-cpi-vbox-libvirtd';
export const VBOX_SIM_STATE = join(VBOX_DAEMON_DIR, 'vbox-sim', 'state.json');
export const VBOX_DAEMON_SOCKET = join(VBOX_DAEMON_DIR, 'run', 'libvirt-sock');

export interface SimAttachment { port: number; device: number; type: string; medium: string | null; mediumUuid?: string }
export interface SimMachine {
  name: string; uuid: string; state: string; memoryMB: number; cpus: number; firmware: string; frontend: string | null;
  storageControllers: Array<{ name: string; bus: string; attachments: SimAttachment[] }>;
  networkAdapters: Array<{ slot: number; attachment: string; hostOnlyInterface: string | null; bridgedInterface: string | null; mac: string }>;
}
export interface SimMedium { location: string; uuid: string; deviceType: string; machines: string[] }
export interface SimState { simulation: boolean; machines: SimMachine[]; media: SimMedium[] }

export const sim = (): SimState => JSON.parse(readFileSync(VBOX_SIM_STATE, 'utf8')) as SimState;
export const machine = (name: string): SimMachine | undefined => sim().machines.find((m) => m.name === name);
/** A machine's storage attachments, each with its controller's bus. */
export const attachments = (m: SimMachine) => m.storageControllers.flatMap((c) => c.attachments.map((a) => ({ ...a, bus: c.bus })));
/** The machines named with `prefix` and the hard disks under `store`: what a test made. */
export const ours = (s: SimState, prefix: string, store: string) => ({
  machines: s.machines.filter((m) => m.name.startsWith(prefix)).map((m) => m.name),
  hardDisks: s.media.filter((m) => m.location.startsWith(store) && m.deviceType === 'HardDisk').map((m) => m.location),
});
/** Regular files below `dir`, relative to it, sorted ([] when it does not exist). */
export const filesUnder = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort() : [];

/** Destroys and undefines every domain named with `prefix` on the vbox daemon at `uri`, then removes `store`. */
export function removeOurs(uri: string, prefix: string, store: string): void {
  for (const name of execFileSync('virsh', ['-q', '-c', uri, 'list', '--all', '--name'], { encoding: 'utf8' }).split('\n').map((l) => l.trim())) {
    if (!name.startsWith(prefix)) continue;
    try { execFileSync('virsh', ['-c', uri, 'destroy', name], { stdio: 'ignore' }); } catch { /* not running */ }
    try { execFileSync('virsh', ['-c', uri, 'undefine', name], { stdio: 'ignore' }); } catch { /* gone */ }
  }
  rmSync(store, { recursive: true, force: true });
}
