// Reading tar streams with tar-stream: one entry at a time, the next header read only
// once the previous entry was handled, so memory stays at a few chunks however large the
// archive. Compression is recognised from the first bytes, not from a file name.
import { createReadStream } from 'node:fs';
import { readFileHead } from '../../util/file-head.js';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';

export type Compression = 'gzip' | 'none';

const READ_SIZE = 1024 * 1024;
const INFLATE_CHUNK = 256 * 1024;

export class UnreadableArchive extends Error {}

/** An entry as handed to a visitor: its header, its data, and where the data starts in the (decompressed) stream. */
export interface TarEntry {
  header: Header;
  body: EntryBody;
  /** where the entry's data starts */
  dataOffset: number;
}

/** An entry's data (a streamx readable: iterate it, or resume() to skip it). */
export type EntryBody = AsyncIterable<Buffer> & { resume(): unknown };

/** gzip or nothing; other compressors are named so the error says what to do. */
export function compressionOf(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) throw new UnreadableArchive('it is zstd-compressed; expected a plain or gzip-compressed tar');
  if (head.subarray(0, 3).toString('latin1') === 'BZh') throw new UnreadableArchive('it is bzip2-compressed; expected a plain or gzip-compressed tar');
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) throw new UnreadableArchive('it is xz-compressed; expected a plain or gzip-compressed tar');
  return 'none';
}

export async function fileCompression(path: string): Promise<Compression> {
  return compressionOf(await readFileHead(path, 6));
}

/** The file's bytes from `start` (inclusive) to `end` (exclusive), or to its end. */
export function fileStream(path: string, start = 0, end?: number): Readable {
  return createReadStream(path, { start, ...(end !== undefined ? { end: end - 1 } : {}), highWaterMark: READ_SIZE });
}

/** A stream of tar bytes, decompressing when its first bytes say gzip. */
export async function* decompressed(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  // A chunk boundary may fall inside the magic bytes: gather enough to decide.
  const headChunks: Buffer[] = [];
  let headLen = 0;
  while (headLen < 6) {
    const r = await it.next();
    if (r.done) break;
    headChunks.push(r.value);
    headLen += r.value.length;
  }
  if (headLen === 0) return;
  const head = Buffer.concat(headChunks);
  const all = (async function* () {
    yield head;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  })();
  if (compressionOf(head) === 'none') {
    yield* all;
    return;
  }
  const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK });
  const feeding = pipeline(all, gunzip);
  feeding.catch(() => undefined); // its error reaches us through gunzip
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
    await feeding;
  } finally {
    gunzip.destroy();
    await it.return?.();
  }
}

/**
 * Calls `visit` for each entry in order. Returning 'stop' ends the walk early (the rest
 * of the input is not read). Errors of the input, of gunzip and of tar parsing reject,
 * a truncated archive included. tar-stream's streams are streamx streams, which Node's
 * pipeline() does not fully understand (it took an extractor that failed at its end for
 * one that finished): they are fed and watched through their own events here.
 */
export async function eachEntry(input: AsyncIterable<Buffer>, visit: (e: TarEntry) => Promise<void | 'stop'>): Promise<void> {
  const ex = tarExtract();
  let failure: Error | undefined;
  const ended = new Promise<void>((resolve, reject) => {
    ex.on('error', (e: Error) => reject((failure = e)));
    ex.on('finish', () => resolve());
    ex.on('close', () => reject(failure ?? new Error('the tar reader closed before the end of the archive')));
  });
  ended.catch(() => undefined);
  const source = decompressed(input);
  let stopped = false;
  const feeding = (async () => {
    for await (const chunk of source) {
      if (stopped || failure) return;
      if (!ex.write(chunk)) await writable(ex);
    }
    (ex as unknown as { end(): void }).end();
  })();
  feeding.catch((e: Error) => ex.destroy(e));
  try {
    for await (const entry of ex) {
      // tar-stream records where the data begins (after any pax / GNU long-name headers).
      const dataOffset = (entry.header as { byteOffset?: number }).byteOffset ?? entry.offset + 512;
      // An entry cut short fails in its reader as "destroyed": the extractor knows why.
      const r = await visit({ header: entry.header, body: entry as unknown as EntryBody, dataOffset }).catch((e: unknown) => {
        throw failure ?? e;
      });
      entry.resume();
      if (r === 'stop') {
        stopped = true;
        break;
      }
    }
    if (!stopped) await Promise.all([feeding, ended]);
  } catch (e) {
    throw failure ?? e;
  } finally {
    stopped = true;
    ex.destroy();
    await source.return(undefined).catch(() => undefined);
  }
}

/** Resolves when the extractor wants more (or is closed): one listener pair at a time. */
function writable(ex: ReturnType<typeof tarExtract>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      ex.off('drain', done);
      ex.off('close', done);
      resolve();
    };
    ex.on('drain', done);
    ex.on('close', done);
  });
}
