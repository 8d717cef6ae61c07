// Volume upload/download over libvirt's stream packets, with bounded memory: upload
// pulls from the source only as fast as the transport drains; download pauses the
// transport while the consumer is behind.
//
// Upload:   CALL → REPLY OK → STREAM/CONTINUE data… → STREAM/OK (finish) → daemon STREAM/OK.
//           With SPARSE_STREAM, STREAM_HOLE/CONTINUE packets (virNetStreamHole) stand for
//           runs of zeros between the data packets.
// Download: CALL → REPLY OK → STREAM/CONTINUE data… → daemon's empty STREAM packet (EOF)
//           → STREAM/OK (finish) → daemon STREAM/OK (confirm).
// Either side may send status ERROR (a remote_error body) at any point; the client
// aborts with an empty STREAM/ERROR.
import { Readable } from 'node:stream';
import type { DownloadOptions, UploadOptions, VolRef } from './api.js';
import { VolStreamFlags } from './api.js';
import { type RpcClient, type StreamSink, decodeRemoteError } from './client.js';
import { ProtocolError } from './errors.js';
import { MessageStatus, MessageType, STREAM_CHUNK, type Packet } from './packet.js';
import { Proc } from './procedures.js';
import { HoleFinder, type Piece } from './holes.js';
import { streamHole } from './remote-types.js';
import { decode } from './xdr.js';

type Deferred = { promise: Promise<void>; resolve(): void; reject(e: Error): void };

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function packetError(p: Packet): Error {
  return decodeRemoteError(p.body);
}

export async function uploadVolume(client: RpcClient, vol: VolRef, source: Readable, opts: UploadOptions = {}): Promise<void> {
  const sparse = ((opts.flags ?? 0) & VolStreamFlags.SPARSE_STREAM) !== 0;
  return uploadPieces(client, vol, sparse ? findHoles(source) : asData(source), opts, () => source.destroy());
}

async function* asData(source: Readable): AsyncGenerator<Piece> {
  for await (const chunk of source as AsyncIterable<Buffer | string>) yield { data: typeof chunk === 'string' ? Buffer.from(chunk) : chunk };
}

async function* findHoles(source: Readable): AsyncGenerator<Piece> {
  const holes = new HoleFinder();
  for await (const piece of asData(source)) if ('data' in piece) yield* holes.push(piece.data);
  yield* holes.end();
}

/**
 * Uploads a stream already cut into data and holes (a sparse download of another
 * volume, for instance), so holes travel as holes without being looked for again.
 * Holes need `flags: VolStreamFlags.SPARSE_STREAM`.
 */
export async function uploadPieces(client: RpcClient, vol: VolRef, pieces: AsyncIterable<Piece>, opts: UploadOptions = {}, abortSource: () => void = () => {}): Promise<void> {
  const proc = Proc.STORAGE_VOL_UPLOAD.proc;
  const replied = deferred();
  const done = deferred();
  let failure: Error | null = null;
  const failWith = (e: Error) => {
    if (!failure) failure = e;
    replied.reject(e);
    done.reject(e);
  };
  const sink: StreamSink = {
    onPacket(p) {
      if (p.header.status === MessageStatus.ERROR) {
        client.endStream(serial);
        failWith(packetError(p));
        return;
      }
      if (p.header.type === MessageType.REPLY) {
        replied.resolve();
      } else if (p.header.type === MessageType.STREAM && p.header.status === MessageStatus.OK) {
        client.endStream(serial);
        done.resolve();
      } else {
        client.endStream(serial);
        failWith(new ProtocolError(`unexpected packet type ${p.header.type}/status ${p.header.status} during upload`));
      }
    },
    onClose: (err) => failWith(err),
  };
  const sparse = ((opts.flags ?? 0) & VolStreamFlags.SPARSE_STREAM) !== 0;
  const serial = client.startStream(Proc.STORAGE_VOL_UPLOAD, {
    vol, offset: opts.offset ?? 0n, length: opts.length ?? 0n, flags: opts.flags ?? 0,
  }, sink);

  try {
    await replied.promise;
  } catch (e) {
    abortSource();
    throw e;
  }

  // Sources such as gunzip → tar hand over ~16 KiB chunks; sent as they come that is
  // ~65,000 packets per GiB, each costing a round through both sides' dispatch. Small
  // chunks are therefore gathered into one packet of up to STREAM_CHUNK bytes, sent as
  // one writev of the pieces (no copy, at most one packet's worth held); large chunks
  // are split into full packets. With SPARSE_STREAM, runs of zeros become STREAM_HOLE
  // packets instead (see holes.ts); the data between them is gathered the same way.
  const pending: Buffer[] = [];
  let pendingLen = 0;
  const flush = async () => {
    if (pendingLen === 0) return;
    const pieces = pending.splice(0);
    pendingLen = 0;
    if (!client.sendStream(proc, serial, MessageStatus.CONTINUE, pieces)) await client.waitDrain();
  };
  const send = async (piece: Piece) => {
    if (failure) throw failure;
    if ('hole' in piece) {
      if (!sparse) throw new ProtocolError('a hole in an upload that is not a sparse stream (VolStreamFlags.SPARSE_STREAM)');
      await flush();
      if (!client.sendStreamHole(proc, serial, BigInt(piece.hole))) await client.waitDrain();
      return;
    }
    let buf = piece.data;
    while (buf.length > 0) {
      if (failure) throw failure;
      const take = Math.min(buf.length, STREAM_CHUNK - pendingLen);
      pending.push(buf.subarray(0, take));
      pendingLen += take;
      buf = buf.subarray(take);
      if (pendingLen === STREAM_CHUNK) await flush();
    }
  };
  try {
    for await (const piece of pieces) await send(piece);
    if (failure) throw failure;
    await flush();
    if (failure) throw failure;
  } catch (e) {
    // The daemon's own error explains more than "source aborted" would.
    const err = failure ?? (e as Error);
    if (!failure && client.isOpen) {
      try { client.sendStream(proc, serial, MessageStatus.ERROR); } catch { /* connection gone */ }
      // Wait (bounded) for the daemon's abort confirmation so the stream is released before we return.
      await Promise.race([done.promise, new Promise((r) => setTimeout(r, 5_000).unref())]).catch(() => {});
      client.endStream(serial);
    }
    throw err;
  }
  client.sendStream(proc, serial, MessageStatus.OK);
  await done.promise;
}

export function downloadVolume(client: RpcClient, vol: VolRef, opts: DownloadOptions = {}): Readable {
  return download(client, vol, opts, false);
}

/**
 * A sparse download (holes requested) as an object-mode readable of `Piece`s: data
 * packets as `{ data }`, the daemon's holes as `{ hole }` without a byte of zeros, ready
 * for uploadPieces or a digest.
 */
export function downloadPieces(client: RpcClient, vol: VolRef, opts: Omit<DownloadOptions, 'flags'> = {}): Readable {
  return download(client, vol, { ...opts, flags: VolStreamFlags.SPARSE_STREAM }, true);
}

function download(client: RpcClient, vol: VolRef, opts: DownloadOptions, asPieces: boolean): Readable {
  const proc = Proc.STORAGE_VOL_DOWNLOAD.proc;
  const sparse = ((opts.flags ?? 0) & VolStreamFlags.SPARSE_STREAM) !== 0;
  let state: 'call' | 'data' | 'finishing' | 'aborting' | 'done' = 'call';
  let serial = 0;
  let zeros: Buffer | undefined;

  const finishWith = (err: Error | null) => {
    if (state === 'done') return;
    const wasAborting = state === 'aborting';
    state = 'done';
    client.endStream(serial);
    client.resumeReading();
    if (wasAborting) return;
    if (err) out.destroy(err);
    else out.push(null);
  };

  const push = (b: Buffer) => {
    if (!out.push(asPieces ? { data: b } : b)) client.pauseReading();
  };

  const out = new Readable({
    // in pieces: four full packets, as the byte mode's 1 MiB
    ...(asPieces ? { objectMode: true, highWaterMark: 4 } : { highWaterMark: 1024 * 1024 }),
    read() {
      client.resumeReading();
    },
    destroy(err, cb) {
      if (state === 'call' || state === 'data' || state === 'finishing') {
        state = 'aborting';
        client.resumeReading();
        try {
          client.sendStream(proc, serial, MessageStatus.ERROR);
        } catch {
          finishWith(null);
        }
      }
      cb(err);
    },
  });

  const early: Packet[] = [];
  const sink: StreamSink = {
    onPacket(p) {
      const { type, status } = p.header;
      if (state === 'aborting') {
        // Data still in flight is dropped; the daemon's answer to our abort ends the stream.
        if (type === MessageType.REPLY || status !== MessageStatus.CONTINUE) finishWith(null);
        return;
      }
      if (status === MessageStatus.ERROR) return finishWith(packetError(p));
      if (state === 'call') {
        // Under load libvirtd can queue the first data packets before the call's REPLY
        // (libvirt's own client buffers them too): keep them until the reply arrives.
        if ((type === MessageType.STREAM || type === MessageType.STREAM_HOLE) && status !== MessageStatus.ERROR) {
          early.push(p);
          return;
        }
        if (type !== MessageType.REPLY) return finishWith(new ProtocolError(`expected the reply to STORAGE_VOL_DOWNLOAD, got packet type ${type}`));
        state = 'data';
        for (const q of early.splice(0)) sink.onPacket(q);
        return;
      }
      if (type === MessageType.STREAM_HOLE) {
        if (!sparse) return finishWith(new ProtocolError('the daemon sent a stream hole although none was requested'));
        const hole = decode(streamHole, p.body);
        if (asPieces) {
          if (!out.push({ hole: Number(hole.length) })) client.pauseReading();
          return;
        }
        zeros ??= Buffer.alloc(STREAM_CHUNK);
        // One shared zero buffer pushed repeatedly: a hole costs no memory per byte.
        for (let left = hole.length; left > 0n;) {
          const n = left > BigInt(zeros.length) ? zeros.length : Number(left);
          push(n === zeros.length ? zeros : zeros.subarray(0, n));
          left -= BigInt(n);
        }
        return;
      }
      if (type !== MessageType.STREAM) return finishWith(new ProtocolError(`unexpected packet type ${type} during download`));
      if (state === 'data' && status === MessageStatus.CONTINUE && p.body.length > 0) {
        push(p.body);
        return;
      }
      // The daemon signals EOF with an empty data packet (status CONTINUE on current daemons, OK on some).
      if (state === 'data' && p.body.length === 0) {
        state = 'finishing';
        try {
          client.sendStream(proc, serial, MessageStatus.OK);
        } catch (e) {
          finishWith(e as Error);
        }
        return;
      }
      if (state === 'finishing' && status === MessageStatus.OK) return finishWith(null);
      finishWith(new ProtocolError(`unexpected stream status ${status} in state ${state}`));
    },
    onClose(err) {
      finishWith(state === 'aborting' ? null : err);
    },
  };

  try {
    serial = client.startStream(Proc.STORAGE_VOL_DOWNLOAD, {
      vol, offset: opts.offset ?? 0n, length: opts.length ?? 0n, flags: opts.flags ?? 0,
    }, sink);
  } catch (e) {
    state = 'done';
    process.nextTick(() => out.destroy(e as Error));
  }
  return out;
}
