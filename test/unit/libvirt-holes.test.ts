// HoleFinder turns a byte stream into data pieces and holes for sparse uploads. What
// matters: the pieces rebuild the input exactly, whatever the chunking; long zero runs
// become holes; short ones stay data.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HoleFinder, type Piece } from '../../src/libvirt/holes.js';

const BLOCK = 16;
const MIN = 64;

function run(chunks: Buffer[], finder = new HoleFinder(MIN, BLOCK)): Piece[] {
  const out: Piece[] = [];
  for (const c of chunks) out.push(...finder.push(c));
  out.push(...finder.end());
  return out;
}

function rebuild(pieces: Piece[]): Buffer {
  return Buffer.concat(pieces.map((p) => ('hole' in p ? Buffer.alloc(p.hole) : p.data)));
}

/** A buffer of zero and non-zero runs, and a way to cut it into chunks. */
const layout = fc.array(
  fc.record({ zero: fc.boolean(), len: fc.integer({ min: 1, max: 300 }) }),
  { minLength: 1, maxLength: 30 },
).map((runs) => Buffer.concat(runs.map((r) => (r.zero ? Buffer.alloc(r.len) : Buffer.alloc(r.len, 0xa5)))));
const cuts = fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 50 });

function chunked(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

describe('HoleFinder', () => {
  it('rebuilds the input exactly, for any content and any chunking', () => {
    fc.assert(fc.property(layout, cuts, (buf, sizes) => {
      expect(rebuild(run(chunked(buf, sizes))).equals(buf)).toBe(true);
    }), { numRuns: 500 });
  });

  it('makes holes only of zeros, at least minHole long, never two in a row', () => {
    fc.assert(fc.property(layout, cuts, (buf, sizes) => {
      const pieces = run(chunked(buf, sizes));
      let off = 0;
      let lastWasHole = false;
      for (const p of pieces) {
        if ('hole' in p) {
          expect(p.hole).toBeGreaterThanOrEqual(MIN);
          expect(buf.subarray(off, off + p.hole).every((b) => b === 0)).toBe(true);
          expect(lastWasHole).toBe(false);
          off += p.hole;
          lastWasHole = true;
        } else {
          expect(p.data.length).toBeGreaterThan(0);
          off += p.data.length;
          lastWasHole = false;
        }
      }
      expect(off).toBe(buf.length);
    }), { numRuns: 500 });
  });

  it('leaves no whole aligned zero blocks worth a hole inside the data', () => {
    // Any minHole + block bytes of zeros hold at least minHole bytes of whole aligned
    // blocks, which must have gone into a hole.
    fc.assert(fc.property(layout, cuts, (buf, sizes) => {
      let off = 0;
      for (const p of run(chunked(buf, sizes))) {
        if ('hole' in p) { off += p.hole; continue; }
        let zeros = 0;
        for (const b of p.data) {
          zeros = b === 0 ? zeros + 1 : 0;
          expect(zeros).toBeLessThan(MIN + 2 * BLOCK);
        }
        off += p.data.length;
      }
    }), { numRuns: 300 });
  });

  it('turns a leading, a middle and a trailing zero run into holes', () => {
    const data = Buffer.alloc(40, 1);
    const buf = Buffer.concat([Buffer.alloc(128), data, Buffer.alloc(96), data, Buffer.alloc(80)]);
    const pieces = run([buf]);
    expect(pieces.map((p) => ('hole' in p ? `hole ${p.hole}` : `data ${p.data.length}`))).toEqual([
      // 40 bytes of data end mid-block: that block's other 8 bytes are zeros sent as data
      'hole 128', 'data 48', 'hole 80', 'data 48', 'hole 80',
    ]);
  });

  it('keeps a zero run shorter than minHole as data, also across chunks', () => {
    const buf = Buffer.concat([Buffer.alloc(16, 2), Buffer.alloc(48), Buffer.alloc(16, 3)]);
    const pieces = run([buf.subarray(0, 24), buf.subarray(24, 50), buf.subarray(50)]);
    expect(pieces.every((p) => 'data' in p)).toBe(true);
    expect(rebuild(pieces).equals(buf)).toBe(true);
  });

  it('does not copy the data: pieces are views of the chunks', () => {
    const chunk = Buffer.alloc(256, 9);
    const [piece] = run([chunk]);
    expect(piece && 'data' in piece && piece.data.buffer).toBe(chunk.buffer);
  });

  it('refuses a minHole smaller than a block', () => {
    expect(() => new HoleFinder(8, 16)).toThrow(RangeError);
  });
});
