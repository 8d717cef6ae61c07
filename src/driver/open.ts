// Opens the driver for the configured backend: the shared libvirt driver over the
// backend's profile. Backend code (and the libvirt client) is loaded only here, so
// `info` never pays for it.
import type { Config } from '../config/schema.js';
import type { Driver } from './driver.js';
import type { Logger } from '../log/logger.js';
import { backendForUri } from './backends.js';
import { loadProfile } from './profiles.js';
import { NotSupported } from '../errors.js';

export async function openDriver(config: Config, log: Logger): Promise<Driver> {
  // The routing driver over one driver per host is not there yet (docs/multi-host.md):
  // refuse rather than quietly drive only the top-level host.
  if (config.hosts !== undefined) {
    throw new NotSupported(`hosts: several libvirt hosts behind one CPI are not supported by this version yet (configured: ${config.hosts.map((h) => h.name).join(', ')}); remove \`hosts\` to drive the top-level libvirt host`);
  }
  const profile = await loadProfile(backendForUri(config.libvirt.uri), config.libvirt.uri);
  const { openLibvirtDriver } = await import('./libvirt/driver.js');
  return openLibvirtDriver(profile, config, log);
}
