// Two real libvirt daemons for multi-host tests: the first (qemu:///system) and the
// second (scripts/second-libvirtd.sh), each with a directory pool of the test's own.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { connect, ErrorCode, VolStreamFlags, type Connection, type PoolRef } from '../../src/libvirt/index.js';
import { isLibvirtError } from '../../src/libvirt/errors.js';
import { contentDigest, type VolumeHome } from '../../src/hosts/move.js';
import { renderDirPool, renderVolume } from '../../src/xml/storage.js';
import { scratchDir } from './scratch.js';

export const MiB = 1024 * 1024;

export class Connections {
  private readonly opened: Connection[] = [];
  async open(uri: string): Promise<Connection> {
    const c = await connect(uri);
    this.opened.push(c);
    return c;
  }
  async closeAll(): Promise<void> {
    for (const c of this.opened.splice(0)) await c.close().catch(() => {});
  }
}

export async function makePool(conn: Connection, name: string): Promise<PoolRef> {
  const pool = await conn.pools.defineXML(renderDirPool({ name, path: scratchDir(`${name}-`) }));
  await conn.pools.create(pool);
  return pool;
}

/** Deletes the pool's volumes, stops and undefines it; the directory goes with the scratch dirs. */
export async function removePool(home: VolumeHome | undefined): Promise<void> {
  if (!home) return;
  for (const v of await home.conn.pools.listAllVolumes(home.pool).catch(() => [])) await home.conn.volumes.delete(v).catch(() => {});
  await home.conn.pools.destroy(home.pool).catch(() => {});
  await home.conn.pools.undefine(home.pool).catch(() => {});
}

/** A raw volume of `capacityMiB` holding random data at the given MiB offsets, zeros (holes) elsewhere. */
export async function sparseVolume(home: VolumeHome, name: string, capacityMiB: number, dataAtMiB: number[]): Promise<void> {
  const vol = await home.conn.volumes.createXML(home.pool, renderVolume({ name, capacityBytes: BigInt(capacityMiB * MiB), allocationBytes: 0n, format: 'raw' }));
  const content = Buffer.alloc(capacityMiB * MiB);
  for (const at of dataAtMiB) randomBytes(MiB).copy(content, at * MiB);
  // a short zero run inside data stays data
  content.fill(0, dataAtMiB[0]! * MiB + 4096, dataAtMiB[0]! * MiB + 8192);
  await home.conn.volumes.upload(vol, Readable.from([content]), { flags: VolStreamFlags.SPARSE_STREAM });
}

export async function exists(home: VolumeHome, name: string): Promise<boolean> {
  try {
    await home.conn.volumes.lookupByName(home.pool, name);
    return true;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return false;
    throw e;
  }
}

export async function digestOf(home: VolumeHome, name: string): Promise<string> {
  return (await contentDigest(home.conn, await home.conn.volumes.lookupByName(home.pool, name))).digest();
}
