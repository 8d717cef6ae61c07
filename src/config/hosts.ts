// The libvirt hosts a configuration names. Without `hosts` there is one host, made of the
// top-level `libvirt`, `storage` and `network` sections (today's single-host config,
// unchanged); with it, each entry's sections override the top-level ones key by key.
import type { Config } from './schema.js';

export interface HostConfig {
  name: string;
  libvirt: Config['libvirt'];
  storage: Config['storage'];
  network: Config['network'];
}

/** The name the single host of a config without `hosts` goes by (it never appears in a CID). */
export const SINGLE_HOST_NAME = 'default';

export function isMultiHost(config: Config): boolean {
  return config.hosts !== undefined;
}

export function resolveHosts(config: Config): HostConfig[] {
  if (!config.hosts) {
    return [{ name: SINGLE_HOST_NAME, libvirt: config.libvirt, storage: config.storage, network: config.network }];
  }
  return config.hosts.map((h) => ({
    name: h.name,
    libvirt: overlay(config.libvirt, h.libvirt),
    storage: overlay(config.storage, h.storage),
    network: overlay(config.network, h.network),
  }));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function overlay<T extends object>(base: T, over: Record<string, unknown> | undefined): T {
  if (!over) return base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? overlay(b, v) : v;
  }
  return out as T;
}
