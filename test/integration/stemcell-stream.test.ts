// create_stemcell's streaming path through the built bin/cpi against qemu:///system, on
// images large enough that the tarball reader's two buffers and zlib's output chunks are
// reused and cut many times (bench/create-stemcell.mjs measures its speed; these check
// the bytes, the holes and the failures). test/integration/driver.test.ts covers the rest
// of create_stemcell on small images.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, testConfig } from '../helpers/driver-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-perf-sc-';
const MiB = 1024 * 1024;
let config: string;
let pool: string;
let poolPath: string;

const volumes = () =>
  spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'vol-list', pool], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s).sort();

/** A raw root.img of `sizeMiB`: random runs at odd offsets (not 4 KiB aligned) between zero runs, tarred as `tar zcf` does. */
function rawImage(sizeMiB: number, runs: Array<[offset: number, length: number]>): { dir: string; img: string; image: string } {
  const dir = scratchDir('t-perf-sc-img-');
  const img = join(dir, 'root.img');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, img]);
  const fd = openSync(img, 'r+');
  for (const [offset, length] of runs) writeSync(fd, randomBytes(length), 0, length, offset);
  closeSync(fd);
  execFileSync('tar', ['-C', dir, '-czf', join(dir, 'image'), 'root.img']);
  return { dir, img, image: join(dir, 'image') };
}

beforeAll(() => {
  requireBundle();
  cleanupPrefix(PREFIX);
  ({ path: config, pool, poolPath } = testConfig({ prefix: PREFIX }));
});

afterAll(() => cleanupPrefix(PREFIX));

describe('create_stemcell streaming', () => {
  it('imports a 40 MiB raw image byte for byte, its zero runs as holes', async () => {
    const runs: Array<[number, number]> = [[0, 3 * MiB + 17], [5 * MiB + 4095, 6 * MiB + 1], [12 * MiB + 1, 2 * MiB], [20 * MiB - 3, 9 * MiB], [40 * MiB - 100, 100]];
    const { img, image } = rawImage(40, runs);
    const cid = (await cpi(config, 'create_stemcell', [image, { disk_format: 'raw' }])) as string;
    try {
      const path = `${poolPath}/${cid}`;
      execFileSync('cmp', [img, path]);
      const [blocks, blockSize] = execFileSync('stat', ['-c', '%b %B', path], { encoding: 'utf8' }).trim().split(' ').map(Number);
      // 20 MiB of data (plus block rounding); the other ~20 MiB are holes.
      expect(blocks! * blockSize!).toBeLessThan(22 * MiB);
    } finally {
      await cpi(config, 'delete_stemcell', [cid]);
    }
  });

  it('fails (and does not hang) on a tarball cut after 10 MiB, leaving no volume', async () => {
    const { dir, image } = rawImage(32, [[0, 32 * MiB]]);
    const cut = join(dir, 'cut');
    execFileSync('sh', ['-c', `head -c ${10 * MiB} "${image}" > "${cut}"`]);
    const before = volumes();
    const err = await cpiError(config, 'create_stemcell', [cut, {}]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toMatch(/Cannot read stemcell image .*cut: .*unexpected end/i);
    expect(volumes()).toEqual(before);
  });

  it('names a missing image file, leaving no volume', async () => {
    const before = volumes();
    const missing = join(scratchDir('t-perf-sc-missing-'), 'image');
    const err = await cpiError(config, 'create_stemcell', [missing, {}]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toContain(`Cannot read stemcell image ${missing}: ENOENT`);
    expect(volumes()).toEqual(before);
  });
});
