// Unpacks a container stemcell's image into a directory: a root filesystem tar (the
// warden / general-tar stemcell's `image`, usually gzipped) or an OCI image archive
// (an `oci-layout` tar or a `docker save` tar, plain or gzipped) whose layers are applied
// in order with their whiteouts. Which one it is comes from the archive's first entry.
// Everything is streamed; an OCI archive is read once to find its JSON documents and
// then once per layer (plain archives: from the layer's offset; gzipped ones: in passes).
import { createHash, type Hash } from 'node:crypto';
import { CloudError } from '../../errors.js';
import { notRegularFile } from '../../util/regular-file.js';
import { EntryRefused } from './entry-path.js';
import { BadImageIndex, dockerSaveLayers, ociArch, ociLayers, type ImageLayers, type LayerRef } from './oci-index.js';
import { RootfsWriter } from './rootfs-writer.js';
import { UnreadableArchive, eachEntry, fileCompression, fileStream, type EntryBody } from './tar-input.js';

export type ArchiveKind = 'rootfs' | 'oci-layout' | 'docker-save';

export interface Unpacked {
  kind: ArchiveKind;
  /** OCI layers applied (1 for a rootfs tar) */
  layers: number;
}

const EXPECTED = 'a tar of a root filesystem (warden-tar, general-tar) or an OCI image archive (oci-tar: an oci-layout or docker save tar), plain or gzipped';

/** Refuses an image_path that cannot be an archive, before anything is created for it. */
export async function checkImagePath(imagePath: string): Promise<void> {
  if (imagePath.includes('\0')) throw new CloudError(`Invalid image_path: got ${JSON.stringify(imagePath)}, expected a file path (it holds a NUL byte)`);
  const kind = await notRegularFile(imagePath).catch((e: Error) => {
    throw new CloudError(`Cannot read stemcell image ${imagePath}: ${e.message} (expected ${EXPECTED})`);
  });
  if (kind) throw new CloudError(`Invalid image_path: ${JSON.stringify(imagePath)} is ${kind}, expected a regular file (${EXPECTED})`);
}

/** Unpacks `imagePath` into the existing directory `dest`. Nothing is cleaned up on failure: the caller owns `dest`. */
export async function unpackImage(imagePath: string, dest: string, opts: { arch?: string } = {}): Promise<Unpacked> {
  await checkImagePath(imagePath);
  let layer = '';
  try {
    const writer = new RootfsWriter(dest);
    if ((await detect(imagePath)) === 'rootfs') {
      await eachEntry(fileStream(imagePath), async (e) => writer.entry(e.header, e.body));
      await writer.finish();
      return { kind: 'rootfs', layers: 1 };
    }
    const image = await readImageIndex(imagePath, ociArch(opts.arch ?? process.arch));
    await applyLayers(imagePath, image, writer, (l, i) => {
      layer = ` (layer ${i + 1} of ${image.layers.length}, ${l.path})`;
    });
    await writer.finish();
    return { kind: image.kind, layers: image.layers.length };
  } catch (e) {
    throw asCloudError(e, imagePath, layer, dest);
  }
}

function asCloudError(e: unknown, imagePath: string, layer: string, dest: string): CloudError {
  if (e instanceof CloudError) return e;
  // Writing failed (no space left, the directory removed meanwhile): not the archive's fault.
  const path = (e as NodeJS.ErrnoException).path;
  if (typeof path === 'string' && (path === dest || path.startsWith(`${dest}/`))) {
    return new CloudError(`Cannot unpack stemcell image ${imagePath}${layer} into ${dest}: ${(e as Error).message}`);
  }
  if (e instanceof EntryRefused) return new CloudError(`Stemcell image ${imagePath}${layer}: ${e.message}; the image is refused`);
  if (e instanceof BadImageIndex) return new CloudError(`Stemcell image ${imagePath} is not a usable OCI image archive: ${e.message}`);
  if (e instanceof UnreadableArchive) return new CloudError(`Cannot read stemcell image ${imagePath}${layer}: ${e.message}`);
  return new CloudError(`Cannot read stemcell image ${imagePath}${layer}: ${(e as Error).message} (expected ${EXPECTED})`);
}

const IMAGE_TOP = /^(oci-layout|index\.json|blobs|manifest\.json|repositories|[0-9a-f]{64}(\.json)?)$/;

/** An image archive starts with its layout files or blobs; a root filesystem with `bin`, `etc`, …. */
async function detect(imagePath: string): Promise<'rootfs' | 'image'> {
  let found: 'rootfs' | 'image' | undefined;
  await eachEntry(fileStream(imagePath), async ({ header }) => {
    const top = header.name.split('/').find((p) => p !== '' && p !== '.');
    if (top === undefined) return; // the root directory entry `./`
    found = IMAGE_TOP.test(top) ? 'image' : 'rootfs';
    return 'stop';
  });
  if (!found) throw new UnreadableArchive(`it holds no entries (expected ${EXPECTED})`);
  return found;
}

interface Member {
  offset: number;
  size: number;
}

// Manifests, configs and indexes are small; layers are not read here.
const SMALL_BLOB = 1024 * 1024;
const SMALL_TOTAL = 64 * 1024 * 1024;

/** One pass over the archive: where each member is, and the text of the small ones. */
async function readImageIndex(imagePath: string, arch: string): Promise<ImageLayers & { members: Map<string, Member> }> {
  const members = new Map<string, Member>();
  const small = new Map<string, string>();
  let kept = 0;
  await eachEntry(fileStream(imagePath), async ({ header, body, dataOffset }) => {
    if (header.type !== 'file' && header.type !== 'contiguous-file') return;
    const name = memberName(header.name);
    members.set(name, { offset: dataOffset, size: header.size });
    if (header.size <= SMALL_BLOB && kept + header.size <= SMALL_TOTAL && (!name.includes('/') || name.startsWith('blobs/'))) {
      small.set(name, (await readAll(body)).toString('utf8'));
      kept += header.size;
    }
  });
  let image: ImageLayers;
  if (small.has('index.json')) image = ociLayers(small.get('index.json')!, (p) => small.get(p), arch);
  else if (small.has('manifest.json')) image = dockerSaveLayers(small.get('manifest.json')!);
  else throw new BadImageIndex('it holds neither index.json (oci-layout) nor manifest.json (docker save)');
  if (image.layers.length === 0) throw new BadImageIndex('the image has no layers');
  for (const l of image.layers) {
    const m = members.get(l.path);
    if (!m) throw new BadImageIndex(`layer ${l.path} is named by the manifest but not in the archive`);
    if (l.size !== undefined && l.size !== m.size) throw new BadImageIndex(`layer ${l.path} has ${m.size} bytes, its descriptor says ${l.size}`);
  }
  return { ...image, members };
}

async function applyLayers(imagePath: string, image: ImageLayers & { members: Map<string, Member> }, writer: RootfsWriter, starting: (l: LayerRef, i: number) => void): Promise<void> {
  const apply = async (i: number, blob: AsyncIterable<Buffer>) => {
    const l = image.layers[i]!;
    starting(l, i);
    const hash = l.digest ? createHash(l.digest.split(':')[0]!) : undefined;
    writer.beginLayer();
    await eachEntry(hash ? hashing(blob, hash) : blob, async (e) => writer.entry(e.header, e.body));
    writer.endLayer();
    if (hash && `${l.digest!.split(':')[0]}:${hash.digest('hex')}` !== l.digest) {
      throw new UnreadableArchive(`the layer's content does not match its digest ${l.digest}: the archive is corrupt`);
    }
  };
  if ((await fileCompression(imagePath)) === 'none') {
    // A plain archive: each layer is read where it lies.
    for (let i = 0; i < image.layers.length; i++) {
      const m = image.members.get(image.layers[i]!.path)!;
      await apply(i, fileStream(imagePath, m.offset, m.offset + m.size));
    }
    return;
  }
  // A gzipped archive cannot be entered in the middle: each pass applies the layers that
  // come next in the order they lie (usually all of them in the first pass).
  let next = 0;
  while (next < image.layers.length) {
    const before = next;
    await eachEntry(fileStream(imagePath), async ({ header, body }) => {
      if (next < image.layers.length && memberName(header.name) === image.layers[next]!.path) await apply(next++, body);
      return next === image.layers.length ? 'stop' : undefined;
    });
    if (next === before) throw new BadImageIndex(`layer ${image.layers[next]!.path} could not be found on a second reading of the archive`);
  }
}

function memberName(name: string): string {
  return name.split('/').filter((p) => p !== '' && p !== '.').join('/');
}

async function* hashing(source: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

async function readAll(body: EntryBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}
