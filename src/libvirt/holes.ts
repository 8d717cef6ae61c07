// Finding holes in a byte stream, for sparse uploads (VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM).
//
// A raw stemcell's root.img is a whole disk (3–5 GiB) of which the filesystem uses a
// part; the rest is zeros, stored as zeros in the tarball. Sent as data, every zero is
// written to the volume; sent as a hole, the daemon only seeks (files) or writes zeros
// itself (block devices), and a file volume stays sparse on the host.
//
// The bytes are looked at in blocks aligned to their offset in the stream (`block`, 4 KiB:
// a filesystem block), a block being zero only if all of it is. A run of zero blocks at
// least `minHole` long becomes a hole; shorter runs stay data, so a scattered free block
// does not cost a packet of its own. Nothing is copied: data pieces are views of the
// input chunks, and at most one unfinished short zero run (< minHole) is held back
// between chunks.

export type Piece = { data: Buffer } | { hole: number };

const ZERO = Buffer.alloc(256 * 1024);

/** Whether b[start, end) is all zeros; looks at the bytes in place (a view per 4 KiB block was most of a dense image's cost). */
export function isZero(b: Buffer, start: number, end: number): boolean {
  // Most data blocks differ from zero in their first or last byte: skip the compare.
  if (b[start] !== 0 || b[end - 1] !== 0) return false;
  for (let off = start; off < end; off += ZERO.length) {
    const n = Math.min(ZERO.length, end - off);
    if (b.compare(ZERO, 0, n, off, off + n) !== 0) return false;
  }
  return true;
}

export class HoleFinder {
  private offset = 0;
  /** the current zero run: its views while it is shorter than minHole, then only its length */
  private zeroViews: Buffer[] = [];
  private zeroLen = 0;

  constructor(readonly minHole = 64 * 1024, readonly block = 4096) {
    if (!(block > 0 && minHole >= block)) throw new RangeError(`HoleFinder: need 0 < block (${block}) <= minHole (${minHole})`);
  }

  /** Takes the next bytes of the stream; returns what is decided so far, in stream order. */
  push(chunk: Buffer): Piece[] {
    const out: Piece[] = [];
    let dataStart = -1; // start (in chunk) of the data being gathered, -1 if none
    let i = 0;
    while (i < chunk.length) {
      // Up to the next block boundary of the stream, then whole blocks.
      const end = Math.min(chunk.length, i + this.block - ((this.offset + i) % this.block));
      if (isZero(chunk, i, end)) {
        if (dataStart >= 0) {
          out.push({ data: chunk.subarray(dataStart, i) });
          dataStart = -1;
        }
        if (this.zeroLen < this.minHole) this.zeroViews.push(chunk.subarray(i, end));
        this.zeroLen += end - i;
        if (this.zeroLen >= this.minHole) this.zeroViews = [];
      } else {
        if (this.zeroLen > 0) this.endZeroRun(out);
        if (dataStart < 0) dataStart = i;
      }
      i = end;
    }
    if (dataStart >= 0) out.push({ data: chunk.subarray(dataStart) });
    this.offset += chunk.length;
    return out;
  }

  /** The end of the stream: a trailing zero run becomes a hole or data. */
  end(): Piece[] {
    const out: Piece[] = [];
    if (this.zeroLen > 0) this.endZeroRun(out);
    return out;
  }

  private endZeroRun(out: Piece[]): void {
    if (this.zeroLen >= this.minHole) out.push({ hole: this.zeroLen });
    else for (const v of this.zeroViews) out.push({ data: v });
    this.zeroViews = [];
    this.zeroLen = 0;
  }
}
