// `doctor` for lxc:///: can containers start on this host? Read-only, like every check.
// - cgroups: libvirt 9.0's LXC driver cannot start a container when the daemon sees a
//   hybrid cgroup layout (v1 controllers plus cgroup2 at /sys/fs/cgroup/unified): every
//   start fails in virCgroupV2BindMount. A daemon in a private mount namespace without
//   that mount sees a pure v1 host and works (scripts/setup-host.sh starts it so).
// - overlayfs: each container's root filesystem is an overlay on the stemcell directory.
// - the lxc hook: it mounts that overlay when libvirt prepares the container; without it
//   the root is an empty directory and the start fails.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isExecutableFile } from './common.js';

export const LXC_HOOK_PATH = '/etc/libvirt/hooks/lxc';
const UNIFIED = '/sys/fs/cgroup/unified';

export interface LxcProbe {
  /** /proc/filesystems, or null when unreadable */
  filesystems: string | null;
  /** overlayfs not registered yet but loadable: its module is loaded or installed */
  overlayModule: boolean;
  /** this process's /proc/self/mountinfo */
  hostMountinfo: string | null;
  /** the running libvirtd's /proc/<pid>/mountinfo; null when no daemon was found */
  daemonMountinfo: string | null;
  hookExecutable: boolean;
}

export function probeLxcHost(): LxcProbe {
  const read = (p: string): string | null => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return null;
    }
  };
  const release = read('/proc/sys/kernel/osrelease')?.trim() ?? '';
  const overlayModule = existsSync('/sys/module/overlay') || existsSync(`/lib/modules/${release}/kernel/fs/overlayfs`);
  return { filesystems: read('/proc/filesystems'), overlayModule, hostMountinfo: read('/proc/self/mountinfo'), daemonMountinfo: daemonMountinfo(read), hookExecutable: isExecutableFile(LXC_HOOK_PATH) };
}

function daemonMountinfo(read: (p: string) => string | null): string | null {
  // The system daemon by its pid file first: other libvirtd processes may run beside it
  // (a second daemon for another host, one for a vbox host), each in its own namespace.
  for (const name of ['virtlxcd', 'libvirtd']) {
    const pid = read(`/run/${name}.pid`)?.trim();
    if (pid && /^\d+$/.test(pid) && read(`/proc/${pid}/comm`)?.trim() === name) return read(`/proc/${pid}/mountinfo`);
  }
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const comm = read(`/proc/${pid}/comm`)?.trim();
    if (comm === 'libvirtd' || comm === 'virtlxcd') return read(`/proc/${pid}/mountinfo`);
  }
  return null;
}

const mountTypeAt = (mountinfo: string, path: string): string | undefined => {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f[4] === path && sep > 0) return f[sep + 1];
  }
  return undefined;
};

export function lxcChecks(p: LxcProbe, add: (name: string, status: 'OK' | 'WARN' | 'FAIL', message: string) => void): void {
  const hybrid = p.hostMountinfo !== null && mountTypeAt(p.hostMountinfo, UNIFIED) === 'cgroup2' && mountTypeAt(p.hostMountinfo, '/sys/fs/cgroup') === 'tmpfs';
  if (p.daemonMountinfo === null) add('lxc_cgroups', 'WARN', 'no local libvirtd (or virtlxcd) process found: its cgroup view was not checked');
  else if (mountTypeAt(p.daemonMountinfo, UNIFIED) === 'cgroup2' && mountTypeAt(p.daemonMountinfo, '/sys/fs/cgroup') === 'tmpfs') {
    add(
      'lxc_cgroups',
      'FAIL',
      `containers cannot start: libvirtd sees a hybrid cgroup layout (cgroup v1 controllers and cgroup2 at ${UNIFIED}), on which libvirt's LXC driver fails every start ("virCgroupV2BindMount: Unable to create directory ${UNIFIED}"); start libvirtd in a private mount namespace without that mount: unshare -m --propagation private sh -c 'umount ${UNIFIED} && exec libvirtd -d' (scripts/setup-host.sh does)`,
    );
  } else add('lxc_cgroups', 'OK', hybrid ? `libvirtd runs without ${UNIFIED} in its mount namespace (a pure cgroup v1 view of this hybrid host)` : 'libvirtd sees one cgroup hierarchy kind (v1 or v2)');
  if (p.filesystems === null) add('lxc_overlay', 'WARN', '/proc/filesystems unreadable: overlayfs support not checked');
  else if (/\toverlay$/m.test(p.filesystems) || p.overlayModule) add('lxc_overlay', 'OK', 'the kernel has overlayfs (containers\' root filesystems)');
  else add('lxc_overlay', 'FAIL', 'the kernel has no overlayfs (modprobe overlay): each container\'s root filesystem is an overlay on its stemcell, so no container can start');
  if (p.hookExecutable) add('lxc_hook', 'OK', `${LXC_HOOK_PATH} is installed and executable`);
  else {
    add('lxc_hook', 'FAIL', `${LXC_HOOK_PATH} is missing or not executable: it mounts each container's root filesystem when libvirt prepares it, so every start fails; install scripts/libvirt-hook-lxc there (scripts/setup-host.sh does) and restart libvirtd once (it looks for hooks only when it starts)`);
  }
}
