// "Bring your own stack" in a real container (lxc:///): the container test stemcell's
// root filesystem (fixtures/stemcell/build-container.sh, from the lxc backend) is packaged
// as an OCI image archive of three layers — the tree plus a decoy file, a whiteout of the
// decoy, a layer adding /etc/oci-layer-3 — imported through bin/cpi as an `oci-tar`
// stemcell, and booted. The agent's report (a file it keeps in its root filesystem,
// read on the host from the container's overlay upper directory) proves the container
// runs; a command run inside it shows the flattened layers. delete_stemcell is refused
// while the container uses the stemcell, and removes it afterwards; nothing is left.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle, ROOT, writeConfig } from '../helpers/cpi.js';
import { cpi, cpiError, defineIsolatedNetwork, removeNetwork } from '../helpers/driver-fixtures.js';
import { ociArchiveFromDirectory } from '../helpers/oci-archive.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 'lxcs-e2e-';
const POOL = `${PREFIX}pool`;
const POOL_PATH = `/var/tmp/${POOL}`;
const NET = 'lxcs-net';
const REPORT = 'var/vcap/bosh/test-agent-report.json';

const virsh = (...args: string[]): string => {
  try {
    return execFileSync('virsh', ['-q', '-c', 'lxc:///', ...args], { encoding: 'utf8', stdio: 'pipe' });
  } catch {
    return '';
  }
};

function cleanup(): void {
  for (const name of virsh('list', '--all', '--name').split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX))) {
    virsh('destroy', name);
    virsh('undefine', name);
  }
  virsh('pool-destroy', POOL);
  virsh('pool-undefine', POOL);
  rmSync(POOL_PATH, { recursive: true, force: true });
}

/** The report the test agent writes once it has read its settings. */
async function agentReport(vm: string, timeoutMs = 60_000): Promise<{ agent_id: string | null }> {
  const path = join(POOL_PATH, `${vm}.root/upper`, REPORT);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    try {
      if (text) return JSON.parse(text) as { agent_id: string | null };
    } catch {
      // being written: read again
    }
    if (Date.now() > deadline) throw new Error(`no agent report in ${path} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

let config = '';
let stemcell = '';

beforeAll(async () => {
  requireBundle();
  cleanup();
  defineIsolatedNetwork(NET, 'lxcs0', 220);
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')) as Record<string, unknown>;
  config = writeConfig({ ...base, name_prefix: PREFIX, storage: { pool: POOL, path: POOL_PATH, create_pool: true }, network: { name: NET } });
  const tarball = execFileSync(join(ROOT, 'fixtures/stemcell/build-container.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!;
  const info = JSON.parse(readFileSync(join(dirname(tarball), 'info.json'), 'utf8')) as { rootfs: string; name: string; version: string };
  const image = join(scratchDir('lxcs-e2e-image-'), 'image');
  await ociArchiveFromDirectory(info.rootfs, image);
  stemcell = (await cpi(config, 'create_stemcell', [image, { name: `${info.name}-oci`, version: info.version }])) as string;
}, 600_000);

afterAll(() => {
  cleanup();
  removeNetwork(NET);
});

describe('an oci-tar stemcell', () => {
  let vm = '';

  it('boots: the agent reports from a container whose root is the flattened image', async () => {
    const networks = { default: { type: 'manual', ip: '198.18.220.20', netmask: '255.255.255.0', gateway: '198.18.220.1', default: ['dns', 'gateway'], cloud_properties: {} } };
    [vm] = (await cpi(config, 'create_vm', ['agent-oci', stemcell, {}, networks, [], {}], { context: { vm: { stemcell: { api_version: 3 } } } })) as [string, unknown];
    expect((await agentReport(vm)).agent_id).toBe('agent-oci');
    expect(virsh('lxc-enter-namespace', vm, '--noseclabel', '/bin/cat', '/etc/oci-layer-3')).toBe('layer 3\n');
    const etc = virsh('lxc-enter-namespace', vm, '--noseclabel', '/bin/ls', '/etc').split(/\s+/);
    expect(etc).toContain('oci-layer-3');
    expect(etc).not.toContain('oci-whiteout-decoy');
  }, 120_000);

  it('delete_stemcell is refused while the container uses it', async () => {
    const err = await cpiError(config, 'delete_stemcell', [stemcell]);
    expect(err).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining(`is still the root filesystem of 1 container(s) (${vm})`) });
  });

  it('after delete_vm, delete_stemcell removes it, twice without error, leaving nothing in the pool', async () => {
    await cpi(config, 'delete_vm', [vm]);
    await cpi(config, 'delete_stemcell', [stemcell]);
    await cpi(config, 'delete_stemcell', [stemcell]);
    expect(virsh('vol-list', POOL).split('\n').map((l) => l.trim()).filter((l) => l.startsWith(PREFIX))).toEqual([]);
    expect(execFileSync('ls', ['-A', POOL_PATH], { encoding: 'utf8' }).split('\n').filter((n) => n.startsWith(PREFIX))).toEqual([]);
  });
});
