// Opens the driver for the configured backend. Backend code (and the libvirt client)
// is loaded only here, so `info` never pays for it.
import type { Config } from '../config/schema.js';
import type { Driver } from './driver.js';
import type { Logger } from '../log/logger.js';
import { backendForUri } from './backends.js';
import { NotImplemented } from '../errors.js';

export async function openDriver(config: Config, log: Logger): Promise<Driver> {
  const backend = backendForUri(config.libvirt.uri);
  switch (backend.name) {
    case 'qemu': {
      const { openQemuDriver } = await import('./qemu/index.js');
      return openQemuDriver(config, log);
    }
    default:
      throw new NotImplemented(`The ${backend.name} backend (${config.libvirt.uri}) is not implemented yet: only qemu/kvm hosts are supported in this release`);
  }
}
