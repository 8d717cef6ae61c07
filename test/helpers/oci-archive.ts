// Builds tar archives in tests (tar-stream's packer): root filesystem tars, malicious
// ones, and OCI image archives (oci-layout or docker save, layers plain or gzipped) —
// including one made from a directory on disk, split into several layers with a
// whiteout, for container stemcells built from a real rootfs.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip, gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';

export type TestEntry = Partial<Header> & { name: string; data?: string | Buffer };

const DEFAULTS = { uid: 0, gid: 0, mtime: new Date('2024-01-02T03:04:05Z') };

/** Entries → a tar in memory. Names and links are written exactly as given (malicious ones too). */
export async function tarBuffer(entries: TestEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const out = collect(pack as unknown as AsyncIterable<Buffer>);
  for (const e of entries) {
    const { data, ...h } = e;
    const type = h.type ?? 'file';
    const body = data === undefined ? undefined : Buffer.from(data);
    const header = { ...DEFAULTS, mode: type === 'directory' ? 0o755 : 0o644, ...h, type, ...(body ? { size: body.length } : {}) };
    await new Promise<void>((resolve, reject) => {
      if (body) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      else endSink(pack.entry(header, (err?: Error | null) => (err ? reject(err) : resolve())));
    });
  }
  pack.finalize();
  return out;
}

/** tar-stream's sinks are streamx writables, typed without a zero-argument end(). */
function endSink(sink: unknown): void {
  (sink as { end(): void }).end();
}

async function collect(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

export interface OciOptions {
  format?: 'oci-layout' | 'docker-save';
  /** gzip each layer blob (default true) */
  gzipLayers?: boolean;
  /** write the layer blobs in reverse order in the archive (OCI tars list blobs in any order) */
  reverseBlobs?: boolean;
}

/** An image archive whose layers are the given tars (bottom first). */
export async function ociArchive(layers: Buffer[], opts: OciOptions = {}): Promise<Buffer> {
  const blobs = layers.map((l) => (opts.gzipLayers === false ? l : gzipSync(l)));
  const digest = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(digest) }, config: {} }));
  const entries: TestEntry[] = [];
  const order = opts.reverseBlobs ? [...blobs].reverse() : blobs;
  if ((opts.format ?? 'oci-layout') === 'docker-save') {
    const names = blobs.map((b) => `${digest(b).slice(7)}/layer.tar`);
    for (const b of order) entries.push({ name: `${digest(b).slice(7)}/`, type: 'directory' }, { name: `${digest(b).slice(7)}/layer.tar`, data: b });
    entries.push({ name: `${digest(config).slice(7)}.json`, data: config });
    entries.push({ name: 'manifest.json', data: JSON.stringify([{ Config: `${digest(config).slice(7)}.json`, RepoTags: ['test:latest'], Layers: names }]) });
    return tarBuffer(entries);
  }
  const layerType = opts.gzipLayers === false ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip';
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest(config), size: config.length },
    layers: blobs.map((b) => ({ mediaType: layerType, digest: digest(b), size: b.length })),
  }));
  const index = { schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest(manifest), size: manifest.length }] };
  entries.push({ name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' }, { name: 'blobs/', type: 'directory' }, { name: 'blobs/sha256/', type: 'directory' });
  for (const b of [...order, config, manifest]) entries.push({ name: `blobs/sha256/${digest(b).slice(7)}`, data: b });
  entries.push({ name: 'index.json', data: JSON.stringify(index) });
  return tarBuffer(entries);
}

/**
 * Packages the directory `dir` as an OCI image archive file `out` of three layers: the
 * tree plus a decoy `etc/oci-whiteout-decoy`; a layer deleting the decoy with a
 * whiteout; a layer adding `etc/oci-layer-3` ("layer 3\n"). Unpacked, it is `dir` plus
 * that one file. Owners, modes, times, symlinks and hard links of `dir` are kept.
 */
export async function ociArchiveFromDirectory(dir: string, out: string, opts: Omit<OciOptions, 'reverseBlobs'> = {}): Promise<void> {
  const tree = await tarOfDirectory(dir);
  const layer1 = await appendEntries(tree, [{ name: 'etc/oci-whiteout-decoy', data: 'removed by layer 2\n' }]);
  const layer2 = await tarBuffer([{ name: 'etc/', type: 'directory' }, { name: 'etc/.wh.oci-whiteout-decoy', data: '' }]);
  const layer3 = await tarBuffer([{ name: 'etc/', type: 'directory' }, { name: 'etc/oci-layer-3', data: 'layer 3\n' }]);
  const archive = await ociArchive([layer1, layer2, layer3], opts);
  await pipeline([archive], createWriteStream(out));
}

/** A gzipped rootfs tar of `dir` (the warden stemcell's `image`) written to `out`. */
export async function rootfsTgzFromDirectory(dir: string, out: string): Promise<void> {
  await pipeline([await tarOfDirectory(dir)], createGzip(), createWriteStream(out));
}

async function appendEntries(tar: Buffer, more: TestEntry[]): Promise<Buffer> {
  // Drop the two zero blocks that end `tar`, then add the entries as a tar of their own.
  let end = tar.length;
  while (end >= 512 && tar.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
  return Buffer.concat([tar.subarray(0, end), await tarBuffer(more)]);
}

/** A tar of a directory tree, in memory (test rootfs trees are small). */
export async function tarOfDirectory(dir: string): Promise<Buffer> {
  const pack = tarPack();
  const out = collect(pack as unknown as AsyncIterable<Buffer>);
  const seen = new Map<string, string>();
  const add = (header: Header, body?: AsyncIterable<Buffer>) =>
    new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      if (body) pipeline(body, sink).catch(reject);
      else endSink(sink);
    });
  const walk = async (rel: string): Promise<void> => {
    const abs = rel ? join(dir, rel) : dir;
    const st = await lstat(abs);
    const base = { name: rel ? rel : './', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime, size: 0, linkname: '', uname: '', gname: '', devmajor: 0, devminor: 0 };
    const key = `${st.dev}:${st.ino}`;
    if (!st.isDirectory() && st.nlink > 1 && seen.has(key)) return add({ ...base, type: 'link', linkname: seen.get(key)! });
    if (!st.isDirectory()) seen.set(key, rel);
    if (st.isDirectory()) {
      await add({ ...base, name: rel ? `${rel}/` : './', type: 'directory' });
      for (const child of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${child}` : child);
    } else if (st.isSymbolicLink()) await add({ ...base, type: 'symlink', linkname: await readlink(abs) });
    else if (st.isFile()) await add({ ...base, type: 'file', size: st.size }, createReadStream(abs));
    else if (st.isCharacterDevice() || st.isBlockDevice()) {
      await add({ ...base, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: Math.floor(st.rdev / 256) & 0xfff, devminor: st.rdev & 0xff });
    } else if (st.isFIFO()) await add({ ...base, type: 'fifo' });
  };
  await walk('');
  pack.finalize();
  return out;
}
