// Moving a volume from one libvirt host to another through the CPI's own stream client:
// a sparse download from host A piped into a sparse upload on host B, so only the
// allocated bytes travel and nothing is staged on the CPI's machine.
//
// Nothing is lost when a move is interrupted (connection cut, CPI killed, either daemon
// gone): the original on A is deleted only after the copy on B is complete and verified.
// A marker volume `<name>.partial` stands next to the copy on B from before its first
// byte until after the original is gone, so there is never a moment with two unmarked
// copies (one of which would go stale). The marker is empty while the copy is written
// (a half copy: never the volume, and a retry replaces it) and says `verified` once the
// copy is complete and checked (copyState): the original may then be gone, and a lookup
// that finds no unmarked copy on any host takes the verified one (locate.ts).
//
// Verification. Loss in transit is already excluded before it starts: libvirt confirms
// the end of an upload only once the daemon has written every byte, a dropped or broken
// connection fails the stream, and the transports (unix, TCP, TLS, ssh) deliver bytes in
// order and intact. What is left to catch is a copy that is complete but wrong in places
// — a hole where data belonged, a truncated or overlong tail, a wrong header — which is
// what a bug in the sparse path would produce. 'sample' (the default) catches those:
// the first and the last data packet that left A, twelve more drawn uniformly at random
// while the stream passed (verify.ts), and four random places in the holes (zeros) are
// read back from B and compared, and B's copy must end where A's does. A is not read
// again, and the cost (~4 MiB in ~17 small reads) does not grow with the volume; a
// single damaged byte elsewhere can slip through, which is what 'full' is for. 'full'
// reads B's copy back entirely
// (sparse: only its allocated bytes) and compares a layout-independent digest of it with
// that of what left A (digest.ts); it doubles the time of a move (measured in
// docs/multi-host.md), which is why it is not the default.
import { Readable } from 'node:stream';
import { ErrorCode, VolStreamFlags, type Connection, type PoolRef, type VolRef } from '../libvirt/api.js';
import { isLibvirtError } from '../libvirt/errors.js';
import type { Piece } from '../libvirt/holes.js';
import { CloudError, NotSupported } from '../errors.js';
import { parseVolume, renderVolume } from '../xml/storage.js';
import type { DiskFormat } from '../xml/types.js';
import { ContentDigest } from './digest.js';
import { StreamRecord } from './verify.js';
import { Suffix, suffixed } from '../driver/shared/names.js';

export interface VolumeHome {
  /** host name, for messages */
  host: string;
  conn: Connection;
  pool: PoolRef;
}

export interface MoveResult {
  capacityBytes: bigint;
  /** bytes sent as data (the rest of the length travelled as holes) */
  dataBytes: number;
  /** logical length of the volume's file */
  lengthBytes: number;
  verified: Verification;
}

export type Verification = 'sample' | 'full';

export interface MoveOptions {
  verify?: Verification;
  /** copy: keep the original (a stemcell shared by every host) */
  keepOriginal?: boolean;
  log?: (line: string) => void;
}


/** A marker's size: room for its word; zeros (a new marker) say 'copying'. */
const MARKER_BYTES = 512;
const VERIFIED = 'verified';
const SAMPLE_READS_AT_ONCE = 8;
const MOVABLE_FORMATS: readonly string[] = ['raw', 'qcow2'];

export function partialMarkerName(name: string): string {
  return suffixed(name, Suffix.partial);
}

/**
 * What a move left of `name` on this host: 'none' (no marker: if the volume is there, it
 * is the volume), 'copying' (a half copy, never the volume) or 'verified' (a complete,
 * checked copy whose original may still exist on the source host).
 */
export async function copyState(home: VolumeHome, name: string): Promise<CopyState> {
  const marker = await lookup(home, partialMarkerName(name));
  if (!marker) return 'none';
  const parts: Buffer[] = [];
  try {
    for await (const chunk of home.conn.volumes.download(marker, { length: BigInt(MARKER_BYTES) }) as AsyncIterable<Buffer>) parts.push(chunk);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return copyState(home, name); // finished meanwhile
    throw e;
  }
  return Buffer.concat(parts).toString('utf8').replace(/\0[\s\S]*$/, '').trim() === VERIFIED ? 'verified' : 'copying';
}

export type CopyState = 'none' | 'copying' | 'verified';

/** The last step of a move whose original is gone: the verified copy becomes the volume. */
export async function finishCopy(home: VolumeHome, name: string): Promise<void> {
  const marker = await lookup(home, partialMarkerName(name));
  if (!marker) return;
  await home.conn.volumes.delete(marker).catch((e: unknown) => {
    if (!isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) throw e;
  });
}

export async function moveVolume(name: string, from: VolumeHome, to: VolumeHome, opts: MoveOptions = {}): Promise<MoveResult> {
  const verify = opts.verify ?? 'sample';
  const log = opts.log ?? (() => {});
  const src = await lookup(from, name);
  if (!src) throw new CloudError(`Cannot move volume ${name} from host ${from.host}: it is not in pool ${from.pool.name} there`);
  const spec = parseVolume(await from.conn.volumes.getXMLDesc(src));
  if (spec.backing) throw new NotSupported(`Cannot move volume ${name} from host ${from.host}: it is an overlay of ${spec.backing.path}, which exists on that host only`);
  if (!MOVABLE_FORMATS.includes(spec.format)) throw new NotSupported(`Cannot move volume ${name} from host ${from.host}: format ${spec.format} (expected one of ${MOVABLE_FORMATS.join(', ')})`);

  // Marker first: from here until it is removed, whatever B holds under `name` is not the
  // volume. A marker an earlier attempt left (empty, or 'verified' while the original was
  // still here: the caller found it here) is replaced by an empty one only once the copy
  // it stands for is gone, so no copy on B is ever without a marker.
  const markerName = partialMarkerName(name);
  const earlier = await lookup(to, markerName);
  const emptyMarker = () => to.conn.volumes.createXML(to.pool, renderVolume({ name: markerName, capacityBytes: BigInt(MARKER_BYTES), allocationBytes: 0n, format: 'raw' }));
  let marker = earlier ?? (await emptyMarker());
  const stale = await lookup(to, name);
  if (stale) {
    log(`move ${name}: removing a copy on ${to.host} left by an earlier attempt`);
    await to.conn.volumes.delete(stale);
  }
  if (earlier) {
    await to.conn.volumes.delete(earlier);
    marker = await emptyMarker();
  }
  const dst = await to.conn.volumes.createXML(to.pool, renderVolume({ name, capacityBytes: spec.capacityBytes, allocationBytes: 0n, format: spec.format as DiskFormat }));
  const sent = new StreamRecord();
  const sentDigest = verify === 'full' ? new ContentDigest() : null;
  try {
    await to.conn.volumes.uploadPieces(dst, tap(from.conn.volumes.downloadPieces(src), sent, sentDigest), { flags: VolStreamFlags.SPARSE_STREAM });
    const mismatch = sentDigest ? await compareFully(to.conn, dst, sentDigest) : await compareSamples(to.conn, dst, sent);
    if (mismatch) {
      throw new CloudError(`Moving volume ${name} from host ${from.host} to ${to.host}: the copy does not match the original (${mismatch}); the original is kept`, { okToRetry: true });
    }
  } catch (e) {
    // Best effort: a copy left behind keeps its marker and is replaced by the next attempt.
    await to.conn.volumes.delete(dst).catch(() => {});
    if (e instanceof CloudError) throw e;
    throw new CloudError(`Moving volume ${name} from host ${from.host} to ${to.host} was interrupted: ${(e as Error).message}; the original is kept on ${from.host}, retry the call`, { okToRetry: true, cause: e });
  }
  log(`move ${name}: ${from.host} → ${to.host} verified (${verify}; ${sent.dataBytes} bytes of data, ${sent.length} bytes long)`);
  try {
    // The copy is complete: say so before the original goes (see the top).
    const word = Buffer.from(VERIFIED);
    await to.conn.volumes.upload(marker, Readable.from([word]), { offset: 0n, length: BigInt(word.length) });
    if (!opts.keepOriginal) await from.conn.volumes.delete(src);
    await to.conn.volumes.delete(marker);
  } catch (e) {
    throw new CloudError(`Moving volume ${name} from host ${from.host} to ${to.host}: the copy is complete and verified, but the move could not finish (${(e as Error).message}); a retry finishes it`, { okToRetry: true, cause: e });
  }
  return { capacityBytes: spec.capacityBytes, dataBytes: sent.dataBytes, lengthBytes: sent.length, verified: verify };
}

/** The content digest of a volume, read as a sparse stream. */
export async function contentDigest(conn: Connection, vol: VolRef): Promise<ContentDigest> {
  const d = new ContentDigest();
  for await (const piece of conn.volumes.downloadPieces(vol) as AsyncIterable<Piece>) d.push(piece);
  return d;
}

async function* tap(pieces: Readable, map: StreamRecord, digest: ContentDigest | null): AsyncGenerator<Piece> {
  for await (const piece of pieces as AsyncIterable<Piece>) {
    map.push(piece);
    digest?.push(piece);
    yield piece;
  }
}

/** A description of the first difference, or null. */
async function compareFully(conn: Connection, copy: VolRef, sent: ContentDigest): Promise<string | null> {
  const copied = await contentDigest(conn, copy);
  if (copied.length !== sent.length) return `${copied.length} bytes instead of ${sent.length}`;
  if (copied.digest() !== sent.digest()) return `content digest ${copied.digest().slice(0, 12)}… instead of ${sent.digest().slice(0, 12)}…`;
  return null;
}

async function compareSamples(conn: Connection, copy: VolRef, sent: StreamRecord): Promise<string | null> {
  // Each read is a stream with a helper process of its own on the daemon: several at a
  // time (within libvirtd's default 20 workers), not one after the other.
  const expected = sent.expectations();
  for (let i = 0; i < expected.length; i += SAMPLE_READS_AT_ONCE) {
    const batch = expected.slice(i, i + SAMPLE_READS_AT_ONCE);
    const got = await Promise.all(batch.map((e) => readRange(conn, copy, e.offset, e.bytes.length)));
    const bad = batch.findIndex((e, j) => !e.bytes.equals(got[j]!));
    if (bad >= 0) return `bytes ${batch[bad]!.offset}..${batch[bad]!.offset + batch[bad]!.bytes.length} differ`;
  }
  // Past the original's end the copy must have nothing (an overlong copy would otherwise pass).
  const tail = await readRange(conn, copy, sent.length, 1).catch(() => Buffer.alloc(0));
  if (tail.length > 0) return `the copy is longer than ${sent.length} bytes`;
  return null;
}

async function readRange(conn: Connection, vol: VolRef, offset: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of conn.volumes.download(vol, { offset: BigInt(offset), length: BigInt(length) }) as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}

/** The volume `name` on that host, or null. */
export async function lookup(home: VolumeHome, name: string): Promise<VolRef | null> {
  try {
    return await home.conn.volumes.lookupByName(home.pool, name);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return null;
    throw e;
  }
}
