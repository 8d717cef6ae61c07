import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_PACKET, MessageStatus, MessageType, PacketDecoder, REMOTE_PROGRAM, KEEPALIVE_PROGRAM, encodePacket, type Header,
} from '../../src/libvirt/packet.js';
import { RpcClient, type Transport } from '../../src/libvirt/client.js';
import { Proc } from '../../src/libvirt/procedures.js';
import { remoteError } from '../../src/libvirt/remote-types.js';
import { encode, xstring, xstruct } from '../../src/libvirt/xdr.js';
import {
  CallTimeoutError, ConnectionClosedError, NoDomainError, ProtocolError, isLibvirtError,
} from '../../src/libvirt/errors.js';
import { ErrorCode } from '../../src/libvirt/api.js';

const hdr = (serial: number, over: Partial<Header> = {}): Header => ({
  prog: REMOTE_PROGRAM, vers: 1, proc: 7, type: MessageType.REPLY, serial, status: MessageStatus.OK, ...over,
});

describe('PacketDecoder', () => {
  it('reassembles packets however the byte stream is chunked', () => {
    const bodies = fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 8 });
    fc.assert(fc.property(bodies, fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }), (bs, cuts) => {
      const wire = Buffer.concat(bs.map((b, i) => encodePacket(hdr(i + 1), b)));
      const d = new PacketDecoder();
      const got: Array<{ serial: number; body: Buffer }> = [];
      let off = 0;
      let k = 0;
      while (off < wire.length) {
        const n = cuts[k++ % cuts.length]!;
        for (const p of d.push(wire.subarray(off, off + n))) got.push({ serial: p.header.serial, body: Buffer.from(p.body) });
        off += n;
      }
      expect(got.map((g) => g.serial)).toEqual(bs.map((_, i) => i + 1));
      got.forEach((g, i) => expect(g.body).toEqual(Buffer.from(bs[i]!)));
      expect(d.pending).toBe(0);
    }));
  });

  it('returns several packets from one chunk and keeps a trailing partial one', () => {
    const a = encodePacket(hdr(1), Buffer.from([1, 2, 3, 4]));
    const b = encodePacket(hdr(2));
    const c = encodePacket(hdr(3), Buffer.alloc(8));
    const d = new PacketDecoder();
    const first = d.push(Buffer.concat([a, b, c.subarray(0, 10)]));
    expect(first.map((p) => p.header.serial)).toEqual([1, 2]);
    expect(d.pending).toBe(10);
    expect(d.push(c.subarray(10)).map((p) => p.header.serial)).toEqual([3]);
  });

  it('rejects oversized and undersized length words before buffering the body', () => {
    const big = Buffer.alloc(4);
    big.writeUInt32BE(MAX_PACKET + 1, 0);
    expect(() => new PacketDecoder().push(big)).toThrow(/exceeds/);
    const small = Buffer.alloc(4);
    small.writeUInt32BE(12, 0);
    expect(() => new PacketDecoder().push(small)).toThrow(/shorter/);
  });
});

/** An in-memory daemon end for fault injection the real daemon cannot be made to produce. */
function fakeTransport() {
  const toClient = new PassThrough();
  const fromClient = new PassThrough();
  let closeCb: ((e: Error | undefined) => void) | undefined;
  const t: Transport = {
    readable: toClient, writable: fromClient, description: 'fake',
    ref() {}, unref() {},
    destroy() { toClient.destroy(); fromClient.destroy(); closeCb?.(undefined); },
    onClose(cb) { closeCb = cb; },
    diagnostics: () => 'fake diagnostics',
  };
  const sent = new PacketDecoder();
  const packets: Array<{ header: Header; body: Buffer }> = [];
  fromClient.on('data', (c: Buffer) => packets.push(...sent.push(c)));
  return { t, toClient, packets, hangUp: (e?: Error) => closeCb?.(e) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('RpcClient dispatch (fake daemon)', () => {
  it('matches out-of-order replies to their calls by serial', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    const caps = xstruct({ capabilities: xstring(100) });
    const p1 = c.call(Proc.CONNECT_GET_CAPABILITIES, undefined);
    const p2 = c.call(Proc.CONNECT_GET_CAPABILITIES, undefined);
    await tick();
    const [s1, s2] = f.packets.map((p) => p.header.serial);
    expect(s1).not.toBe(s2);
    // reply to the second call first, both in one chunk
    f.toClient.write(Buffer.concat([
      encodePacket(hdr(s2!), encode(caps, { capabilities: 'two' })),
      encodePacket(hdr(s1!), encode(caps, { capabilities: 'one' })),
    ]));
    expect(await p1).toEqual({ capabilities: 'one' });
    expect(await p2).toEqual({ capabilities: 'two' });
  });

  it('answers keepalive PINGs with PONGs', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    f.toClient.write(encodePacket({ prog: KEEPALIVE_PROGRAM, vers: 1, proc: 1, type: MessageType.MESSAGE, serial: 0, status: 0 }));
    await tick();
    await tick();
    expect(c.pongsSent).toBe(1);
    expect(f.packets[0]!.header).toMatchObject({ prog: KEEPALIVE_PROGRAM, proc: 2, type: MessageType.MESSAGE });
  });

  it('turns error replies into typed LibvirtErrors', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    const p = c.call(Proc.DOMAIN_LOOKUP_BY_NAME, { name: 'x' });
    await tick();
    f.toClient.write(encodePacket(hdr(f.packets[0]!.header.serial, { status: MessageStatus.ERROR }), encode(remoteError, {
      code: 42, domain: 12, message: "Domain not found: no domain with matching name 'x'", level: 2, dom: null,
      str1: null, str2: null, str3: null, int1: 0, int2: 0, net: null,
    })));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoDomainError);
    expect(isLibvirtError(err, ErrorCode.NO_DOMAIN)).toBe(true);
    expect(err).toMatchObject({ code: 42, domain: 12 });
  });

  it('fails the connection on an oversized packet instead of waiting for 4 GiB', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    const p = c.call(Proc.CONNECT_GET_CAPABILITIES, undefined);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(0x7fff_ffff, 0);
    f.toClient.write(len);
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toMatch(/exceeds/);
    await expect(c.closed).rejects.toBeInstanceOf(ProtocolError);
  });

  it('refuses to send a call larger than the packet limit', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000, maxPacket: 1024 });
    await expect(c.call(Proc.DOMAIN_DEFINE_XML, { xml: 'x'.repeat(2000) })).rejects.toThrow(/exceeds the 1024-byte packet limit/);
    expect(c.isOpen).toBe(true);
  });

  it('rejects every pending call when the transport hangs up, with diagnostics', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    const calls = [c.call(Proc.CONNECT_GET_CAPABILITIES, undefined), c.call(Proc.DOMAIN_LOOKUP_BY_NAME, { name: 'a' })];
    await tick();
    f.hangUp(new Error('EPIPE'));
    for (const p of calls) {
      const e = await p.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ConnectionClosedError);
      expect((e as Error).message).toMatch(/2 call\(s\) were pending.*fake diagnostics/);
    }
    await expect(c.call(Proc.CONNECT_GET_CAPABILITIES, undefined)).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('times out a call the daemon never answers and keeps the connection usable', async () => {
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 30 });
    await expect(c.call(Proc.CONNECT_GET_CAPABILITIES, undefined)).rejects.toBeInstanceOf(CallTimeoutError);
    expect(c.isOpen).toBe(true);
  });
});

// Seen against the real daemon under load (10 concurrent CPI processes): the first data
// packet of a download can arrive before the call's REPLY. A fake daemon is used because
// the ordering cannot be forced on demand in a real one.
describe('download stream ordering (fake daemon)', () => {
  it('keeps data that arrives before the REPLY and delivers it in order', async () => {
    const { downloadVolume } = await import('../../src/libvirt/streams.js');
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    const vol = { pool: 'p', name: 'v', key: 'k' };
    const stream = downloadVolume(c, vol, {});
    const chunks: Buffer[] = [];
    const done = (async () => {
      for await (const ch of stream) chunks.push(ch as Buffer);
    })();
    await tick();
    const serial = f.packets[0]!.header.serial;
    const proc = f.packets[0]!.header.proc;
    const data = (body: string, status: number = MessageStatus.CONTINUE) =>
      encodePacket(hdr(serial, { proc, type: MessageType.STREAM, status }), Buffer.from(body));
    f.toClient.write(Buffer.concat([data('early-'), encodePacket(hdr(serial, { proc }), Buffer.alloc(0)), data('late'), data('')]));
    await tick();
    // the client answers the daemon's EOF with its own; the daemon then confirms
    f.toClient.write(data('', MessageStatus.OK));
    await done;
    expect(Buffer.concat(chunks).toString()).toBe('early-late');
  });
});

describe('upload packetisation (fake daemon)', () => {
  it('gathers small source chunks into full stream packets, in order', async () => {
    const { uploadVolume } = await import('../../src/libvirt/streams.js');
    const { Readable } = await import('node:stream');
    const { STREAM_CHUNK } = await import('../../src/libvirt/packet.js');
    const f = fakeTransport();
    const c = new RpcClient(f.t, { callTimeoutMs: 5000 });
    // 600 chunks of 1000 bytes: 600,000 bytes, i.e. 3 packets (2 full), not 600.
    const chunks = Array.from({ length: 600 }, (_, i) => Buffer.alloc(1000, i % 251));
    const upload = uploadVolume(c, { pool: 'p', name: 'v', key: 'k' }, Readable.from(chunks));
    await tick();
    const call = f.packets[0]!.header;
    f.toClient.write(encodePacket(hdr(call.serial, { proc: call.proc }), Buffer.alloc(0)));
    for (let i = 0; i < 50 && !f.packets.some((p) => p.header.type === MessageType.STREAM && p.header.status === MessageStatus.OK); i++) await tick();
    const data = f.packets.filter((p) => p.header.type === MessageType.STREAM && p.header.status === MessageStatus.CONTINUE);
    expect(data.map((p) => p.body.length)).toEqual([STREAM_CHUNK, STREAM_CHUNK, 600_000 - 2 * STREAM_CHUNK]);
    expect(Buffer.concat(data.map((p) => p.body)).equals(Buffer.concat(chunks))).toBe(true);
    f.toClient.write(encodePacket(hdr(call.serial, { proc: call.proc, type: MessageType.STREAM, status: MessageStatus.OK }), Buffer.alloc(0)));
    await upload;
  });
});
