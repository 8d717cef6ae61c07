import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfigDrive, configDriveFiles, CONFIG_DRIVE_LABEL } from '../../src/agent/config-drive.js';
import { buildAgentSettings, parseAgentSettings, withPersistentDisk } from '../../src/agent/settings.js';
import { CloudError } from '../../src/errors.js';
import { scratchDir } from '../helpers/scratch.js';

const NOW = new Date('2024-05-06T07:08:09Z');
const VM = 'vm-0d5e7a3c-1111-2222-3333-444455556666';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0bosh bosh@director';

const settings = buildAgentSettings({
  agentId: 'agent-1',
  vmName: VM,
  agent: { mbus: 'https://mbus:secret@0.0.0.0:6868', ntp: ['time.example'], blobstore: { provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } } },
  disks: { system: '/dev/vda', ephemeral: { id: 'eph0d5e7a3c11112222', path: '/dev/vdb' }, persistent: {} },
  networks: { default: { type: 'dynamic', mac: '52:54:00:aa:bb:cc', default: ['dns', 'gateway'], use_dhcp: true } },
  env: { bosh: { password: '$6$x', authorized_keys: [KEY] } },
});

let dir: string;
let image: string;

beforeAll(() => {
  dir = scratchDir('agent-config-drive-');
  image = join(dir, 'config.iso');
  writeFileSync(image, buildConfigDrive(settings, { instanceId: VM, publicKey: KEY }, { now: NOW }));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Read a file the way Linux would, through its Rock Ridge name. */
function read(iso: string, path: string): Buffer {
  return execFileSync('isoinfo', ['-i', iso, '-R', '-x', path], { stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('configDriveFiles', () => {
  it('lays out the OpenStack (ec2 and openstack) and vSphere (env) files', () => {
    expect(configDriveFiles(settings, { instanceId: VM }).map((f) => f.path).sort()).toEqual([
      'ec2/latest/meta-data.json',
      'ec2/latest/user-data',
      'env',
      'openstack/latest/meta_data.json',
      'openstack/latest/user_data',
    ]);
  });

  it('writes valid meta-data.json without a key, since the agent fails on a missing or invalid one', () => {
    const files = configDriveFiles(settings, { instanceId: VM });
    const meta = JSON.parse((files.find((f) => f.path === 'ec2/latest/meta-data.json')?.data as Buffer).toString());
    expect(meta).toEqual({ 'public-keys': {}, 'instance-id': VM });
  });

  it('rejects a missing instance id and an empty key', () => {
    expect(() => configDriveFiles(settings, { instanceId: '' })).toThrow(CloudError);
    expect(() => configDriveFiles(settings, { instanceId: VM, publicKey: ' ' })).toThrow(CloudError);
  });
});

describe('buildConfigDrive', () => {
  it('is an ISO9660 volume labelled config-2 that blkid (and so /dev/disk/by-label) sees', () => {
    expect(CONFIG_DRIVE_LABEL).toBe('config-2');
    const out = execFileSync('blkid', ['-p', '-o', 'export', image], { encoding: 'utf8' });
    expect(out).toMatch(/^TYPE=iso9660$/m);
    expect(out).toMatch(/^LABEL=config-2$/m);
  });

  it('holds the expected paths', () => {
    const listed = execFileSync('xorriso', ['-indev', image, '-find', '/', '-type', 'f'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')
      .filter((l) => l.startsWith("'/"))
      .map((l) => l.slice(1, -1))
      .sort();
    expect(listed).toEqual(['/ec2/latest/meta-data.json', '/ec2/latest/user-data', '/env', '/openstack/latest/meta_data.json', '/openstack/latest/user_data']);
  });

  it('carries the settings as user-data, user_data and env', () => {
    const expected = JSON.stringify(settings);
    for (const path of ['/ec2/latest/user-data', '/openstack/latest/user_data', '/env']) expect(read(image, path).toString('utf8')).toBe(expected);
    expect(parseAgentSettings(read(image, '/ec2/latest/user-data'))).toEqual(settings);
  });

  it('has meta-data.json with instance-id and the key where the agent looks (public-keys.0.openssh-key)', () => {
    const meta = JSON.parse(read(image, '/ec2/latest/meta-data.json').toString('utf8'));
    expect(meta).toEqual({ 'public-keys': { '0': { 'openssh-key': KEY } }, 'instance-id': VM });
    const os = JSON.parse(read(image, '/openstack/latest/meta_data.json').toString('utf8'));
    expect(os).toMatchObject({ uuid: VM, hostname: VM, public_keys: { bosh: KEY } });
  });

  it('rewrites the same drive with a persistent disk for stemcells that read it at boot', () => {
    const updated = withPersistentDisk(parseAgentSettings(read(image, '/ec2/latest/user-data')), 'disk-1', { id: 'disk1serial000000000', path: '/dev/vdc' });
    const iso = join(dir, 'updated.iso');
    writeFileSync(iso, buildConfigDrive(updated, { instanceId: VM, publicKey: KEY }, { now: NOW }));
    expect(parseAgentSettings(read(iso, '/ec2/latest/user-data')).disks.persistent).toEqual({ 'disk-1': { id: 'disk1serial000000000', path: '/dev/vdc' } });
  });

  it('is byte-identical for the same settings and time', () => {
    const a = buildConfigDrive(settings, { instanceId: VM }, { now: NOW });
    const b = buildConfigDrive(settings, { instanceId: VM }, { now: new Date(NOW) });
    expect(a.equals(b)).toBe(true);
  });
});
