import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/load.js';
import { isMultiHost, resolveHosts, SINGLE_HOST_NAME, type HostConfig } from '../../src/config/hosts.js';
import { writeConfig, ROOT } from '../helpers/cpi.js';

const agent = { mbus: 'nats://n:p@h:4222' };

function errorOf(input: unknown): string {
  try {
    loadConfig(writeConfig(input as Record<string, unknown>));
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('config: hosts', () => {
  it('a single-host config stays one host made of the top-level sections, named by no CID', () => {
    const c = ConfigSchema.parse({ agent, libvirt: { uri: 'qemu+ssh://u@h/system' }, storage: { pool: 'p' } });
    expect(isMultiHost(c)).toBe(false);
    const hosts = resolveHosts(c);
    expect(hosts).toHaveLength(1);
    expect(hosts[0]).toEqual({ name: SINGLE_HOST_NAME, libvirt: c.libvirt, storage: c.storage, network: c.network });
  });

  it('each host overrides the top-level sections key by key; the rest (and the defaults) come from the top level', () => {
    const c = ConfigSchema.parse({
      agent,
      libvirt: { uri: 'qemu:///system', ssh: { private_key: '/k' }, call_timeout_seconds: 30 },
      storage: { pool: 'bosh-cpi', path: '/var/lib/libvirt/bosh-cpi' },
      network: { name: 'net' },
      hosts: [
        { name: 'a' },
        { name: 'b', libvirt: { uri: 'qemu+ssh://root@b/system', ssh: { strict_host_key_checking: false } }, storage: { path: '/srv/bosh' }, network: { bridge: 'br0' } },
      ],
    });
    expect(isMultiHost(c)).toBe(true);
    const [a, b] = resolveHosts(c) as [HostConfig, HostConfig];
    expect(a).toEqual({ name: 'a', libvirt: c.libvirt, storage: c.storage, network: c.network });
    expect(b.name).toBe('b');
    expect(b.libvirt.uri).toBe('qemu+ssh://root@b/system');
    expect(b.libvirt.call_timeout_seconds).toBe(30);
    expect(b.libvirt.ssh).toEqual({ private_key: '/k', strict_host_key_checking: false, extra_args: [] });
    expect(b.storage).toEqual({ pool: 'bosh-cpi', path: '/srv/bosh', create_pool: true });
    expect(b.network).toEqual({ name: 'net', bridge: 'br0', model: 'virtio' });
    // the top level is not changed by a host's overrides
    expect(c.libvirt.ssh.strict_host_key_checking).toBe(true);
  });

  it('fixtures/config/two-hosts.json names two hosts on two daemons with domain_type qemu', () => {
    const c = ConfigSchema.parse(JSON.parse(readFileSync(join(ROOT, 'fixtures/config/two-hosts.json'), 'utf8')));
    expect(c.domain_type).toBe('qemu');
    const hosts = resolveHosts(c);
    expect(hosts.map((h) => h.name)).toEqual(['host-a', 'host-b']);
    expect(new Set(hosts.map((h) => h.libvirt.uri)).size).toBe(2);
    expect(new Set(hosts.map((h) => h.storage.path)).size).toBe(2);
  });

  it.each([
    ['an entry without a name', { hosts: [{}] }, /key hosts\.0\.name: expected string.*got nothing/],
    ['a name with capitals', { hosts: [{ name: 'Host-A' }] }, /key hosts\.0\.name: lowercase letters, digits and dashes only.*got "Host-A"/],
    ['two entries with one name', { hosts: [{ name: 'a' }, { name: 'a' }] }, /key hosts\.1\.name: duplicate host name "a" \(also hosts\.0\.name\)/],
    ['an empty list', { hosts: [] }, /key hosts: .*>=1.*got \[\]/],
    ['a section field of the wrong type', { hosts: [{ name: 'a', libvirt: { uri: 5 } }] }, /key hosts\.0\.libvirt\.uri: expected string.*got 5/],
    ['a misspelt section field', { hosts: [{ name: 'a', storage: { pol: 'x' } }] }, /unknown key hosts\.0\.storage\.pol/],
    ['a section a host cannot override', { hosts: [{ name: 'a', vm: { cpu: 2 } }] }, /unknown key hosts\.0\.vm/],
  ])('refuses %s, naming the field', (_what, hosts, message) => {
    expect(errorOf({ agent, ...hosts })).toMatch(message);
  });
});
