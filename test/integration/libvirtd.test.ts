// The test command starts a real libvirtd; every integration tier relies on it.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

describe('the libvirtd the test command started', () => {
  it('listens on the system socket', () => {
    expect(existsSync('/var/run/libvirt/libvirt-sock'), 'libvirtd is not running: run scripts/test (it starts it)').toBe(true);
  });

  it('answers on qemu:///system and test+unix:///default', () => {
    expect(execFileSync('virsh', ['-c', 'qemu:///system', 'version'], { encoding: 'utf8' })).toMatch(/Running hypervisor: QEMU/);
    expect(execFileSync('virsh', ['-c', 'test+unix:///default', 'list', '--all', '--name'], { encoding: 'utf8' })).toMatch(/^test$/m);
  });

  it('never runs libvirt\'s NAT default network', () => {
    const active = execFileSync('virsh', ['-c', 'qemu:///system', 'net-list', '--name'], { encoding: 'utf8' });
    expect(active.split('\n')).not.toContain('default');
  });
});
