// The LXC backend's stemcell unpacker: archives are built here (tar-stream's packer),
// unpacked into a scratch directory, and the resulting tree is read back with lstat.
// Malicious archives must be refused with an error naming the entry, and must leave
// nothing outside the root.
import { describe, expect, it } from 'vitest';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import { unpackImage } from '../../src/driver/lxc/rootfs-archive.js';
import { CloudError } from '../../src/errors.js';
import { ociArchive, ociArchiveFromDirectory, tarBuffer, type TestEntry } from '../helpers/oci-archive.js';
import { scratchDir } from '../helpers/scratch.js';

function work() {
  const base = scratchDir('lxcs-unpack-');
  const root = join(base, 'root');
  const outside = join(base, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  return { base, root, outside, image: join(base, 'image') };
}

async function unpackEntries(entries: TestEntry[], gzip = true) {
  const w = work();
  const tar = await tarBuffer(entries);
  writeFileSync(w.image, gzip ? gzipSync(tar) : tar);
  return { ...w, result: await unpackImage(w.image, w.root) };
}

async function refused(entries: TestEntry[] | Buffer, ...fragments: string[]) {
  const w = work();
  writeFileSync(w.image, Buffer.isBuffer(entries) ? entries : gzipSync(await tarBuffer(entries)));
  const err = await unpackImage(w.image, w.root).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(CloudError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  expect(readdirSync(w.outside)).toEqual([]);
  return { ...w, message: (err as Error).message };
}

const mode = (p: string) => lstatSync(p).mode & 0o7777;

describe('unpackImage: a root filesystem tar (warden-tar / general-tar)', () => {
  it('keeps owners, modes (set-uid too), times, symlinks, hard links, device nodes and FIFOs', async () => {
    const mtime = new Date('2020-05-06T07:08:09Z');
    const { root, result } = await unpackEntries([
      { name: './', type: 'directory', mode: 0o755 },
      { name: './bin/', type: 'directory', mode: 0o755, mtime },
      { name: './bin/busybox', data: 'ELF', mode: 0o4755, uid: 0, gid: 0, mtime },
      { name: './bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: './bin/ls', type: 'link', linkname: './bin/busybox' },
      { name: './home/vcap/', type: 'directory', mode: 0o700, uid: 1000, gid: 1001 },
      { name: './home/vcap/.profile', data: 'PS1=x\n', mode: 0o640, uid: 1000, gid: 1001 },
      { name: './etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/UTC' },
      { name: './usr/lib/os-release', data: 'ID=test\n' },
      { name: './etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' },
      { name: './dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: './run/initctl', type: 'fifo', mode: 0o600 },
    ]);
    expect(result).toEqual({ kind: 'rootfs', layers: 1 });
    expect(readFileSync(join(root, 'bin/busybox'), 'utf8')).toBe('ELF');
    expect(mode(join(root, 'bin/busybox'))).toBe(0o4755);
    expect(lstatSync(join(root, 'bin/busybox')).mtime.toISOString()).toBe(mtime.toISOString());
    expect(lstatSync(join(root, 'bin')).mtime.toISOString()).toBe(mtime.toISOString());
    expect(readlinkSync(join(root, 'bin/sh'))).toBe('busybox');
    expect(lstatSync(join(root, 'bin/ls')).ino).toBe(lstatSync(join(root, 'bin/busybox')).ino);
    expect(lstatSync(join(root, 'home/vcap/.profile'))).toMatchObject({ uid: 1000, gid: 1001 });
    expect(mode(join(root, 'home/vcap'))).toBe(0o700);
    expect(readlinkSync(join(root, 'etc/localtime'))).toBe('/usr/share/zoneinfo/UTC');
    expect(readFileSync(join(root, 'etc/os-release'), 'utf8')).toBe('ID=test\n');
    const dev = lstatSync(join(root, 'dev/null'));
    expect(dev.isCharacterDevice() && dev.rdev).toBe(259); // makedev(1, 3)
    expect(mode(join(root, 'dev/null'))).toBe(0o666);
    expect(lstatSync(join(root, 'run/initctl')).isFIFO()).toBe(true);
    expect(mode(root)).toBe(0o755);
  });

  it('reads a plain (not gzipped) tar and creates missing parent directories', async () => {
    const { root } = await unpackEntries([{ name: 'var/vcap/bosh/agent.json', data: '{}' }], false);
    expect(readFileSync(join(root, 'var/vcap/bosh/agent.json'), 'utf8')).toBe('{}');
    expect(lstatSync(join(root, 'var/vcap')).isDirectory()).toBe(true);
  });

  it('treats .wh. names in a plain rootfs as ordinary files (whiteouts are an OCI layer thing)', async () => {
    const { root } = await unpackEntries([{ name: 'etc/.wh.passwd', data: 'x' }]);
    expect(existsSync(join(root, 'etc/.wh.passwd'))).toBe(true);
  });

  it('streams: a 256 MiB file is unpacked with bounded memory', async () => {
    const w = work();
    const size = 256 * 1024 * 1024;
    const pack = tarPack();
    const writing = pipeline(pack, createGzip({ level: 1 }), createWriteStream(w.image));
    const sink = pack.entry({ name: 'big', size, mode: 0o644 });
    const zero = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < size / zero.length; i++) if (!sink.write(zero)) await new Promise<void>((r) => sink.once('drain', () => r()));
    (sink as unknown as { end(): void }).end();
    pack.finalize();
    await writing;
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      await unpackImage(w.image, w.root);
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(lstatSync(join(w.root, 'big')).size).toBe(size);
    expect(peak - before).toBeLessThan(96 * 1024 * 1024);
  });
});

describe('unpackImage: refusals (the archive is untrusted)', () => {
  it('refuses an absolute path', async () => {
    await refused([{ name: '/etc/passwd', data: 'root::0:0::/:/bin/sh\n' }], '"/etc/passwd"', 'absolute path');
  });

  it("refuses a '..' component", async () => {
    await refused([{ name: './etc/../../outside/x', data: 'x' }], '"./etc/../../outside/x"', "'..' component");
  });

  it('refuses a hard link whose target escapes, absolute or by ..', async () => {
    await refused([{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }], '"passwd"', 'hard link to the absolute path');
    await refused([{ name: 'a/', type: 'directory' }, { name: 'a/passwd', type: 'link', linkname: '../../etc/passwd' }], '"a/passwd"', 'escapes the root');
  });

  it('refuses a relative symlink that resolves outside the root, and allows an absolute one', async () => {
    await refused([{ name: 'usr/', type: 'directory' }, { name: 'usr/x', type: 'symlink', linkname: '../../outside' }], '"usr/x"', 'resolves outside the root');
    const { root } = await unpackEntries([{ name: 'x', type: 'symlink', linkname: '/outside' }]);
    expect(readlinkSync(join(root, 'x'))).toBe('/outside');
  });

  it('never writes through a symlinked directory: a later entry under it is refused', async () => {
    const w = work();
    // An absolute link is legal in a rootfs; on the host it points at `outside`.
    const tar = await tarBuffer([
      { name: 'evil', type: 'symlink', linkname: w.outside },
      { name: 'evil/pwned', data: 'owned\n' },
    ]);
    writeFileSync(w.image, gzipSync(tar));
    const err = await unpackImage(w.image, w.root).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect(err!.message).toContain('"evil/pwned"');
    expect(err!.message).toContain('symbolic link');
    expect(readdirSync(w.outside)).toEqual([]);
  });

  it('never links through a symlinked directory: a hard link to a file under it is refused', async () => {
    const w = work();
    writeFileSync(join(w.outside, 'secret'), 'secret');
    writeFileSync(w.image, gzipSync(await tarBuffer([
      { name: 'evil', type: 'symlink', linkname: w.outside },
      { name: 'copy', type: 'link', linkname: 'evil/secret' },
    ])));
    const err = await unpackImage(w.image, w.root).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect(err!.message).toContain('"copy"');
    expect(existsSync(join(w.root, 'copy'))).toBe(false);
  });

  it('does not follow a symlink left at a file name: the file replaces the link', async () => {
    const w = work();
    writeFileSync(w.image, gzipSync(await tarBuffer([
      { name: 'f', type: 'symlink', linkname: join(w.outside, 'target') },
      { name: 'f', data: 'inside\n' },
    ])));
    await unpackImage(w.image, w.root);
    expect(readFileSync(join(w.root, 'f'), 'utf8')).toBe('inside\n');
    expect(lstatSync(join(w.root, 'f')).isFile()).toBe(true);
    expect(readdirSync(w.outside)).toEqual([]);
  });

  it('refuses unknown entry types, and archives that are not tars, with the image named', async () => {
    const { message } = await refused(Buffer.from('this is not a tar archive, just text '.repeat(40)), 'Cannot read stemcell image');
    expect(message).toContain('/image');
    await refused(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), 'zstd');
  });

  it('refuses an archive cut short in the middle of a file, plain or gzipped (and does not hang)', async () => {
    const tar = await tarBuffer([{ name: 'a', data: 'x'.repeat(5000) }, { name: 'b', data: 'y'.repeat(5000) }]);
    await refused(tar.subarray(0, 3000), 'Unexpected end of data');
    const gz = gzipSync(tar);
    await refused(gz.subarray(0, gz.length - 12), 'Cannot read stemcell image');
  });

  it('says a failure to write is one, naming the directory', async () => {
    const w = work();
    writeFileSync(w.image, gzipSync(await tarBuffer([{ name: 'etc/hostname', data: 'h' }])));
    const gone = join(w.base, 'gone');
    await expect(unpackImage(w.image, gone)).rejects.toThrow(`Cannot unpack stemcell image ${w.image} into ${gone}: ENOENT`);
  });

  it('refuses an image_path that is a FIFO', async () => {
    const w = work();
    execFileSync('mkfifo', [w.image]);
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/is a FIFO/);
  });
});

describe('unpackImage: OCI image archives (oci-tar)', () => {
  const lower = () =>
    tarBuffer([
      { name: './', type: 'directory' },
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', data: 'lower\n' },
      { name: 'etc/motd', data: 'lower motd\n' },
      { name: 'opt/', type: 'directory' },
      { name: 'opt/old/', type: 'directory' },
      { name: 'opt/old/a', data: 'a' },
      { name: 'opt/keep', data: 'k' },
      { name: 'var/', type: 'directory' },
      { name: 'var/lib/', type: 'directory' },
      { name: 'var/lib/x', data: 'x' },
      { name: 'srv', data: 'a file that becomes a directory' },
      { name: 'data/', type: 'directory' },
      { name: 'data/f', data: 'f' },
      { name: 'home/', type: 'directory' },
      { name: 'home/vcap/', type: 'directory' },
      { name: 'home/vcap/old', data: 'o' },
      { name: 'home/other', data: 'o' },
    ]);
  const upper = () =>
    tarBuffer([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', data: 'upper\n' },
      { name: 'etc/.wh.motd', data: '' },
      { name: 'opt/', type: 'directory' },
      { name: 'opt/.wh.old', data: '' },
      { name: 'var/lib/', type: 'directory' },
      { name: 'var/lib/new', data: 'n' }, // before the marker: this layer's own, kept
      { name: 'var/lib/.wh..wh..opq', data: '' },
      { name: 'srv/', type: 'directory' },
      { name: 'srv/www', data: 'w' },
      { name: 'data', type: 'symlink', linkname: '/srv' },
      { name: '.wh..wh.plnk/', type: 'directory' },
      // Written before the opaque marker of a directory above it, with no entry of its own for home/vcap/.
      { name: 'home/vcap/new', data: 'n' },
      { name: 'home/.wh..wh..opq', data: '' },
    ]);

  const expectFlattened = (root: string) => {
    expect(readFileSync(join(root, 'etc/hostname'), 'utf8')).toBe('upper\n');
    expect(existsSync(join(root, 'etc/motd'))).toBe(false);
    expect(existsSync(join(root, 'opt/old'))).toBe(false);
    expect(readFileSync(join(root, 'opt/keep'), 'utf8')).toBe('k');
    expect(readdirSync(join(root, 'var/lib'))).toEqual(['new']);
    expect(readFileSync(join(root, 'srv/www'), 'utf8')).toBe('w');
    expect(readlinkSync(join(root, 'data'))).toBe('/srv');
    expect(readdirSync(join(root, 'home'))).toEqual(['vcap']);
    expect(readdirSync(join(root, 'home/vcap'))).toEqual(['new']);
    expect(readdirSync(root).sort()).toEqual(['data', 'etc', 'home', 'opt', 'srv', 'var']);
  };

  for (const [label, opts, gzipOuter] of [
    ['oci-layout, gzipped layers', {}, false],
    ['oci-layout, plain layers, blobs in reverse order', { gzipLayers: false, reverseBlobs: true }, false],
    ['oci-layout gzipped as a whole, blobs in reverse order (read in passes)', { reverseBlobs: true }, true],
    ['docker save', { format: 'docker-save' }, false],
  ] as const) {
    it(`flattens the layers in order with whiteouts and opaque directories: ${label}`, async () => {
      const w = work();
      const archive = await ociArchive([await lower(), await upper()], opts);
      writeFileSync(w.image, gzipOuter ? gzipSync(archive) : archive);
      const result = await unpackImage(w.image, w.root);
      expect(result).toEqual({ kind: opts.format ?? 'oci-layout', layers: 2 });
      expectFlattened(w.root);
    });
  }

  it('packages a directory as three layers with a whiteout (test helper), unpacking to the same tree plus one file', async () => {
    const src = scratchDir('lxcs-src-');
    mkdirSync(join(src, 'etc'));
    mkdirSync(join(src, 'bin'));
    writeFileSync(join(src, 'etc/hostname'), 'h\n');
    writeFileSync(join(src, 'bin/busybox'), 'ELF', { mode: 0o755 });
    execFileSync('ln', ['-s', 'busybox', join(src, 'bin/sh')]);
    const w = work();
    await ociArchiveFromDirectory(src, w.image);
    expect(await unpackImage(w.image, w.root)).toEqual({ kind: 'oci-layout', layers: 3 });
    expect(readdirSync(join(w.root, 'etc')).sort()).toEqual(['hostname', 'oci-layer-3']);
    expect(readlinkSync(join(w.root, 'bin/sh'))).toBe('busybox');
    expect(mode(join(w.root, 'bin/busybox'))).toBe(0o755);
  });

  it('gives a file that replaced a lower directory its own time, not the directory\'s', async () => {
    const w = work();
    const dirTime = new Date('2001-01-01T00:00:00Z');
    const fileTime = new Date('2022-02-02T00:00:00Z');
    writeFileSync(w.image, await ociArchive([
      await tarBuffer([{ name: 'x/', type: 'directory', mtime: dirTime }]),
      await tarBuffer([{ name: 'x', data: 'now a file', mtime: fileTime }]),
    ]));
    await unpackImage(w.image, w.root);
    expect(lstatSync(join(w.root, 'x')).isFile()).toBe(true);
    expect(lstatSync(join(w.root, 'x')).mtime.toISOString()).toBe(fileTime.toISOString());
  });

  it('refuses a whiteout under a symlink a lower layer made (it would delete outside the root)', async () => {
    const w = work();
    writeFileSync(join(w.outside, 'victim'), 'v');
    const archive = await ociArchive([
      await tarBuffer([{ name: 'd', type: 'symlink', linkname: w.outside }]),
      await tarBuffer([{ name: 'd/.wh.victim', data: '' }]),
    ]);
    writeFileSync(w.image, archive);
    const err = await unpackImage(w.image, w.root).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect(err!.message).toMatch(/layer 2 of 2.*"d\/\.wh\.victim".*symbolic link/);
    expect(readdirSync(w.outside)).toEqual(['victim']);
  });

  it('refuses an opaque marker under a symlink', async () => {
    const w = work();
    writeFileSync(join(w.outside, 'victim'), 'v');
    writeFileSync(w.image, await ociArchive([
      await tarBuffer([{ name: 'd', type: 'symlink', linkname: w.outside }]),
      await tarBuffer([{ name: 'd/.wh..wh..opq', data: '' }]),
    ]));
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/"d\/\.wh\.\.wh\.\.opq" lies under "d", which is a symbolic link/);
    expect(readdirSync(w.outside)).toEqual(['victim']);
  });

  it('refuses a layer whose content does not match its digest', async () => {
    const w = work();
    const good = await tarBuffer([{ name: 'f', data: 'original' }]);
    const archive = await ociArchive([good], { gzipLayers: false });
    // Same length, different content: only the digest can tell.
    const i = archive.indexOf(Buffer.from('original'));
    archive.write('tampered', i);
    writeFileSync(w.image, archive);
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/does not match its digest sha256:[0-9a-f]{64}: the archive is corrupt/);
  });

  it('refuses a docker save of several images, and an index without this architecture', async () => {
    const w = work();
    const layer = await tarBuffer([{ name: 'f', data: 'x' }]);
    const one = await ociArchive([layer], { format: 'docker-save' });
    // Re-pack with a manifest.json naming two images.
    const two = await tarBuffer([{ name: 'manifest.json', data: JSON.stringify([{ Layers: ['a/layer.tar'] }, { Layers: ['b/layer.tar'] }]) }]);
    writeFileSync(w.image, two);
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/manifest.json describes 2 images/);
    writeFileSync(w.image, one);
    await expect(unpackImage(w.image, w.root)).resolves.toEqual({ kind: 'docker-save', layers: 1 });
    const m = (arch: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: arch } });
    writeFileSync(w.image, await tarBuffer([{ name: 'oci-layout', data: '{}' }, { name: 'index.json', data: JSON.stringify({ manifests: [m('s390x'), m('riscv64')] }) }]));
    await expect(unpackImage(w.image, w.root, { arch: 'x64' })).rejects.toThrow(/lists 2 manifests \(linux\/s390x, linux\/riscv64\) and none is for linux\/amd64/);
  });

  it('refuses an image whose manifest names a layer the archive lacks', async () => {
    const w = work();
    writeFileSync(w.image, await tarBuffer([{ name: 'manifest.json', data: JSON.stringify([{ Layers: ['abc/layer.tar'] }]) }]));
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/layer abc\/layer.tar is named by the manifest but not in the archive/);
  });

  it('refuses a malicious entry inside a layer, naming the layer', async () => {
    const w = work();
    writeFileSync(w.image, await ociArchive([await tarBuffer([{ name: 'ok', data: '1' }]), await tarBuffer([{ name: '../escape', data: 'x' }])]));
    await expect(unpackImage(w.image, w.root)).rejects.toThrow(/layer 2 of 2, blobs\/sha256\/[0-9a-f]{64}\): entry "\.\.\/escape" has a '\.\.' component/);
    expect(readdirSync(w.base).sort()).toEqual(['image', 'outside', 'root']);
  });
});
