// One RPC connection: serials, many calls in flight matched by serial, per-call
// timeouts, keepalive answers, stream routing, and failing everything pending (never
// hanging) when the transport goes away.
import type { Readable, Writable } from 'node:stream';
import {
  CallTimeoutError, ConnectionClosedError, LibvirtError, ProtocolError, errorFromRemote,
} from './errors.js';
import {
  FramingError, KEEPALIVE_PROGRAM, KEEPALIVE_PROTOCOL_VERSION, KeepaliveProc, MAX_PACKET,
  MessageStatus, MessageType, PREFIX_SIZE, PacketDecoder, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION,
  encodePacket, prefixFor, writePrefix, type Header, type Packet,
} from './packet.js';
import { PROC_BY_NUMBER, Proc, type ProcDef } from './procedures.js';
import { remoteError, streamHole } from './remote-types.js';
import { XdrError, XdrWriter, decode, encode } from './xdr.js';

/** A byte pipe to a daemon (unix/tcp/tls socket, or an ssh child's stdio). */
export interface Transport {
  readonly readable: Readable;
  readonly writable: Writable;
  /** Human-readable endpoint for messages ("unix:/var/run/libvirt/libvirt-sock"). */
  readonly description: string;
  /** Keep / stop keeping the Node event loop alive for this transport. */
  ref(): void;
  unref(): void;
  /** Tear down immediately. */
  destroy(): void;
  /** Registers the one-shot callback fired once the transport is fully closed. */
  onClose(cb: (err: Error | undefined) => void): void;
  /** Extra context for errors (e.g. the tail of ssh's stderr). */
  diagnostics(): string;
}

export interface ClientOptions {
  callTimeoutMs: number;
  maxPacket?: number;
}

/** Receives the packets of one stream (the call's REPLY, then STREAM/STREAM_HOLE packets). */
export interface StreamSink {
  onPacket(p: Packet): void;
  /** The connection failed or closed; no more packets will come. */
  onClose(err: Error): void;
}

interface PendingCall {
  name: string;
  resolve(body: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export const DEFAULT_CALL_TIMEOUT_MS = 120_000;

export class RpcClient {
  private nextSerial = 1;
  private readonly pending = new Map<number, PendingCall>();
  private readonly streams = new Map<number, StreamSink>();
  private readonly decoder: PacketDecoder;
  private failure: Error | null = null;
  private closing = false;
  private refd = true;
  private drainWaiters: Array<{ resolve(): void; reject(e: Error): void }> = [];
  readonly closed: Promise<void>;
  private settleClosed!: { resolve(): void; reject(e: Error): void };
  /** Keepalive PINGs answered so far (observable for tests and diagnostics). */
  pongsSent = 0;

  constructor(private readonly transport: Transport, private readonly opts: ClientOptions) {
    this.decoder = new PacketDecoder(opts.maxPacket ?? MAX_PACKET);
    this.closed = new Promise<void>((resolve, reject) => {
      this.settleClosed = { resolve, reject };
    });
    // Nobody has to await `closed`; an unexpected hang-up must not become an unhandled rejection.
    this.closed.catch(() => {});

    transport.readable.on('data', (chunk: Buffer) => this.onData(chunk));
    transport.writable.on('drain', () => this.flushDrainWaiters());
    transport.onClose((err) => this.onTransportClosed(err));
    this.updateRef();
  }

  get isOpen(): boolean {
    return this.failure === null;
  }

  /** Calls a procedure and resolves with its decoded result. */
  async call<A, R>(def: ProcDef<A, R>, args: A, timeoutMs = this.opts.callTimeoutMs): Promise<R> {
    const serial = this.allocSerial();
    const body = await this.roundTrip(def, serial, args, timeoutMs);
    try {
      return decode(def.ret, body);
    } catch (e) {
      throw new ProtocolError(`cannot decode the reply of ${def.name}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Starts a streaming call: `sink` receives every packet of the serial, including the
   * initial REPLY. Returns the serial for subsequent `sendStream` calls.
   */
  startStream<A>(def: ProcDef<A, void>, args: A, sink: StreamSink): number {
    const serial = this.allocSerial();
    this.throwIfFailed();
    const packet = this.encodeCall(def, serial, args);
    this.streams.set(serial, sink);
    this.updateRef();
    this.transport.writable.write(packet);
    return serial;
  }

  /** Sends one STREAM packet; returns false when the transport wants a drain first. */
  sendStream(proc: number, serial: number, status: number, data?: Buffer | Buffer[]): boolean {
    this.throwIfFailed();
    const h: Header = { prog: REMOTE_PROGRAM, vers: REMOTE_PROTOCOL_VERSION, proc, type: MessageType.STREAM, serial, status };
    const w = this.transport.writable;
    const parts = data === undefined ? [] : Array.isArray(data) ? data : [data];
    const length = parts.reduce((n, b) => n + b.length, 0);
    if (length === 0) return w.write(encodePacket(h));
    // Header and payload pieces go out in one writev without copying the payload.
    w.cork();
    w.write(prefixFor(h, length));
    let ok = true;
    for (const part of parts) ok = w.write(part);
    w.uncork();
    return ok;
  }

  /**
   * Sends one STREAM_HOLE packet: `length` bytes of zeros the daemon skips instead of
   * receiving (only on streams opened with the SPARSE_STREAM flag). Returns false when
   * the transport wants a drain first.
   */
  sendStreamHole(proc: number, serial: number, length: bigint): boolean {
    this.throwIfFailed();
    const h: Header = { prog: REMOTE_PROGRAM, vers: REMOTE_PROTOCOL_VERSION, proc, type: MessageType.STREAM_HOLE, serial, status: MessageStatus.CONTINUE };
    const body = encode(streamHole, { length, flags: 0 });
    return this.transport.writable.write(Buffer.concat([prefixFor(h, body.length), body]));
  }

  /** Resolves when the transport can take more data; rejects if the connection fails or stalls. */
  waitDrain(timeoutMs = this.opts.callTimeoutMs): Promise<void> {
    this.throwIfFailed();
    if (!this.transport.writable.writableNeedDrain) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((x) => x !== waiter);
        reject(new CallTimeoutError(`the daemon accepted no stream data for ${timeoutMs} ms (${this.transport.description})`));
      }, timeoutMs);
      timer.unref();
      const waiter = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (e: Error) => { clearTimeout(timer); reject(e); },
      };
      this.drainWaiters.push(waiter);
    });
  }

  endStream(serial: number): void {
    this.streams.delete(serial);
    this.updateRef();
  }

  /** Stops reading from the daemon (download backpressure); all traffic on the connection waits. */
  pauseReading(): void {
    this.transport.readable.pause();
  }

  resumeReading(): void {
    if (this.failure === null) this.transport.readable.resume();
  }

  /** Closes politely (CONNECT_CLOSE, then end of transport). Idempotent. */
  async close(): Promise<void> {
    if (this.failure !== null || this.closing) return this.closed.catch(() => {});
    this.closing = true;
    try {
      await this.call(Proc.CONNECT_CLOSE, undefined, Math.min(this.opts.callTimeoutMs, 5_000));
    } catch {
      // The daemon may already be gone; closing must still succeed.
    }
    this.fail(new ConnectionClosedError('connection closed by the client'));
    this.transport.writable.end();
    this.transport.destroy();
    return this.closed.catch(() => {});
  }

  /** Tears down without talking to the daemon. */
  destroy(err: Error = new ConnectionClosedError('connection destroyed')): void {
    this.closing = true;
    this.fail(err);
    this.transport.destroy();
  }

  // ---- internals --------------------------------------------------------------

  /** A fault on our side of the wire: fail everything and reject `closed`. */
  private abort(err: Error): void {
    this.fail(err);
    this.transport.destroy();
  }

  private allocSerial(): number {
    const s = this.nextSerial;
    this.nextSerial = this.nextSerial >= 0xffff_fffe ? 1 : this.nextSerial + 1;
    return s;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private encodeCall<A>(def: ProcDef<A, unknown>, serial: number, args: A): Buffer {
    const w = new XdrWriter(256, PREFIX_SIZE);
    try {
      def.args.encode(w, args);
    } catch (e) {
      if (e instanceof XdrError) throw new LibvirtError({ code: 8, domain: 7, level: 2, message: `invalid arguments for ${def.name}: ${e.message}` });
      throw e;
    }
    const limit = this.opts.maxPacket ?? MAX_PACKET;
    if (w.length > limit) {
      throw new ProtocolError(`${def.name} call of ${w.length} bytes exceeds the ${limit}-byte packet limit`);
    }
    const buf = w.finish();
    writePrefix(buf, { prog: REMOTE_PROGRAM, vers: REMOTE_PROTOCOL_VERSION, proc: def.proc, type: MessageType.CALL, serial, status: MessageStatus.OK });
    return buf;
  }

  private roundTrip<A>(def: ProcDef<A, unknown>, serial: number, args: A, timeoutMs: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      let packet: Buffer;
      try {
        packet = this.encodeCall(def, serial, args);
      } catch (e) {
        return reject(e);
      }
      const timer = setTimeout(() => {
        if (this.pending.delete(serial)) {
          this.updateRef();
          reject(new CallTimeoutError(`${def.name} got no reply within ${timeoutMs} ms (${this.transport.description})`));
        }
      }, timeoutMs);
      // The transport holds the event loop while calls are pending; the timer must not on its own.
      timer.unref();
      this.pending.set(serial, { name: def.name, resolve, reject, timer });
      this.updateRef();
      this.transport.writable.write(packet);
    });
  }

  private onData(chunk: Buffer): void {
    let packets: Packet[];
    try {
      packets = this.decoder.push(chunk);
    } catch (e) {
      const msg = e instanceof FramingError ? e.message : String(e);
      this.abort(new ProtocolError(`bad packet from ${this.transport.description}: ${msg}`, { cause: e }));
      return;
    }
    for (const p of packets) {
      if (this.failure) return;
      try {
        this.dispatch(p);
      } catch (e) {
        this.abort(e instanceof LibvirtError ? e : new ProtocolError(`cannot handle packet: ${(e as Error).message}`, { cause: e }));
        return;
      }
    }
  }

  private dispatch(p: Packet): void {
    const h = p.header;
    if (h.prog === KEEPALIVE_PROGRAM) {
      if (h.proc === KeepaliveProc.PING) {
        this.transport.writable.write(encodePacket({
          prog: KEEPALIVE_PROGRAM, vers: KEEPALIVE_PROTOCOL_VERSION, proc: KeepaliveProc.PONG,
          type: MessageType.MESSAGE, serial: 0, status: MessageStatus.OK,
        }));
        this.pongsSent++;
      }
      return;
    }
    if (h.prog !== REMOTE_PROGRAM || h.vers !== REMOTE_PROTOCOL_VERSION) {
      throw new ProtocolError(`unexpected program 0x${h.prog.toString(16)} version ${h.vers} in a packet from the daemon`);
    }
    const sink = this.streams.get(h.serial);
    if (sink) {
      sink.onPacket(p);
      return;
    }
    switch (h.type) {
      case MessageType.REPLY:
      case MessageType.REPLY_WITH_FDS:
        this.onReply(p);
        return;
      case MessageType.MESSAGE:
        return; // events: this client registers none
      case MessageType.STREAM:
      case MessageType.STREAM_HOLE:
        return; // late packets of a stream already finished or aborted
      default:
        throw new ProtocolError(`unexpected packet type ${h.type} (proc ${h.proc}, serial ${h.serial})`);
    }
  }

  private onReply(p: Packet): void {
    const call = this.pending.get(p.header.serial);
    if (!call) return; // timed out earlier
    this.pending.delete(p.header.serial);
    clearTimeout(call.timer);
    this.updateRef();
    if (p.header.status === MessageStatus.OK) {
      call.resolve(p.body);
    } else if (p.header.status === MessageStatus.ERROR) {
      call.reject(decodeRemoteError(p.body));
    } else {
      call.reject(new ProtocolError(`${call.name} reply has unexpected status ${p.header.status}`));
    }
  }

  private onTransportClosed(err: Error | undefined): void {
    if (this.failure) {
      if (this.closing) this.settleClosed.resolve();
      return;
    }
    const diag = this.transport.diagnostics();
    const why = err ? `: ${err.message}` : '';
    const pendingNames = [...this.pending.values()].map((c) => c.name);
    const during = pendingNames.length ? ` while ${pendingNames.length} call(s) were pending (${[...new Set(pendingNames)].slice(0, 5).join(', ')})` : '';
    this.fail(new ConnectionClosedError(
      `the daemon closed the connection (${this.transport.description})${during}${why}${diag ? `; ${diag}` : ''}`,
      err ? { cause: err } : undefined,
    ));
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const [, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(err);
    }
    this.pending.clear();
    const sinks = [...this.streams.values()];
    this.streams.clear();
    for (const s of sinks) s.onClose(err);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.reject(err);
    if (this.closing) this.settleClosed.resolve();
    else this.settleClosed.reject(err);
    this.transport.unref();
    this.refd = false;
  }

  private flushDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Holds the event loop only while something is in flight, so an idle CLI can exit. */
  private updateRef(): void {
    if (this.failure) return;
    const busy = this.pending.size + this.streams.size > 0;
    if (busy && !this.refd) {
      this.transport.ref();
      this.refd = true;
    } else if (!busy && this.refd) {
      this.transport.unref();
      this.refd = false;
    }
  }
}

export function decodeRemoteError(body: Buffer): LibvirtError {
  try {
    const e = decode(remoteError, body);
    return errorFromRemote(e);
  } catch (cause) {
    return new ProtocolError(`undecodable error reply (${body.length} bytes)`, { cause });
  }
}

export function procName(proc: number): string {
  return PROC_BY_NUMBER.get(proc)?.name ?? `procedure ${proc}`;
}
