import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  XdrError, decode, encode, xarray, xbool, xfixedOpaque, xhyper, xint, xopaque, xoptional, xstring, xstruct,
  xuhyper, xuint, xunion,
} from '../../src/libvirt/xdr.js';
import { nonnullDomain, remoteError, typedParam } from '../../src/libvirt/remote-types.js';

const domArb = fc.record({
  name: fc.string({ maxLength: 40 }),
  uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
  id: fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
});

describe('XDR primitives', () => {
  it('round-trips int, uint, hyper, uhyper, bool', () => {
    fc.assert(fc.property(
      fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
      fc.integer({ min: 0, max: 0xffff_ffff }),
      fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.boolean(),
      (i, u, h, uh, b) => {
        const c = xstruct({ i: xint, u: xuint, h: xhyper, uh: xuhyper, b: xbool });
        const buf = encode(c, { i, u, h, uh, b });
        expect(buf.length).toBe(4 + 4 + 8 + 8 + 4);
        expect(decode(c, buf)).toEqual({ i, u, h, uh, b });
      },
    ));
  });

  it('rejects out-of-range numbers on encode', () => {
    expect(() => encode(xint, 0x8000_0000)).toThrow(XdrError);
    expect(() => encode(xuint, -1)).toThrow(XdrError);
    expect(() => encode(xuhyper, 1n << 64n)).toThrow(XdrError);
    expect(() => encode(xhyper, 1n << 63n)).toThrow(XdrError);
  });

  it('pads strings and opaque data to 4 bytes with zeros', () => {
    fc.assert(fc.property(fc.string({ maxLength: 64 }), (s) => {
      const buf = encode(xstring(1000), s);
      const n = Buffer.byteLength(s);
      expect(buf.length % 4).toBe(0);
      expect(buf.readUInt32BE(0)).toBe(n);
      expect(buf.subarray(4 + n).every((x) => x === 0)).toBe(true);
      expect(decode(xstring(1000), buf)).toBe(s);
    }));
  });

  it('round-trips opaque, fixed opaque, optional and arrays', () => {
    const c = xstruct({
      o: xopaque(64), f: xfixedOpaque(16), opt: xoptional(xstring(32)), arr: xarray(xint, 10),
    });
    fc.assert(fc.property(
      fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.option(fc.string({ maxLength: 32 }).filter((s) => Buffer.byteLength(s) <= 32), { nil: null }),
      fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 10 }),
      (o, f, opt, arr) => {
        const v = { o: Buffer.from(o), f: Buffer.from(f), opt, arr };
        expect(decode(c, encode(c, v))).toEqual(v);
      },
    ));
  });

  it('round-trips unions by discriminant and rejects unknown arms', () => {
    const u = xunion<number | string>({ 1: xint as never, 7: xstring(10) as never });
    expect(decode(u, encode(u, { type: 1, value: -5 }))).toEqual({ type: 1, value: -5 });
    expect(decode(u, encode(u, { type: 7, value: 'ab' }))).toEqual({ type: 7, value: 'ab' });
    const bad = Buffer.alloc(8);
    bad.writeInt32BE(3, 0);
    expect(() => decode(u, bad)).toThrow(/no arm/);
  });
});

describe('XDR rejects malformed input', () => {
  it('rejects every truncation of a valid encoding', () => {
    fc.assert(fc.property(domArb, fc.nat(), (d, cut) => {
      const buf = encode(nonnullDomain, d);
      const len = cut % buf.length; // strictly shorter
      expect(() => decode(nonnullDomain, buf.subarray(0, len))).toThrow(XdrError);
    }));
  });

  it('rejects trailing garbage', () => {
    fc.assert(fc.property(domArb, fc.integer({ min: 1, max: 12 }), (d, extra) => {
      const buf = Buffer.concat([encode(nonnullDomain, d), Buffer.alloc(extra)]);
      expect(() => decode(nonnullDomain, buf)).toThrow(/trailing/);
    }));
  });

  it('rejects strings, opaque data and arrays longer than their declared maximum', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 100 }), (max, over) => {
      const len = max + over;
      const wire = Buffer.alloc(4 + len + 4);
      wire.writeUInt32BE(len, 0);
      expect(() => decode(xstring(max), wire)).toThrow(/exceeds maximum/);
      expect(() => decode(xopaque(max), wire)).toThrow(/exceeds maximum/);
      expect(() => decode(xarray(xint, max), wire)).toThrow(/exceeds maximum/);
      expect(() => encode(xstring(max), 'x'.repeat(len))).toThrow(/exceeds maximum/);
    }));
  });

  it('rejects a huge array count without allocating it', () => {
    const wire = Buffer.alloc(8);
    wire.writeUInt32BE(1_000_000, 0);
    expect(() => decode(xarray(xint, 2_000_000), wire)).toThrow(/cannot fit/);
  });

  it('rejects optional markers other than 0/1 and bools other than 0/1', () => {
    const two = Buffer.alloc(4);
    two.writeUInt32BE(2, 0);
    expect(() => decode(xoptional(xint), two)).toThrow(XdrError);
    expect(() => decode(xbool, two)).toThrow(XdrError);
  });

  it('decodes a remote_error as the daemon lays it out', () => {
    const v = {
      code: 42, domain: 12, message: 'Domain not found', level: 2, dom: null,
      str1: 'Domain not found', str2: null, str3: null, int1: 0, int2: 0, net: null,
    };
    expect(decode(remoteError, encode(remoteError, v))).toEqual(v);
  });

  it('round-trips every typed parameter arm (job statistics) and refuses an unknown type', () => {
    const arm = fc.oneof(
      fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }).map((v) => ({ type: 1, value: v })),
      fc.integer({ min: 0, max: 0xffff_ffff }).map((v) => ({ type: 2, value: v })),
      fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }).map((v) => ({ type: 3, value: v })),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => ({ type: 4, value: v })),
      fc.double({ noNaN: true }).map((v) => ({ type: 5, value: v })),
      fc.boolean().map((v) => ({ type: 6, value: v })),
      fc.string({ maxLength: 40 }).map((v) => ({ type: 7, value: v })),
    );
    fc.assert(fc.property(fc.string({ maxLength: 20 }), arm, (field, value) => {
      expect(decode(typedParam, encode(typedParam, { field, value }))).toEqual({ field, value });
    }));
    // A double is 8 bytes big-endian on the wire: 1.5 = 0x3ff8000000000000.
    const wire = encode(typedParam, { field: 'x', value: { type: 5, value: 1.5 } });
    expect(wire.subarray(-8).toString('hex')).toBe('3ff8000000000000');
    const unknown = Buffer.from(wire);
    unknown.writeInt32BE(8, 8); // field "x": length 4 + 1 byte padded to 4, then the discriminant
    expect(() => decode(typedParam, unknown)).toThrow(XdrError);
  });
});
