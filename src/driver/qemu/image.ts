// Reading a stemcell image as a stream: `image` is a gzipped tarball holding
// `root.img` (openstack-qcow2 / openstack-raw). Nothing is extracted to disk and at
// most a few chunks are in memory: gunzip → tar → the upload's backpressure.
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { Readable, pipeline, type Writable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import { CloudError } from '../../errors.js';
import { notRegularFile } from '../../util/regular-file.js';

export type ImageFormat = 'qcow2' | 'raw';

export interface RootImage {
  format: ImageFormat;
  /** bytes of root.img in the tarball (what is uploaded) */
  fileSize: number;
  /** the disk size the guest sees (qcow2 header; the file size for raw) */
  virtualSize: bigint;
  /** root.img's bytes, starting at 0 */
  stream: Readable;
  /** settles when the tarball has been read to the end or abandoned */
  close(): void;
}

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);
const VMDK_MAGIC = Buffer.from('KDMV');
const HEAD = 512;
// Inflating is the slow part of an import (one deflate stream, one core), and every zlib
// call is a round trip between zlib's thread and this one (~60 µs here, whatever its
// size): 1 MiB reads make a quarter of the calls of 256 KiB ones. zlib allocates a new
// output buffer per INFLATE_CHUNK bytes, which only a garbage collection frees (Node's
// zlib takes no buffers from us): on a 3 GiB stemcell 1 MiB chunks took peak RSS to
// 127–133 MB and 512 KiB to 109–127 MB, 256 KiB stays at 107–115 MB, all at the same
// speed within this VM's noise (bench/create-stemcell.mjs, docs/benchmarks.md).
const READ_SIZE = 1024 * 1024;
const INFLATE_CHUNK = 256 * 1024;

/**
 * Writes the file into `sink` from two buffers used in turn: one is read into while zlib
 * inflates the other, and a buffer is refilled only once zlib is done with it (its write
 * callback). A read stream would allocate a new buffer per read, and those piled up
 * until a garbage collection (docs/benchmarks.md). Ends `sink`, or destroys it with the
 * error; stops when `sink` is destroyed.
 */
export async function feed(path: string, sink: Writable): Promise<void> {
  const file = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)];
    const consumed: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
    for (let i = 0; ; i ^= 1) {
      await consumed[i];
      if (sink.destroyed) return;
      const buf = buffers[i]!;
      const { bytesRead } = await file.read(buf, 0, buf.length, null);
      if (sink.destroyed) return;
      if (bytesRead === 0) {
        sink.end();
        return;
      }
      // A destroyed sink calls back with an error: the loop then sees `destroyed`.
      consumed[i] = new Promise((resolve) => sink.write(buf.subarray(0, bytesRead), () => resolve()));
    }
  } finally {
    await file.close();
  }
}

/** Opens `imagePath` and positions a stream at root.img, having read its first bytes to learn its format. */
export async function openRootImage(imagePath: string): Promise<RootImage> {
  if (imagePath.includes('\0')) throw new CloudError(`Invalid image_path: got ${JSON.stringify(imagePath)}, expected a file path (it holds a NUL byte)`);
  await refuseNonRegular(imagePath);
  const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK });
  const tar = tarExtract();
  const fail = (e: unknown): CloudError =>
    e instanceof CloudError ? e : new CloudError(`Cannot read stemcell image ${imagePath}: ${(e as Error).message} (expected a gzipped tarball holding root.img)`);

  // A failure anywhere in file → gunzip → tar (a truncated or corrupt image) must end
  // the root.img stream too, or the upload reading it would wait forever: pipeline()
  // reports it once (the file's errors through gunzip), and the entry is destroyed with
  // the error.
  let entryStream: { destroy(err?: Error): void } | undefined;
  let failFound: ((e: Error) => void) | undefined;
  pipeline(gunzip, tar as unknown as NodeJS.WritableStream, (err) => {
    if (!err) return;
    const e = fail(err);
    failFound?.(e);
    entryStream?.destroy(e);
  });
  feed(imagePath, gunzip).catch((e: Error) => gunzip.destroy(e));
  const found = new Promise<{ size: number; entry: AsyncIterable<Buffer> }>((resolve, reject) => {
    failFound = reject;
    tar.on('entry', (header, entry, next) => {
      const name = header.name.replace(/^(\.\/)+/, '');
      if (name === 'root.img' && header.type === 'file') {
        entryStream = entry;
        resolve({ size: header.size ?? 0, entry: entry as unknown as AsyncIterable<Buffer> });
        entry.on('end', next);
      } else {
        entry.on('end', next);
        entry.resume();
      }
    });
    tar.on('finish', () => reject(new CloudError(`Stemcell image ${imagePath} holds no root.img (expected the openstack-qcow2/openstack-raw layout)`)));
  });
  const close = () => {
    gunzip.destroy();
    tar.destroy();
  };

  let size: number;
  let iterator: AsyncIterator<Buffer>;
  try {
    const r = await found;
    size = r.size;
    iterator = r.entry[Symbol.asyncIterator]();
  } catch (e) {
    close();
    throw e;
  }

  // Read the head to learn the format; then replay it in front of the rest.
  const headChunks: Buffer[] = [];
  let headLen = 0;
  // Errors of the file, gunzip or tar reach us through the entry: name the image in them.
  const next = async (): Promise<IteratorResult<Buffer>> => {
    try {
      return await iterator.next();
    } catch (e) {
      throw fail(e);
    }
  };
  while (headLen < HEAD) {
    let r: IteratorResult<Buffer>;
    try {
      r = await next();
    } catch (e) {
      close();
      throw e;
    }
    if (r.done) break;
    headChunks.push(r.value);
    headLen += r.value.length;
  }
  const head = Buffer.concat(headChunks);
  if (head.subarray(0, 4).equals(VMDK_MAGIC)) {
    close();
    throw new CloudError(`Stemcell image ${imagePath}: root.img is a VMDK image; the qemu backend imports qcow2 or raw images (openstack-qcow2, openstack-raw)`);
  }
  const format: ImageFormat = head.subarray(0, 4).equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  const virtualSize = format === 'qcow2' ? head.readBigUInt64BE(24) : BigInt(size);
  if (size === 0) {
    close();
    throw new CloudError(`Stemcell image ${imagePath}: root.img is empty`);
  }

  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    for (;;) {
      const r = await next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { format, fileSize: size, virtualSize, stream: Readable.from(replay(), { objectMode: false }), close };
}

/** A FIFO would make create_stemcell wait forever for a writer, a device never end. */
async function refuseNonRegular(imagePath: string): Promise<void> {
  let kind: string | undefined;
  try {
    kind = await notRegularFile(imagePath);
  } catch (e) {
    throw new CloudError(`Cannot read stemcell image ${imagePath}: ${(e as Error).message} (expected a gzipped tarball holding root.img)`);
  }
  if (kind) throw new CloudError(`Invalid image_path: ${JSON.stringify(imagePath)} is ${kind}, expected a regular file (a gzipped tarball holding root.img)`);
}
