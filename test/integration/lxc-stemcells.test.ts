// The LXC backend's stemcell store on the real libvirtd: a stemcell is a directory
// volume holding the unpacked root filesystem plus the `<cid>.meta` sidecar, written
// last. Only storage is involved, so a per-test pool of the shared storage driver is
// used, reached through lxc:/// (the same pools as qemu:///system).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { createVolume, deleteVolumeIfExists, openHost, type Host } from '../../src/driver/shared/host.js';
import { readSidecar, writeSidecar } from '../../src/driver/shared/sidecar.js';
import { createStemcell, deleteStemcell, findRootfsStemcell } from '../../src/driver/lxc/stemcells.js';
import { createDirVolume, deleteDirVolume } from '../../src/driver/lxc/dir-volume.js';
import { findOrphans } from '../../src/cli/orphans.js';
import { CloudError } from '../../src/errors.js';
import type { StemcellCID } from '../../src/driver/cids.js';
import { cleanupPrefix, leftovers, testConfig } from '../helpers/driver-fixtures.js';
import { ociArchive, rootfsTgzFromDirectory, tarBuffer } from '../helpers/oci-archive.js';
import { scratchDir } from '../helpers/scratch.js';
import { REPO_ROOT } from '../helpers/stemcell.js';

const PREFIX = 'lxcs-st-';
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'lxc:///', ...args], { encoding: 'utf8' });
const volumes = (pool: string) => virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s).sort();

let host: Host;
let config: ReturnType<typeof testConfig>;

function sampleRootfs(): string {
  const src = scratchDir('lxcs-rootfs-');
  chmodSync(src, 0o755); // the archive's root entry gives the stemcell directory its mode
  mkdirSync(join(src, 'sbin'));
  mkdirSync(join(src, 'etc'));
  writeFileSync(join(src, 'sbin/init'), '#!/bin/sh\nexec sleep 1000\n', { mode: 0o755 });
  writeFileSync(join(src, 'etc/hostname'), 'container\n');
  symlinkSync('/proc/mounts', join(src, 'etc/mtab'));
  return src;
}

beforeAll(async () => {
  cleanupPrefix(PREFIX);
  config = testConfig({ prefix: PREFIX, overrides: { libvirt: { uri: 'lxc:///' } } });
  host = await openHost(loadConfig(config.path), createLogger('warn'));
});

afterAll(async () => {
  await host?.conn.close().catch(() => undefined);
  virsh('undefine', `${PREFIX}hand`);
  cleanupPrefix(PREFIX);
});

describe('create_stemcell (lxc)', () => {
  it('imports a warden-tar image as a 0755 directory volume holding the root filesystem, with its sidecar', async () => {
    const image = join(scratchDir('lxcs-img-'), 'image');
    await rootfsTgzFromDirectory(sampleRootfs(), image);
    const cid = await createStemcell(host, image, { name: 'test', version: '1' }, { owner: 'lxcs' });
    expect(cid).toMatch(new RegExp(`^${PREFIX}sc-[0-9a-f-]{36}$`));
    expect(volumes(config.pool)).toEqual([cid, `${cid}.meta`].sort());
    expect(virsh('vol-dumpxml', cid, '--pool', config.pool).stdout).toContain("<format type='dir'/>");
    const found = await findRootfsStemcell(host, cid);
    expect(found).toEqual({ cid, path: join(config.poolPath, cid) });
    expect(readFileSync(join(found!.path, 'etc/hostname'), 'utf8')).toBe('container\n');
    expect(readlinkSync(join(found!.path, 'etc/mtab'))).toBe('/proc/mounts');
    expect(lstatSync(found!.path).mode & 0o777).toBe(0o755);
    expect(await readSidecar(host, cid)).toMatchObject({ kind: 'stemcell', format: 'rootfs', archive: 'rootfs', name: 'test', version: '1', tags: { owner: 'lxcs' } });
    expect(await deleteStemcell(host, cid)).toBe(true);
  });

  it('imports an OCI image (docker save) with its layers flattened', async () => {
    const image = join(scratchDir('lxcs-img-'), 'image');
    writeFileSync(image, await ociArchive([
      await tarBuffer([{ name: 'etc/', type: 'directory' }, { name: 'etc/a', data: 'a' }, { name: 'etc/b', data: 'b' }]),
      await tarBuffer([{ name: 'etc/', type: 'directory' }, { name: 'etc/.wh.a', data: '' }]),
    ], { format: 'docker-save' }));
    const cid = await createStemcell(host, image, {}, {});
    expect(readdirSync(join(config.poolPath, cid, 'etc'))).toEqual(['b']);
    expect(await readSidecar(host, cid)).toMatchObject({ format: 'rootfs', archive: 'docker-save', layers: 2 });
    await deleteStemcell(host, cid);
  });

  it('refuses a malicious image naming the entry, and leaves nothing in the pool', async () => {
    const image = join(scratchDir('lxcs-img-'), 'image');
    writeFileSync(image, gzipSync(await tarBuffer([{ name: 'etc/', type: 'directory' }, { name: 'etc/passwd', type: 'link', linkname: '../../../etc/shadow' }])));
    const err = await createStemcell(host, image, {}, {}).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect(err!.message).toContain('entry "etc/passwd" is a hard link to "../../../etc/shadow", which escapes the root');
    expect(leftovers(PREFIX)).toEqual([]);
    expect(readdirSync(config.poolPath).filter((n) => n.startsWith(PREFIX))).toEqual([]);
  });

  it('refuses an image_path that does not exist before creating anything', async () => {
    await expect(createStemcell(host, '/nonexistent/lxcs-image', {}, {})).rejects.toThrow(/Cannot read stemcell image \/nonexistent\/lxcs-image: ENOENT/);
    expect(leftovers(PREFIX)).toEqual([]);
  });

  it('killed while unpacking, leaves a stemcell directory without its sidecar, which orphans lists and delete_stemcell removes', async () => {
    // A rootfs of many files (slow enough to be killed in the middle), gzipped.
    const src = scratchDir('lxcs-many-');
    for (let d = 0; d < 40; d++) {
      mkdirSync(join(src, `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(join(src, `d${d}`, `f${f}`), `${d}/${f}\n`.repeat(50));
    }
    const image = join(scratchDir('lxcs-img-'), 'image');
    await rootfsTgzFromDirectory(src, image);
    const child = join(scratchDir('lxcs-child-'), 'child.mjs');
    await build({ entryPoints: [join(REPO_ROOT, 'test/helpers/lxc-import-child.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: child, logLevel: 'error',
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } });
    const before = new Set(readdirSync(config.poolPath));
    const proc = spawn(process.execPath, [child, config.path, image], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Kill once the import has started writing files into its directory.
    const started = Date.now();
    let dir: string | undefined;
    while (Date.now() - started < 60_000) {
      dir = readdirSync(config.poolPath).find((n) => !before.has(n) && /sc-[0-9a-f-]{36}$/.test(n));
      if (dir && readdirSync(join(config.poolPath, dir)).length > 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    expect(dir).toBeDefined();
    const cid = dir as StemcellCID;
    expect(volumes(config.pool)).toContain(cid);
    expect(volumes(config.pool)).not.toContain(`${cid}.meta`);
    await expect(findRootfsStemcell(host, cid)).rejects.toThrow(/was not imported completely/);
    const report = await findOrphans(loadConfig(config.path), createLogger('warn'), { delete: false, minAgeSeconds: 0 });
    expect(report.orphans).toContainEqual(expect.objectContaining({ kind: 'volume', name: cid, reason: expect.stringContaining('create_stemcell never finished') }));
    const deleting = await findOrphans(loadConfig(config.path), createLogger('warn'), { delete: true, minAgeSeconds: 0 });
    expect(deleting.failed).toEqual([]);
    expect(deleting.deleted).toContain(cid);
    expect(leftovers(PREFIX)).toEqual([]);
    expect(existsSync(join(config.poolPath, cid))).toBe(false);
  });
});

describe('delete_stemcell (lxc)', () => {
  async function stemcell(): Promise<StemcellCID> {
    const image = join(scratchDir('lxcs-img-'), 'image');
    await rootfsTgzFromDirectory(sampleRootfs(), image);
    return createStemcell(host, image, {}, {});
  }

  it('refuses while a container root in the pool names it (a create_vm before its domain exists), then deletes, idempotently', async () => {
    const cid = await stemcell();
    const vm = `${PREFIX}vm-${randomUUID()}`;
    await createDirVolume(host, `${vm}.root`);
    writeFileSync(join(config.poolPath, `${vm}.root`, 'stemcell'), `${cid}\n`);
    symlinkSync(join(config.poolPath, cid), join(config.poolPath, `${vm}.root`, 'lower'));
    const err = await deleteStemcell(host, cid).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect(err!.message).toContain(`is still the root filesystem of 1 container(s) (${vm})`);
    expect(volumes(config.pool)).toContain(`${cid}.meta`);
    // Removing the VM's root removes its link to the stemcell, never the stemcell's files.
    await deleteDirVolume(host, `${vm}.root`);
    expect(readFileSync(join(config.poolPath, cid, 'etc/hostname'), 'utf8')).toBe('container\n');
    expect(await deleteStemcell(host, cid)).toBe(true);
    expect(await deleteStemcell(host, cid)).toBe(false);
    expect(leftovers(PREFIX)).toEqual([]);
    expect(existsSync(join(config.poolPath, cid))).toBe(false);
  });

  it('refuses while any domain has a filesystem in the stemcell directory (one made by hand)', async () => {
    const cid = await stemcell();
    const xml = join(scratchDir('lxcs-dom-'), 'dom.xml');
    writeFileSync(xml, `<domain type='lxc'><name>${PREFIX}hand</name><memory unit='MiB'>64</memory><os><type>exe</type><init>/sbin/init</init></os>
      <devices><filesystem type='mount'><source dir='${join(config.poolPath, cid)}'/><target dir='/'/></filesystem></devices></domain>`);
    execFileSync('virsh', ['-q', '-c', 'lxc:///', 'define', xml]);
    try {
      await expect(deleteStemcell(host, cid)).rejects.toThrow(`(${PREFIX}hand)`);
    } finally {
      virsh('undefine', `${PREFIX}hand`);
    }
    expect(await deleteStemcell(host, cid)).toBe(true);
  });

  it('leaves a qemu stemcell in the same pool alone, and does not take it for a root filesystem', async () => {
    const cid = `${PREFIX}sc-${randomUUID()}` as StemcellCID;
    await createVolume(host, { name: cid, capacityBytes: 1024n * 1024n, format: 'raw' });
    await writeSidecar(host, cid, { kind: 'stemcell', format: 'qcow2', virtual_size: '1048576' });
    await expect(findRootfsStemcell(host, cid)).rejects.toThrow(/is a qcow2 disk image \(a qemu stemcell\), not a container root filesystem/);
    await expect(deleteStemcell(host, cid)).rejects.toThrow(/the lxc backend leaves it alone/);
    expect(volumes(config.pool)).toEqual([cid, `${cid}.meta`].sort());
    await deleteVolumeIfExists(host, cid);
    await deleteVolumeIfExists(host, `${cid}.meta`);
  });

  it('answers false for a CID that is not a stemcell of this CPI, touching nothing', async () => {
    expect(await deleteStemcell(host, `${PREFIX}sc-not-a-uuid` as StemcellCID)).toBe(false);
    expect(await deleteStemcell(host, `other-sc-${randomUUID()}` as StemcellCID)).toBe(false);
  });
});
