import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ContentDigest } from '../../src/hosts/digest.js';
import type { Piece } from '../../src/libvirt/holes.js';

function digest(pieces: Piece[]): string {
  const d = new ContentDigest();
  for (const p of pieces) d.push(p);
  return d.digest();
}

/** The same bytes cut as data and holes wherever `holes` says ([start, end) zero ranges). */
function asPieces(content: Buffer, holes: Array<[number, number]>): Piece[] {
  const out: Piece[] = [];
  let at = 0;
  for (const [s, e] of holes) {
    if (s > at) out.push({ data: content.subarray(at, s) });
    out.push({ hole: e - s });
    at = e;
  }
  if (at < content.length) out.push({ data: content.subarray(at) });
  return out;
}

describe('ContentDigest: what a moved volume is verified with', () => {
  const K = 1024;
  const content = Buffer.alloc(1024 * K);
  randomBytes(100 * K).copy(content, 3 * K);
  randomBytes(7).copy(content, 500 * K + 11);
  randomBytes(64 * K).copy(content, 900 * K);

  it('does not depend on where the zeros are holes and where they are data, nor on piece boundaries', () => {
    const plain = digest([{ data: content }]);
    expect(digest(asPieces(content, [[0, 3 * K], [103 * K, 500 * K], [500 * K + 18, 900 * K], [964 * K, 1024 * K]]))).toBe(plain);
    expect(digest(asPieces(content, [[200 * K, 300 * K + 5]]))).toBe(plain);
    const tiny: Piece[] = [];
    for (let i = 0; i < content.length; i += 4093) tiny.push({ data: content.subarray(i, Math.min(content.length, i + 4093)) });
    expect(digest(tiny)).toBe(plain);
  });

  it('changes when one byte, the position of data, or the length changes', () => {
    const plain = digest([{ data: content }]);
    const flipped = Buffer.from(content);
    flipped[500 * K + 12]! ^= 1;
    expect(digest([{ data: flipped }])).not.toBe(plain);
    // the same data one block later
    const shifted = Buffer.alloc(content.length);
    content.copy(shifted, 64 * K, 0, content.length - 64 * K);
    expect(digest([{ data: shifted }])).not.toBe(plain);
    // a hole where data belonged (what a broken sparse path would write)
    expect(digest(asPieces(content, [[900 * K, 964 * K]]))).not.toBe(plain);
    // a trailing zero more
    expect(digest([{ data: content }, { hole: 1 }])).not.toBe(plain);
  });

  it('counts what came as data and the logical length', () => {
    const d = new ContentDigest();
    for (const p of asPieces(content, [[103 * K, 900 * K]])) d.push(p);
    expect(d.length).toBe(content.length);
    expect(d.dataBytes).toBe(content.length - (900 - 103) * K);
  });
});
