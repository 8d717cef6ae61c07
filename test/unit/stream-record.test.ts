import { describe, expect, it } from 'vitest';
import { StreamRecord } from '../../src/hosts/verify.js';

/** A deterministic stand-in for Math.random (a fixed LCG). */
function lcg(seed = 1): () => number {
  let x = seed;
  return () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
}

const piece = (i: number, len = 1000) => ({ data: Buffer.alloc(len, (i % 250) + 1) });

describe('StreamRecord: what a moved copy is checked against', () => {
  it('keeps the first and the last data piece, a bounded sample, and zeros inside holes', () => {
    const r = new StreamRecord(5, lcg(7));
    r.push({ hole: 500 });
    for (let i = 0; i < 100; i++) {
      r.push(piece(i));
      if (i % 10 === 9) r.push({ hole: 3000 });
    }
    expect(r.length).toBe(500 + 100 * 1000 + 10 * 3000);
    expect(r.dataBytes).toBe(100_000);
    expect(r.extents).toHaveLength(10);
    expect(r.extents[0]).toEqual([500, 10_500]);

    const exp = r.expectations(3, 2048);
    const data = exp.filter((e) => e.bytes.some((b) => b !== 0));
    const zeros = exp.filter((e) => e.bytes.every((b) => b === 0));
    expect(data[0]).toEqual({ offset: 500, bytes: Buffer.alloc(1000, 1) });
    expect(data[data.length - 1]!.offset).toBe(500 + 99 * 1000 + 9 * 3000);
    expect(data.length).toBeGreaterThanOrEqual(3);
    expect(data.length).toBeLessThanOrEqual(7);
    // each kept piece holds the bytes that passed at its offset
    for (const e of data) {
      const k = r.extents.findIndex(([s, end]) => e.offset >= s && e.offset < end);
      const i = k * 10 + (e.offset - r.extents[k]![0]) / 1000;
      expect(e.bytes).toEqual(piece(i).data);
    }
    expect(zeros.length).toBeGreaterThan(0);
    for (const z of zeros) {
      const inHole = r.holes().some(([s, e]) => z.offset >= s && z.offset + z.bytes.length <= e);
      expect(inHole, `zero window at ${z.offset}`).toBe(true);
    }
    expect([...exp].sort((x, y) => x.offset - y.offset)).toEqual(exp);
  });

  it('samples every data piece with the same chance (a damaged piece anywhere can be caught)', () => {
    const hits = new Array(20).fill(0);
    const random = lcg(3);
    for (let run = 0; run < 2000; run++) {
      const r = new StreamRecord(2, random);
      for (let i = 0; i < 20; i++) r.push(piece(i, 10));
      for (const e of r.expectations(0)) if (e.offset !== 0 && e.offset !== 190) hits[e.offset / 10]++;
    }
    // pieces 1..18: about 2000 * 2/20 = 200 each (first and last are always kept)
    for (let i = 1; i < 19; i++) expect(hits[i]).toBeGreaterThan(120);
  });
});
