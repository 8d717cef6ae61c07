// doctor on lxc:///: recognises a host where containers cannot start, and says why.
// The failing layouts cannot be made for real here (that would mean restarting the
// shared libvirtd with the cgroup2 mount, or unloading overlayfs), so these cases feed
// lxcChecks recorded /proc texts; the passing case runs on this host's real daemon.
import { describe, expect, it } from 'vitest';
import { lxcChecks, probeLxcHost, type LxcProbe } from '../../src/cli/doctor-lxc.js';

const V1 = ['50 46 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755', '51 50 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu'];
const UNIFIED = '60 50 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw';
const hybrid = [...V1, UNIFIED].join('\n');
const privateV1 = V1.join('\n');

function run(p: Partial<LxcProbe>) {
  const out: Array<{ name: string; status: string; message: string }> = [];
  lxcChecks({ filesystems: 'nodev\tproc\nnodev\toverlay\n', overlayModule: false, hostMountinfo: hybrid, daemonMountinfo: privateV1, hookExecutable: true, ...p }, (name, status, message) => out.push({ name, status, message }));
  return Object.fromEntries(out.map((c) => [c.name, c]));
}

describe('doctor: can containers start?', () => {
  it('a daemon that sees the hybrid cgroup layout: FAIL, naming libvirt\'s error and the fix', () => {
    const c = run({ daemonMountinfo: hybrid }).lxc_cgroups!;
    expect(c.status).toBe('FAIL');
    expect(c.message).toContain('containers cannot start');
    expect(c.message).toContain('virCgroupV2BindMount');
    expect(c.message).toContain("umount /sys/fs/cgroup/unified && exec libvirtd -d");
  });

  it('a daemon in a private namespace without the cgroup2 mount, on a hybrid host: OK', () => {
    expect(run({}).lxc_cgroups).toMatchObject({ status: 'OK', message: expect.stringContaining('pure cgroup v1 view') });
  });

  it('no overlayfs, no hook: FAIL with the reason each is needed', () => {
    const c = run({ filesystems: 'nodev\tproc\n', hookExecutable: false });
    expect(c.lxc_overlay).toMatchObject({ status: 'FAIL', message: expect.stringContaining('no overlayfs') });
    expect(c.lxc_hook).toMatchObject({ status: 'FAIL', message: expect.stringContaining('mounts each container\'s root filesystem') });
  });

  it('this host as it runs the tests: every check OK', () => {
    const out: string[] = [];
    lxcChecks(probeLxcHost(), (name, status, message) => out.push(`${status} ${name}: ${message}`));
    expect(out.filter((l) => !l.startsWith('OK'))).toEqual([]);
  });
});
