// info on an lxc:/// configuration advertises the container stemcell formats: the
// warden rootfs tarball and OCI image archives (docs/lxc.md).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCpi, request, writeConfig, ROOT } from '../helpers/cpi.js';

describe('info (lxc)', () => {
  it('advertises warden-tar, general-tar and oci-tar', async () => {
    const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/qemu.json'), 'utf8')) as Record<string, unknown>;
    const run = await runCpi(request('info'), { config: writeConfig({ ...base, libvirt: { uri: 'lxc:///' } }) });
    expect(run.response.error).toBeNull();
    expect(run.response.result).toEqual({ api_version: 3, stemcell_formats: ['warden-tar', 'general-tar', 'oci-tar'] });
  });
});
