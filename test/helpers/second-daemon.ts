// The second, independent libvirtd that multi-host tests run against
// (scripts/second-libvirtd.sh; scripts/test starts it). Tests that need it fail loudly
// with the reason when it is missing rather than skipping.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const SECOND_DIR = process.env.SECOND_LIBVIRTD_DIR ?? '/var/lib/bosh-cpi-second-libvirtd';
export const SECOND_SOCKET = join(SECOND_DIR, 'run', 'libvirt-sock');
export const SECOND_URI = `qemu:///system?socket=${SECOND_SOCKET}`;
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'second-libvirtd.sh');

export function requireSecondDaemon(): void {
  if (!existsSync(SECOND_SOCKET)) {
    throw new Error(`the second libvirtd is not running (no socket at ${SECOND_SOCKET}): multi-host tests need two independent daemons — start it with scripts/second-libvirtd.sh start (scripts/test does)`);
  }
}

/** Stops or starts the second daemon (only that one: the script signals it by its own pid file). */
export function secondDaemon(action: 'start' | 'stop'): void {
  execFileSync(SCRIPT, [action], { stdio: ['ignore', 'ignore', 'pipe'] });
}
