// The config's top-level keys, without importing zod (the info fast path reads it).
// test/unit/config.test.ts keeps it equal to ConfigSchema's keys.
export const CONFIG_TOP_LEVEL_KEYS: readonly string[] = ['libvirt', 'domain_type', 'storage', 'network', 'hosts', 'vm', 'agent', 'name_prefix'];
