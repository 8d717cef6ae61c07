// Opens the driver for the configured backend: the shared libvirt driver over the
// backend's profile. Backend code (and the libvirt client) is loaded only here, so
// `info` never pays for it.
import type { Config } from '../config/schema.js';
import type { Driver } from './driver.js';
import type { Logger } from '../log/logger.js';
import { backendForConfig, backendForUri } from './backends.js';
import { loadProfile } from './profiles.js';

export async function openDriver(config: Config, log: Logger): Promise<Driver> {
  if (config.hosts !== undefined) {
    // several hosts: one driver per host under the routing driver (docs/multi-host.md)
    backendForConfig(config);
    const [{ openMultiHostDriver }, { openLibvirtDriver }] = await Promise.all([import('../hosts/driver.js'), import('./shared/driver.js')]);
    return openMultiHostDriver(config, log, async (hostConfig, hostLog) =>
      openLibvirtDriver(await loadProfile(backendForUri(hostConfig.libvirt.uri), hostConfig.libvirt.uri), hostConfig, hostLog));
  }
  const profile = await loadProfile(backendForUri(config.libvirt.uri), config.libvirt.uri);
  const { openLibvirtDriver } = await import('./shared/driver.js');
  return openLibvirtDriver(profile, config, log);
}
