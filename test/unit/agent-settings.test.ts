import { describe, expect, it } from 'vitest';
import { buildAgentSettings, parseAgentSettings, withPersistentDisk, withoutPersistentDisk, type AgentSettingsInput } from '../../src/agent/settings.js';
import { CloudError } from '../../src/errors.js';

function input(over: Partial<AgentSettingsInput> = {}): AgentSettingsInput {
  return {
    agentId: 'agent-1',
    vmName: 'vm-0d5e7a3c-1111-2222-3333-444455556666',
    agent: { mbus: 'nats://nats:secret@10.0.0.6:4222', ntp: ['0.pool.ntp.org', '1.pool.ntp.org'] },
    disks: { system: '/dev/vda', ephemeral: { id: 'eph0d5e7a3c11112222', path: '/dev/vdb' }, persistent: {} },
    networks: {
      default: {
        type: 'manual',
        ip: '10.0.0.10',
        netmask: '255.255.255.0',
        gateway: '10.0.0.1',
        prefix: '24',
        default: ['dns', 'gateway'],
        dns: ['10.0.0.2'],
        mac: '52:54:00:aa:bb:cc',
        nic_group: '0',
        use_dhcp: false,
        routes: [{ destination: '0.0.0.0', netmask: '0.0.0.0', gateway: '10.0.0.1' }],
        cloud_properties: { name: 'default' },
        some_future_key: { nested: [1, 2, 3] },
      },
    },
    env: { bosh: { mbus: { cert: { ca: 'CA' } }, password: '$6$hash', ipv6: { enable: true }, blobstores: [{ provider: 'dav', options: {} }] }, persistent_disk_fs: 'xfs' },
    ...over,
  };
}

describe('buildAgentSettings', () => {
  it('has exactly the keys bosh-agent reads, in its documented order', () => {
    const s = buildAgentSettings(input());
    expect(Object.keys(s)).toEqual(['agent_id', 'vm', 'mbus', 'ntp', 'disks', 'networks', 'env']);
    expect(s.agent_id).toBe('agent-1');
    expect(s.vm).toEqual({ name: 'vm-0d5e7a3c-1111-2222-3333-444455556666' });
    expect(s.mbus).toBe('nats://nats:secret@10.0.0.6:4222');
    expect(s.ntp).toEqual(['0.pool.ntp.org', '1.pool.ntp.org']);
    expect(Object.keys(s.disks)).toEqual(['system', 'ephemeral', 'persistent']);
    expect(s.disks).toEqual({ system: '/dev/vda', ephemeral: { id: 'eph0d5e7a3c11112222', path: '/dev/vdb' }, persistent: {} });
  });

  it('adds blobstore only when configured', () => {
    const blobstore = { provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } };
    const s = buildAgentSettings(input({ agent: { mbus: 'https://mbus:p@0.0.0.0:6868', ntp: [], blobstore } }));
    expect(Object.keys(s)).toEqual(['agent_id', 'vm', 'mbus', 'ntp', 'blobstore', 'disks', 'networks', 'env']);
    expect(s.blobstore).toEqual(blobstore);
    expect('blobstore' in buildAgentSettings(input())).toBe(false);
  });

  it('leaves ephemeral out when there is none, and accepts old-style string hints', () => {
    const s = buildAgentSettings(input({ disks: { system: '/dev/vda', persistent: { 'disk-1': '/dev/vdc' } } }));
    expect('ephemeral' in s.disks).toBe(false);
    expect(s.disks.persistent).toEqual({ 'disk-1': '/dev/vdc' });
    expect(JSON.stringify(s.disks)).toBe('{"system":"/dev/vda","persistent":{"disk-1":"/dev/vdc"}}');
  });

  it('passes every network key through, including the ones the Go CPI library drops', () => {
    const i = input();
    const s = buildAgentSettings(i);
    expect(s.networks).toEqual(i.networks);
    const net = s.networks.default as Record<string, unknown>;
    for (const key of ['prefix', 'nic_group', 'use_dhcp', 'mac', 'routes', 'cloud_properties', 'some_future_key']) expect(net).toHaveProperty(key);
  });

  it('passes env through untouched', () => {
    const i = input();
    expect(buildAgentSettings(i).env).toEqual(i.env);
    expect(JSON.parse(JSON.stringify(buildAgentSettings(i))).env).toEqual(i.env);
  });

  it('drops undefined hint keys and rejects values that would panic the agent', () => {
    const s = buildAgentSettings(input({ disks: { system: '/dev/vda', persistent: { 'disk-1': { id: 'abc', path: undefined } } } }));
    expect(JSON.stringify(s.disks.persistent)).toBe('{"disk-1":{"id":"abc"}}');
    // bosh-agent does `path.(string)` on every present key: null or a number would crash it.
    const bad = (hint: unknown) => () => buildAgentSettings(input({ disks: { system: '/dev/vda', persistent: { d: hint as string } } }));
    expect(bad({ path: null })).toThrow(CloudError);
    expect(bad({ lun: 0 })).toThrow(/disks\.persistent\.d\.lun/);
    expect(bad({ bus: 'virtio' })).toThrow(CloudError);
    expect(bad({})).toThrow(CloudError);
    expect(bad('')).toThrow(CloudError);
  });

  it('rejects missing identity fields with a CloudError naming the field', () => {
    expect(() => buildAgentSettings(input({ agentId: '' }))).toThrow(/agent_id/);
    expect(() => buildAgentSettings(input({ disks: { system: '', persistent: {} } }))).toThrow(/disks\.system/);
  });
});

describe('persistent disk helpers', () => {
  it('withPersistentDisk adds or replaces one disk without touching the input', () => {
    const s = buildAgentSettings(input());
    const before = JSON.stringify(s);
    const a = withPersistentDisk(s, 'disk-1', { id: 'disk1serial000000000', path: '/dev/vdc' });
    const b = withPersistentDisk(a, 'disk-2', '/dev/vdd');
    const c = withPersistentDisk(b, 'disk-1', { path: '/dev/vde' });
    expect(JSON.stringify(s)).toBe(before);
    expect(a.disks.persistent).toEqual({ 'disk-1': { id: 'disk1serial000000000', path: '/dev/vdc' } });
    expect(c.disks.persistent).toEqual({ 'disk-1': { path: '/dev/vde' }, 'disk-2': '/dev/vdd' });
    expect(c.disks.system).toBe('/dev/vda');
    expect(c.networks).toBe(s.networks);
    expect(() => withPersistentDisk(s, '', '/dev/vdc')).toThrow(CloudError);
    expect(() => withPersistentDisk(s, 'disk-1', { path: null } as never)).toThrow(CloudError);
  });

  it('withoutPersistentDisk removes one disk and tolerates an unknown one', () => {
    const s = withPersistentDisk(withPersistentDisk(buildAgentSettings(input()), 'disk-1', '/dev/vdc'), 'disk-2', '/dev/vdd');
    const r = withoutPersistentDisk(s, 'disk-1');
    expect(r.disks.persistent).toEqual({ 'disk-2': '/dev/vdd' });
    expect(s.disks.persistent).toHaveProperty('disk-1');
    expect(withoutPersistentDisk(r, 'disk-9').disks.persistent).toEqual({ 'disk-2': '/dev/vdd' });
  });
});

describe('parseAgentSettings', () => {
  it('reads back what was built, unknown keys included', () => {
    const s = withPersistentDisk(buildAgentSettings(input()), 'disk-1', { id: 'x', path: '/dev/vdc' });
    const json = JSON.stringify({ ...s, future_top_level: true });
    const back = parseAgentSettings(Buffer.from(json));
    expect(back).toEqual({ ...s, future_top_level: true });
    expect(withoutPersistentDisk(back, 'disk-1').disks.persistent).toEqual({});
  });

  it('fails with a CloudError naming the problem', () => {
    expect(() => parseAgentSettings('not json')).toThrow(CloudError);
    expect(() => parseAgentSettings('{"agent_id":1}')).toThrow(/agent_id/);
    const s = buildAgentSettings(input());
    expect(() => parseAgentSettings(JSON.stringify({ ...s, disks: { ...s.disks, persistent: { d: { path: 3 } } } }))).toThrow(/disks\.persistent\.d/);
  });
});
