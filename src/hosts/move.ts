// Moving a volume from one libvirt host to another through the CPI's own stream client:
// a sparse download from host A piped into a sparse upload on host B, so only the
// allocated bytes travel and nothing is staged on the CPI's machine.
//
// Nothing is lost when a move is interrupted (connection cut, CPI killed, either daemon
// gone): the original on A is deleted only after the copy on B is complete and verified.
// While the copy is being written a marker volume `<name>.partial` stands next to it on
// B, so a copy left half-written is never taken for the volume (isPartialCopy); a retry
// replaces it.
//
// Verification: B's copy is read back (sparse: only allocated bytes) and its content
// digest (digest.ts) compared with the digest of what left A. That is end to end — it
// covers the daemon's write on B, not only the wire — and independent of how B's file
// system lays out holes; its cost is one read of the allocated bytes on B. A cheaper
// check (capacity, allocation, a few sampled blocks) would miss a hole written where
// data belonged, which is exactly what a broken sparse path produces.
import type { Readable } from 'node:stream';
import { ErrorCode, VolStreamFlags, type Connection, type PoolRef, type VolRef } from '../libvirt/api.js';
import { isLibvirtError } from '../libvirt/errors.js';
import type { Piece } from '../libvirt/holes.js';
import { CloudError, NotSupported } from '../rpc/errors.js';
import { parseVolume, renderVolume } from '../xml/storage.js';
import type { DiskFormat } from '../xml/types.js';
import { ContentDigest } from './digest.js';

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
  digest: string;
}

export const PARTIAL_SUFFIX = '.partial';
const MOVABLE_FORMATS: readonly string[] = ['raw', 'qcow2'];

export function partialMarkerName(name: string): string {
  return `${name}${PARTIAL_SUFFIX}`;
}

/** Whether `name` on this host is an unfinished copy of a move (its marker is there). */
export async function isPartialCopy(home: VolumeHome, name: string): Promise<boolean> {
  return (await lookup(home, partialMarkerName(name))) !== null;
}

export async function moveVolume(name: string, from: VolumeHome, to: VolumeHome, log: (line: string) => void = () => {}): Promise<MoveResult> {
  const src = await lookup(from, name);
  if (!src) throw new CloudError(`Cannot move volume ${name} from host ${from.host}: it is not in pool ${from.pool.name} there`);
  const spec = parseVolume(await from.conn.volumes.getXMLDesc(src));
  if (spec.backing) throw new NotSupported(`Cannot move volume ${name} from host ${from.host}: it is an overlay of ${spec.backing.path}, which exists on that host only`);
  if (!MOVABLE_FORMATS.includes(spec.format)) throw new NotSupported(`Cannot move volume ${name} from host ${from.host}: format ${spec.format} (expected one of ${MOVABLE_FORMATS.join(', ')})`);

  // Marker first: from here until it is removed, whatever B holds under `name` is not the volume.
  const marker = (await lookup(to, partialMarkerName(name))) ?? await to.conn.volumes.createXML(to.pool, renderVolume({ name: partialMarkerName(name), capacityBytes: 0n, allocationBytes: 0n, format: 'raw' }));
  const stale = await lookup(to, name);
  if (stale) {
    log(`move ${name}: removing an unfinished copy on ${to.host} left by an earlier attempt`);
    await to.conn.volumes.delete(stale);
  }
  const dst = await to.conn.volumes.createXML(to.pool, renderVolume({ name, capacityBytes: spec.capacityBytes, allocationBytes: 0n, format: spec.format as DiskFormat }));
  const sent = new ContentDigest();
  try {
    await to.conn.volumes.uploadPieces(dst, tap(from.conn.volumes.downloadPieces(src), sent), { flags: VolStreamFlags.SPARSE_STREAM });
    const copied = await contentDigest(to.conn, dst);
    if (copied.digest() !== sent.digest() || copied.length !== sent.length) {
      throw new CloudError(`Moving volume ${name} from host ${from.host} to ${to.host}: the copy does not match the original (${copied.length} bytes, digest ${copied.digest().slice(0, 12)}… vs ${sent.length} bytes, ${sent.digest().slice(0, 12)}…); the original is kept`, { okToRetry: true });
    }
  } catch (e) {
    // Best effort: a copy left behind keeps its marker and is replaced by the next attempt.
    await to.conn.volumes.delete(dst).catch(() => {});
    if (e instanceof CloudError) throw e;
    throw new CloudError(`Moving volume ${name} from host ${from.host} to ${to.host} was interrupted: ${(e as Error).message}; the original is kept on ${from.host}, retry the call`, { okToRetry: true, cause: e });
  }
  await to.conn.volumes.delete(marker);
  log(`move ${name}: ${from.host} → ${to.host} verified (${sent.dataBytes} bytes of data, ${sent.length} bytes long)`);
  await from.conn.volumes.delete(src);
  return { capacityBytes: spec.capacityBytes, dataBytes: sent.dataBytes, lengthBytes: sent.length, digest: sent.digest() };
}

/** The content digest of a volume, read as a sparse stream. */
export async function contentDigest(conn: Connection, vol: VolRef): Promise<ContentDigest> {
  const d = new ContentDigest();
  for await (const piece of conn.volumes.downloadPieces(vol) as AsyncIterable<Piece>) d.push(piece);
  return d;
}

async function* tap(pieces: Readable, digest: ContentDigest): AsyncGenerator<Piece> {
  for await (const piece of pieces as AsyncIterable<Piece>) {
    digest.push(piece);
    yield piece;
  }
}

async function lookup(home: VolumeHome, name: string): Promise<VolRef | null> {
  try {
    return await home.conn.volumes.lookupByName(home.pool, name);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return null;
    throw e;
  }
}
