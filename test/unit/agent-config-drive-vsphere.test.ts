// The config drive as a vSphere-family stemcell's agent reads it (VirtualBox VMs boot
// either stemcell family from the same ISO on a CD-ROM). bosh-agent's CDROM settings
// source (infrastructure/cdrom_settings_source.go, platform/cdrom/cdutil.go) runs
// `mount /dev/sr0 <dir>`, reads <dir>/env and unmarshals it into the same
// settings.Settings struct that the ConfigDrive source fills from ec2/latest/user-data.
// So `env` must sit at the root, be found under that exact name however Linux's isofs
// presents the image (Rock Ridge by default, Joliet, or plain ISO9660 names when neither
// is used: map=normal lower-cases them and drops the ";1" version and a trailing dot),
// and hold byte for byte what user-data holds.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildConfigDrive } from '../../src/agent/config-drive.js';
import { buildAgentSettings, parseAgentSettings } from '../../src/agent/settings.js';
import { scratchDir } from '../helpers/scratch.js';

const NOW = new Date('2024-05-06T07:08:09Z');
const VM = 'vm-7f3a1b2c-aaaa-bbbb-cccc-ddddeeeeffff';

const settings = buildAgentSettings({
  agentId: 'agent-vbox',
  vmName: VM,
  agent: { mbus: 'https://mbus:secret@0.0.0.0:6868', ntp: ['time.example'], blobstore: { provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } } },
  disks: { system: '/dev/sda', ephemeral: { path: '/dev/sdb' }, persistent: {} },
  networks: {
    private: { type: 'manual', ip: '198.18.200.10', netmask: '255.255.255.0', gateway: '198.18.200.1', mac: '08:00:27:aa:bb:01', default: ['dns', 'gateway'], dns: ['198.18.200.1'] },
  },
  env: { bosh: { password: '$6$x' } },
});

let image: string;

beforeAll(() => {
  image = join(scratchDir('agent-config-drive-vsphere-'), 'settings.iso');
  writeFileSync(image, buildConfigDrive(settings, { instanceId: VM }, { now: NOW }));
});

function isoinfo(...args: string[]): Buffer {
  return execFileSync('isoinfo', ['-i', image, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * The identifiers of the root directory as isoinfo prints them in one tree: the primary
 * tree without options, the Joliet tree with -J.
 */
function rootIdentifiers(...tree: string[]): string[] {
  const listing = isoinfo(...tree, '-l').toString('utf8');
  const root = listing.split(/^Directory listing of /m).find((block) => block.startsWith('/\n')) ?? '';
  return root
    .split('\n')
    .map((l) => /\]\s+(\S+)\s*$/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== '.' && n !== '..');
}

/** What Linux's isofs shows for a Joliet or plain ISO9660 identifier (it drops the ";1" version and a trailing dot; map=normal lower-cases plain names). */
function linuxName(identifier: string, plain: boolean): string {
  const name = identifier.replace(/;1$/, '').replace(/\.$/, '');
  return plain ? name.toLowerCase() : name;
}

describe('the config drive read by the CDROM settings source of a vSphere stemcell', () => {
  it('holds env at the root under its Rock Ridge name, as `mount /dev/sr0` shows it', () => {
    const rootListing = isoinfo('-R', '-l').toString('utf8');
    expect(rootListing).toMatch(/\s env\s*$/m);
    expect(isoinfo('-R', '-x', '/env').toString('utf8')).toBe(JSON.stringify(settings));
  });

  it('holds env under a Joliet name that Linux shows as "env"', () => {
    const env = rootIdentifiers('-J').find((n) => linuxName(n, false) === 'env');
    expect(env, `Joliet identifiers: ${rootIdentifiers('-J').join(', ')}`).toBeDefined();
    expect(isoinfo('-J', '-x', `/${env}`).toString('utf8')).toBe(JSON.stringify(settings));
  });

  it('holds env under a plain ISO9660 name that Linux shows as "env" when Rock Ridge and Joliet are ignored', () => {
    const identifiers = rootIdentifiers();
    const env = identifiers.find((n) => linuxName(n, true) === 'env');
    expect(env, `plain identifiers: ${identifiers.join(', ')}`).toBeDefined();
    expect(isoinfo('-x', `/${env}`).toString('utf8')).toBe(JSON.stringify(settings));
  });

  it('carries in env exactly what the ConfigDrive source reads from user-data, as settings.Settings JSON', () => {
    const env = isoinfo('-R', '-x', '/env');
    expect(env.equals(isoinfo('-R', '-x', '/ec2/latest/user-data'))).toBe(true);
    const parsed = JSON.parse(env.toString('utf8')) as Record<string, unknown>;
    // The top-level keys bosh-agent's settings.Settings unmarshals (settings/settings.go).
    for (const key of ['agent_id', 'blobstore', 'disks', 'env', 'networks', 'ntp', 'mbus', 'vm']) expect(parsed).toHaveProperty(key);
    expect(parseAgentSettings(env)).toEqual(settings);
  });

  it('is one image for both families: labelled config-2 for the ConfigDrive source, with env for the CDROM source', () => {
    const out = execFileSync('blkid', ['-p', '-o', 'export', image], { encoding: 'utf8' });
    expect(out).toMatch(/^LABEL=config-2$/m);
    expect(isoinfo('-R', '-x', '/ec2/latest/meta-data.json').length).toBeGreaterThan(0);
  });
});
