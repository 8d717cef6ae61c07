// Checking a moved volume without reading all of it back (see move.ts for why this is
// enough, and for the 'full' alternative): while the stream passes, keep where its data
// and holes are and a few of its data packets (the first, the last and a uniform random
// sample); afterwards read the same places of the copy and compare. The original is not
// read again: what it held is what passed.
import type { Piece } from '../libvirt/holes.js';

export interface Expected { offset: number; bytes: Buffer }

export class StreamRecord {
  /** data extents as [start, end), adjacent data pieces merged */
  readonly extents: Array<[start: number, end: number]> = [];
  length = 0;
  dataBytes = 0;
  private first: Expected | null = null;
  /** the latest data piece (a view: it is the packet's own buffer) */
  private lastPiece: { offset: number; data: Buffer } | null = null;
  private readonly sample: Expected[] = [];
  private seen = 0;

  constructor(readonly sampleSize = 12, private readonly random: () => number = Math.random) {}

  push(piece: Piece): void {
    if ('hole' in piece) {
      this.length += piece.hole;
      return;
    }
    const { data } = piece;
    const last = this.extents[this.extents.length - 1];
    if (last && last[1] === this.length) last[1] += data.length;
    else this.extents.push([this.length, this.length + data.length]);
    // Copies, so a kept piece holds its own bytes, not the view of a larger buffer.
    const here = (): Expected => ({ offset: this.length, bytes: Buffer.from(data) });
    if (!this.first) this.first = here();
    // reservoir sampling (Algorithm R): every data piece equally likely to be kept
    if (this.seen < this.sampleSize) this.sample.push(here());
    else {
      const j = Math.floor(this.random() * (this.seen + 1));
      if (j < this.sampleSize) this.sample[j] = here();
    }
    this.seen++;
    this.lastPiece = { offset: this.length, data };
    this.length += data.length;
    this.dataBytes += data.length;
  }

  /** The gaps between data extents (holes), as [start, end). */
  holes(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let at = 0;
    for (const [s, e] of this.extents) {
      if (s > at) out.push([at, s]);
      at = e;
    }
    if (at < this.length) out.push([at, this.length]);
    return out;
  }

  /**
   * What the copy must hold: the first and last data pieces (headers, a truncated
   * tail), the sampled ones (data where a hole was written), and zeros at `holeWindows`
   * random places in the holes, up to `holeBytes` each (a hole filled with bytes).
   */
  expectations(holeWindows = 4, holeBytes = 64 * 1024): Expected[] {
    const out = new Map<number, Expected>();
    const add = (e: Expected | null) => { if (e && !out.has(e.offset)) out.set(e.offset, e); };
    add(this.first);
    if (this.lastPiece) add({ offset: this.lastPiece.offset, bytes: this.lastPiece.data });
    for (const e of this.sample) add(e);
    const holes = this.holes();
    for (let i = 0; i < holeWindows && holes.length > 0; i++) {
      const [s, e] = holes[Math.floor(this.random() * holes.length)]!;
      const at = s + Math.floor(this.random() * (e - s));
      add({ offset: at, bytes: Buffer.alloc(Math.min(holeBytes, e - at)) });
    }
    return [...out.values()].sort((x, y) => x.offset - y.offset);
  }
}
