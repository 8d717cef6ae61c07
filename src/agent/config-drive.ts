// The config drive: one ISO9660 image that every stemcell family this CPI boots can read.
//   - OpenStack stemcells: ConfigDrive source on /dev/disk/by-label/config-2 (or CONFIG-2),
//     reading ec2/latest/user-data and ec2/latest/meta-data.json
//     (bosh-linux-stemcell-builder stages/bosh_openstack_agent_settings/apply.sh).
//   - vSphere-family stemcells: CDROM source, the file `env` on /dev/sr0.
//   - The openstack/latest/* pair mirrors Nova's layout for cloud-init-like tools.
import { writeIso, type IsoFile } from './iso9660.js';
import { badInput } from '../errors.js';
import type { AgentSettings } from './settings.js';

/** The volume label as Nova writes it (`genisoimage -V config-2`); blkid and udev show it as is. */
export const CONFIG_DRIVE_LABEL = 'config-2';

export interface ConfigDriveMeta {
  /** The VM cid. */
  instanceId: string;
  /** One OpenSSH public key line; the agent installs it for vcap when present. */
  publicKey?: string;
}

export interface ConfigDriveOptions {
  /** Timestamps in the image; fix it for reproducible bytes. */
  now?: Date;
}

export function configDriveFiles(settings: AgentSettings, meta: ConfigDriveMeta): IsoFile[] {
  if (typeof meta?.instanceId !== 'string' || meta.instanceId === '') throw badInput('config drive instanceId', meta?.instanceId, 'a non-empty string');
  if (meta.publicKey !== undefined && (typeof meta.publicKey !== 'string' || meta.publicKey.trim() === '')) {
    throw badInput('config drive publicKey', meta.publicKey, 'an OpenSSH public key line');
  }
  const userData = json(settings);
  // bosh-agent's ConfigDriveSettingsSource unmarshals this file before it reads the settings
  // and fails the whole source when it is missing or not JSON; it takes public-keys["0"]["openssh-key"].
  const ec2Meta = {
    'public-keys': meta.publicKey === undefined ? {} : { '0': { 'openssh-key': meta.publicKey } },
    'instance-id': meta.instanceId,
  };
  // Nova's openstack/latest/meta_data.json keys; public_keys is named by key pair.
  const openstackMeta = {
    uuid: meta.instanceId,
    name: meta.instanceId,
    hostname: meta.instanceId,
    launch_index: 0,
    public_keys: meta.publicKey === undefined ? {} : { bosh: meta.publicKey },
    meta: {},
  };
  return [
    { path: 'ec2/latest/meta-data.json', data: json(ec2Meta) },
    { path: 'ec2/latest/user-data', data: userData },
    { path: 'env', data: userData },
    { path: 'openstack/latest/meta_data.json', data: json(openstackMeta) },
    { path: 'openstack/latest/user_data', data: userData },
  ];
}

export function buildConfigDrive(settings: AgentSettings, meta: ConfigDriveMeta, opts: ConfigDriveOptions = {}): Buffer {
  return writeIso({ volumeId: CONFIG_DRIVE_LABEL, files: configDriveFiles(settings, meta), ...(opts.now ? { now: opts.now } : {}) });
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
