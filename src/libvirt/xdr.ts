// XDR (RFC 4506) as libvirt uses it: big-endian 4-byte units, hypers as BigInt,
// variable-length data padded to 4 bytes. Codecs are values so the procedure table
// can name argument and result layouts declaratively.

export class XdrError extends Error {
  override name = 'XdrError';
}

export interface Codec<T> {
  encode(w: XdrWriter, v: T): void;
  decode(r: XdrReader): T;
}

export type Decoded<C> = C extends Codec<infer T> ? T : never;

const INT_MIN = -0x8000_0000;
const INT_MAX = 0x7fff_ffff;
const UINT_MAX = 0xffff_ffff;
const HYPER_MIN = -(1n << 63n);
const HYPER_MAX = (1n << 63n) - 1n;
const UHYPER_MAX = (1n << 64n) - 1n;
const ZERO_PAD = Buffer.alloc(4);

const pad = (n: number): number => (4 - (n & 3)) & 3;

export class XdrWriter {
  private buf: Buffer;
  private pos: number;

  /** `reserve` leaves room at the front (the packet header) so framing needs no copy. */
  constructor(initial = 256, reserve = 0) {
    this.buf = Buffer.allocUnsafe(Math.max(initial, reserve + 16));
    this.pos = reserve;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(v: number): void {
    if (!Number.isInteger(v) || v < INT_MIN || v > INT_MAX) throw new XdrError(`int out of range: ${v}`);
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
  }

  uint(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > UINT_MAX) throw new XdrError(`unsigned int out of range: ${v}`);
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
  }

  hyper(v: bigint): void {
    if (typeof v !== 'bigint' || v < HYPER_MIN || v > HYPER_MAX) throw new XdrError(`hyper out of range: ${String(v)}`);
    this.ensure(8);
    this.buf.writeBigInt64BE(v, this.pos);
    this.pos += 8;
  }

  uhyper(v: bigint): void {
    if (typeof v !== 'bigint' || v < 0n || v > UHYPER_MAX) throw new XdrError(`unsigned hyper out of range: ${String(v)}`);
    this.ensure(8);
    this.buf.writeBigUInt64BE(v, this.pos);
    this.pos += 8;
  }

  /** Raw bytes followed by zero padding to a 4-byte boundary. */
  bytes(b: Uint8Array): void {
    const p = pad(b.length);
    this.ensure(b.length + p);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    if (p) {
      ZERO_PAD.copy(this.buf, this.pos, 0, p);
      this.pos += p;
    }
  }

  get length(): number {
    return this.pos;
  }

  /** The encoded bytes (a view, valid until the next write). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class XdrReader {
  private pos: number;

  constructor(private readonly buf: Buffer, offset = 0) {
    this.pos = offset;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new XdrError(`truncated XDR: ${what} needs ${n} bytes at offset ${this.pos}, ${this.buf.length - this.pos} left`);
    }
  }

  int(): number {
    this.need(4, 'int');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4, 'unsigned int');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  hyper(): bigint {
    this.need(8, 'hyper');
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  uhyper(): bigint {
    this.need(8, 'unsigned hyper');
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** `n` bytes plus their padding; the result is a view into the packet. */
  bytes(n: number, what: string): Buffer {
    const total = n + pad(n);
    this.need(total, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += total;
    return v;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }
}

// ---- primitive codecs -------------------------------------------------------

export const xvoid: Codec<void> = { encode() {}, decode() {} };
export const xint: Codec<number> = { encode: (w, v) => w.int(v), decode: (r) => r.int() };
export const xuint: Codec<number> = { encode: (w, v) => w.uint(v), decode: (r) => r.uint() };
export const xhyper: Codec<bigint> = { encode: (w, v) => w.hyper(v), decode: (r) => r.hyper() };
export const xuhyper: Codec<bigint> = { encode: (w, v) => w.uhyper(v), decode: (r) => r.uhyper() };

/** XDR bool; libvirt also uses plain `int` 0/1 for flags such as `active` — see `intBool`. */
export const xbool: Codec<boolean> = {
  encode: (w, v) => w.int(v ? 1 : 0),
  decode: (r) => {
    const v = r.int();
    if (v !== 0 && v !== 1) throw new XdrError(`bool must be 0 or 1, got ${v}`);
    return v === 1;
  },
};

/** An `int` the daemon treats as a truth value (any non-zero is true). */
export const intBool: Codec<boolean> = {
  encode: (w, v) => w.int(v ? 1 : 0),
  decode: (r) => r.int() !== 0,
};

function checkLength(len: number, max: number, what: string): void {
  if (len > max) throw new XdrError(`${what} length ${len} exceeds maximum ${max}`);
}

export function xstring(max: number): Codec<string> {
  return {
    encode(w, v) {
      const b = Buffer.from(v, 'utf8');
      checkLength(b.length, max, 'string');
      w.uint(b.length);
      w.bytes(b);
    },
    decode(r) {
      const len = r.uint();
      checkLength(len, max, 'string');
      return r.bytes(len, 'string').toString('utf8');
    },
  };
}

export function xopaque(max: number): Codec<Buffer> {
  return {
    encode(w, v) {
      checkLength(v.length, max, 'opaque');
      w.uint(v.length);
      w.bytes(v);
    },
    decode(r) {
      const len = r.uint();
      checkLength(len, max, 'opaque');
      return Buffer.from(r.bytes(len, 'opaque'));
    },
  };
}

export function xfixedOpaque(n: number): Codec<Buffer> {
  return {
    encode(w, v) {
      if (v.length !== n) throw new XdrError(`fixed opaque needs exactly ${n} bytes, got ${v.length}`);
      w.bytes(v);
    },
    decode: (r) => Buffer.from(r.bytes(n, `opaque[${n}]`)),
  };
}

/** XDR optional-data (`T *`): a bool then the value; null when absent. */
export function xoptional<T>(c: Codec<T>): Codec<T | null> {
  return {
    encode(w, v) {
      if (v === null || v === undefined) {
        w.uint(0);
      } else {
        w.uint(1);
        c.encode(w, v);
      }
    },
    decode(r) {
      const present = r.uint();
      if (present === 0) return null;
      if (present !== 1) throw new XdrError(`optional marker must be 0 or 1, got ${present}`);
      return c.decode(r);
    },
  };
}

/** Variable-length array `T<max>`. */
export function xarray<T>(c: Codec<T>, max: number): Codec<T[]> {
  return {
    encode(w, v) {
      checkLength(v.length, max, 'array');
      w.uint(v.length);
      for (const item of v) c.encode(w, item);
    },
    decode(r) {
      const len = r.uint();
      checkLength(len, max, 'array');
      // Each element takes at least 4 bytes, so a huge count in a short packet fails fast.
      if (len * 4 > r.remaining) throw new XdrError(`truncated XDR: array of ${len} cannot fit in ${r.remaining} bytes`);
      const out: T[] = new Array<T>(len);
      for (let i = 0; i < len; i++) out[i] = c.decode(r);
      return out;
    },
  };
}

type Shape = Record<string, Codec<any>>;
export type StructOf<S extends Shape> = { [K in keyof S]: Decoded<S[K]> };

/** Struct fields are encoded in the shape's key order (insertion order), as in the .x file. */
export function xstruct<S extends Shape>(shape: S): Codec<StructOf<S>> {
  const fields = Object.entries(shape);
  return {
    encode(w, v) {
      for (const [k, c] of fields) c.encode(w, (v as Record<string, unknown>)[k]);
    },
    decode(r) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of fields) out[k] = c.decode(r);
      return out as StructOf<S>;
    },
  };
}

/** Discriminated union on an int; `arms` maps discriminant → codec for the value. */
export function xunion<T>(arms: Record<number, Codec<T>>): Codec<{ type: number; value: T }> {
  return {
    encode(w, v) {
      const arm = arms[v.type];
      if (!arm) throw new XdrError(`union has no arm for discriminant ${v.type}`);
      w.int(v.type);
      arm.encode(w, v.value);
    },
    decode(r) {
      const type = r.int();
      const arm = arms[type];
      if (!arm) throw new XdrError(`union has no arm for discriminant ${type}`);
      return { type, value: arm.decode(r) };
    },
  };
}

/** Maps a codec's value type (e.g. a wire struct to a friendlier shape). */
export function xmap<W, T>(c: Codec<W>, to: (w: W) => T, from: (t: T) => W): Codec<T> {
  return { encode: (w, v) => c.encode(w, from(v)), decode: (r) => to(c.decode(r)) };
}

export function encode<T>(c: Codec<T>, v: T): Buffer {
  const w = new XdrWriter();
  c.encode(w, v);
  return Buffer.from(w.finish());
}

/** Decodes a whole buffer; trailing bytes are an error (a layout mismatch, not data). */
export function decode<T>(c: Codec<T>, buf: Buffer, offset = 0): T {
  const r = new XdrReader(buf, offset);
  const v = c.decode(r);
  if (r.remaining !== 0) throw new XdrError(`${r.remaining} unexpected trailing bytes after XDR value`);
  return v;
}
