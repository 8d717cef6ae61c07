// A digest of a volume's content that does not depend on how it is laid out on disk.
//
// A moved volume is verified by comparing what left host A with what host B holds when
// read back. The two sides can describe the same bytes differently: B's file system may
// store a run of zeros as a hole where A had written zeros, or the other way round. So
// the digest covers the content, cut in aligned 64 KiB blocks: each block holding a
// non-zero byte contributes its index and its bytes, all-zero blocks (holes or zero
// data alike) contribute nothing, and the total length closes it. Its cost is that of
// the data (a hole is skipped in O(1)), so verifying a sparse volume reads only what is
// allocated.
import { createHash } from 'node:crypto';
import { isZero, type Piece } from '../libvirt/holes.js';

const BLOCK = 64 * 1024;

export class ContentDigest {
  private readonly hash = createHash('sha256');
  private readonly block = Buffer.alloc(BLOCK);
  private blockIndex = 0;
  /** bytes of the current block already covered (data or hole) */
  private filled = 0;
  private dirty = false;
  private result: string | undefined;
  /** logical length so far: data plus holes */
  length = 0;
  /** bytes that came as data (what a sparse transfer moved) */
  dataBytes = 0;

  push(piece: Piece): void {
    if (this.result !== undefined) throw new Error('ContentDigest: push after digest()');
    if ('hole' in piece) this.skip(piece.hole);
    else this.write(piece.data);
  }

  digest(): string {
    if (this.result === undefined) {
      if (this.filled > 0) this.closeBlock();
      const len = Buffer.alloc(8);
      len.writeBigUInt64BE(BigInt(this.length));
      this.hash.update('length');
      this.hash.update(len);
      this.result = this.hash.digest('hex');
    }
    return this.result;
  }

  private write(data: Buffer): void {
    this.dataBytes += data.length;
    this.length += data.length;
    for (let off = 0; off < data.length;) {
      const n = Math.min(BLOCK - this.filled, data.length - off);
      // The block buffer is all zeros where nothing was copied: zero data need not be.
      if (!isZero(data, off, off + n)) {
        data.copy(this.block, this.filled, off, off + n);
        this.dirty = true;
      }
      this.filled += n;
      off += n;
      if (this.filled === BLOCK) this.closeBlock();
    }
  }

  private skip(n: number): void {
    this.length += n;
    if (this.filled > 0) {
      const k = Math.min(n, BLOCK - this.filled);
      this.filled += k;
      n -= k;
      if (this.filled < BLOCK) return;
      this.closeBlock();
    }
    const whole = Math.floor(n / BLOCK);
    this.blockIndex += whole;
    this.filled = n - whole * BLOCK;
  }

  private closeBlock(): void {
    if (this.dirty) {
      const index = Buffer.alloc(8);
      index.writeBigUInt64BE(BigInt(this.blockIndex));
      this.hash.update(index);
      this.hash.update(this.block);
      this.block.fill(0);
      this.dirty = false;
    }
    this.blockIndex++;
    this.filled = 0;
  }
}
