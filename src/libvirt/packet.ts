// Wire framing of libvirt's RPC (src/rpc/virnetprotocol.x): a 4-byte big-endian total
// length (counting itself), a 24-byte header, then the XDR body.

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KeepaliveProc = { PING: 1, PONG: 2 } as const;

export const MessageType = {
  CALL: 0, REPLY: 1, MESSAGE: 2, STREAM: 3, CALL_WITH_FDS: 4, REPLY_WITH_FDS: 5, STREAM_HOLE: 6,
} as const;
export const MessageStatus = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;

export const LEN_SIZE = 4;
export const HEADER_SIZE = 24;
export const PREFIX_SIZE = LEN_SIZE + HEADER_SIZE;
/** VIR_NET_MESSAGE_MAX: daemons since 4.x accept 32 MiB (older ones 16 MiB). */
export const MAX_PACKET = 32 * 1024 * 1024;
/**
 * VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX: the stream chunk size libvirt's own client and
 * daemon use; every daemon version accepts it.
 */
export const STREAM_CHUNK = 256 * 1024 - HEADER_SIZE;

export interface Header {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

export interface Packet {
  header: Header;
  /** XDR body (a view into the receive buffer). */
  body: Buffer;
}

export class FramingError extends Error {
  override name = 'FramingError';
}

/** Writes length + header into the first PREFIX_SIZE bytes of `buf` (whose total length is the packet). */
export function writePrefix(buf: Buffer, h: Header, total = buf.length): void {
  buf.writeUInt32BE(total, 0);
  buf.writeUInt32BE(h.prog, 4);
  buf.writeUInt32BE(h.vers, 8);
  buf.writeInt32BE(h.proc, 12);
  buf.writeInt32BE(h.type, 16);
  buf.writeUInt32BE(h.serial, 20);
  buf.writeInt32BE(h.status, 24);
}

/** A standalone 28-byte prefix for a packet whose body is sent separately (stream data). */
export function prefixFor(h: Header, bodyLength: number): Buffer {
  const b = Buffer.allocUnsafe(PREFIX_SIZE);
  writePrefix(b, h, PREFIX_SIZE + bodyLength);
  return b;
}

export function encodePacket(h: Header, body: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(PREFIX_SIZE + body.length);
  writePrefix(b, h);
  b.set(body, PREFIX_SIZE);
  return b;
}

export function readHeader(packet: Buffer): Header {
  return {
    prog: packet.readUInt32BE(4),
    vers: packet.readUInt32BE(8),
    proc: packet.readInt32BE(12),
    type: packet.readInt32BE(16),
    serial: packet.readUInt32BE(20),
    status: packet.readInt32BE(24),
  };
}

/**
 * Reassembles packets from arbitrary chunks (a packet split across reads, several
 * packets in one read). Keeps at most one partial packet buffered.
 */
export class PacketDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxPacket = MAX_PACKET) {}

  /** Feeds bytes; returns the complete packets they finish. Throws FramingError on a bad length. */
  push(chunk: Buffer): Packet[] {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Packet[] = [];
    for (;;) {
      if (this.buffered < LEN_SIZE) break;
      const len = this.peekLength();
      if (len < PREFIX_SIZE) throw new FramingError(`packet length ${len} is shorter than the ${PREFIX_SIZE}-byte header`);
      if (len > this.maxPacket) {
        throw new FramingError(`packet length ${len} exceeds the ${this.maxPacket}-byte limit`);
      }
      if (this.buffered < len) break;
      const packet = this.take(len);
      out.push({ header: readHeader(packet), body: packet.subarray(PREFIX_SIZE) });
    }
    return out;
  }

  /** Bytes of an incomplete packet still waiting for the rest. */
  get pending(): number {
    return this.buffered;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= LEN_SIZE) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, Math.min(this.buffered, 8));
    return head.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const want = n - off;
        if (c.length <= want) {
          c.copy(out, off);
          off += c.length;
          this.chunks.shift();
        } else {
          c.copy(out, off, 0, want);
          this.chunks[0] = c.subarray(want);
          off += want;
        }
      }
    }
    this.buffered -= n;
    return out;
  }
}
