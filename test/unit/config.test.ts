import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config/schema.js';
import { CONFIG_TOP_LEVEL_KEYS } from '../../src/config/keys.js';
import { loadConfig } from '../../src/config/load.js';
import { configReference } from '../../src/config/doc.js';
import { writeConfig, ROOT } from '../helpers/cpi.js';

describe('config schema', () => {
  it('the info fast path knows exactly the schema\'s top-level keys', () => {
    expect([...CONFIG_TOP_LEVEL_KEYS].sort()).toEqual(Object.keys(ConfigSchema.shape).sort());
  });

  it('every ready config under fixtures/config passes the schema', () => {
    const dir = join(ROOT, 'fixtures/config');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files).toContain('qemu.json');
    for (const f of files) {
      const r = ConfigSchema.safeParse(JSON.parse(readFileSync(join(dir, f), 'utf8')));
      expect(r.success, `${f}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
    }
  });

  it('fills every default from one place', () => {
    const c = ConfigSchema.parse({ agent: { mbus: 'nats://n:p@h:4222' } });
    expect(c.libvirt.uri).toBe('qemu:///system');
    expect(c.domain_type).toBe('auto');
    expect(c.storage).toEqual({ pool: 'bosh', path: '/var/lib/libvirt/bosh', create_pool: true });
    expect(c.vm.machine).toBe('pc');
  });

  it('context properties override file values key by key', () => {
    const path = writeConfig({ agent: { mbus: 'nats://n:p@h:4222', ntp: ['a'] }, storage: { pool: 'p1', path: '/x' } });
    const c = loadConfig(path, { director_uuid: 'd', request_id: 'r', vm: { stemcell: { api_version: 3 } }, storage: { pool: 'p2' }, unrelated: 1 });
    expect(c.storage.pool).toBe('p2');
    expect(c.storage.path).toBe('/x');
    expect(c.agent.ntp).toEqual(['a']);
    // context.vm is the director's stemcell info, not the config's VM defaults
    expect(c.vm.cpu).toBe(1);
  });

  it('the README\'s configuration reference is the one generated from the schema', () => {
    const path = join(ROOT, 'README.md');
    const readme = readFileSync(path, 'utf8');
    const begin = '<!-- config-reference:begin -->\n';
    const end = '\n<!-- config-reference:end -->';
    const generated = configReference();
    if (process.env.UPDATE_README) {
      const i = readme.indexOf(begin);
      const j = readme.indexOf(end);
      writeFileSync(path, readme.slice(0, i + begin.length) + generated + readme.slice(j));
      return;
    }
    expect(readme).toContain(begin);
    const actual = readme.slice(readme.indexOf(begin) + begin.length, readme.indexOf(end));
    expect(actual, 'README config reference is stale: run UPDATE_README=1 npx vitest run test/unit/config.test.ts').toBe(generated);
    for (const key of ['libvirt.uri', 'storage.pool', 'domain_type', 'agent.mbus', 'name_prefix']) expect(generated).toContain(`\`${key}\``);
  });
});
