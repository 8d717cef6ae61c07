// create_stemcell reads the director's tarball into two buffers it reuses, instead of a
// read stream's new buffer per read: those piled up until a garbage collection and made
// most of the import's peak RSS (docs/benchmarks.md).
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { feed } from '../../src/driver/qemu/image.js';
import { scratchDir } from '../helpers/scratch.js';

/** A sink that takes its time with each chunk, as zlib does, and copies what it got. */
function slowSink(delayMs: number, opts: { destroyAfter?: number } = {}) {
  const backing = new Set<ArrayBuffer>();
  const copies: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      backing.add(chunk.buffer as ArrayBuffer);
      copies.push(Buffer.from(chunk));
      if (opts.destroyAfter !== undefined && copies.length >= opts.destroyAfter) sink.destroy(new Error('sink gave up'));
      setTimeout(cb, delayMs);
    },
  });
  const finished = new Promise<void>((resolve, reject) => sink.on('finish', resolve).on('error', reject));
  return { sink, backing, copies, finished };
}

describe('feed (the tarball reader of create_stemcell)', () => {
  it('delivers the file unchanged through two reused buffers', async () => {
    const data = randomBytes(7 * 1024 * 1024 + 12345);
    const path = join(scratchDir('t-perf-feed-'), 'image');
    writeFileSync(path, data);
    const s = slowSink(2);
    await feed(path, s.sink);
    await s.finished;
    expect(Buffer.concat(s.copies).equals(data)).toBe(true);
    expect(s.copies.length).toBeGreaterThanOrEqual(8);
    expect(s.backing.size).toBeLessThanOrEqual(2);
  });

  it('stops reading when the sink is destroyed', async () => {
    const path = join(scratchDir('t-perf-feed-'), 'image');
    writeFileSync(path, randomBytes(6 * 1024 * 1024));
    const s = slowSink(1, { destroyAfter: 2 });
    s.finished.catch(() => {});
    await feed(path, s.sink);
    expect(s.sink.destroyed).toBe(true);
    expect(s.copies.length).toBeLessThanOrEqual(3);
  });

  it('rejects with the open error of a missing file', async () => {
    await expect(feed('/nonexistent/t-perf-image', slowSink(0).sink)).rejects.toThrow(/ENOENT.*t-perf-image/);
  });
});
