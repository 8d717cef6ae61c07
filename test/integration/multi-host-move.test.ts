// Moving a volume between two independent libvirt daemons on this machine (the first
// one and scripts/second-libvirtd.sh's) through the CPI's stream client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { connect, ErrorCode, VolStreamFlags, type Connection, type PoolRef } from '../../src/libvirt/index.js';
import { isLibvirtError } from '../../src/libvirt/errors.js';
import { Proc } from '../../src/libvirt/procedures.js';
import { contentDigest, isPartialCopy, moveVolume, partialMarkerName, type VolumeHome } from '../../src/hosts/move.js';
import { CloudError } from '../../src/errors.js';
import { renderDirPool, renderVolume } from '../../src/xml/storage.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';
import { requireSecondDaemon, SECOND_SOCKET, SECOND_URI } from '../helpers/second-daemon.js';

const PREFIX = `mh-${process.pid}-`;
const MiB = 1024 * 1024;
const opened: Connection[] = [];
let a: VolumeHome;
let b: VolumeHome;
let proxy: CuttingProxy | undefined;

async function open(uri: string): Promise<Connection> {
  const c = await connect(uri);
  opened.push(c);
  return c;
}

async function makePool(conn: Connection, name: string): Promise<PoolRef> {
  const pool = await conn.pools.defineXML(renderDirPool({ name, path: scratchDir(`${name}-`) }));
  await conn.pools.create(pool);
  return pool;
}

async function removePool(home: VolumeHome | undefined): Promise<void> {
  if (!home) return;
  for (const v of await home.conn.pools.listAllVolumes(home.pool).catch(() => [])) await home.conn.volumes.delete(v).catch(() => {});
  await home.conn.pools.destroy(home.pool).catch(() => {});
  await home.conn.pools.undefine(home.pool).catch(() => {});
}

/** A raw volume of `capacityMiB` holding random data at the given MiB offsets, zeros (holes) elsewhere. */
async function sparseVolume(home: VolumeHome, name: string, capacityMiB: number, dataAtMiB: number[]): Promise<void> {
  const vol = await home.conn.volumes.createXML(home.pool, renderVolume({ name, capacityBytes: BigInt(capacityMiB * MiB), allocationBytes: 0n, format: 'raw' }));
  const content = Buffer.alloc(capacityMiB * MiB);
  for (const at of dataAtMiB) randomBytes(MiB).copy(content, at * MiB);
  // a short zero run inside data stays data; scattered non-zero bytes make mixed blocks
  content.fill(0, dataAtMiB[0]! * MiB + 4096, dataAtMiB[0]! * MiB + 8192);
  await home.conn.volumes.upload(vol, Readable.from([content]), { flags: VolStreamFlags.SPARSE_STREAM });
}

async function exists(home: VolumeHome, name: string): Promise<boolean> {
  try {
    await home.conn.volumes.lookupByName(home.pool, name);
    return true;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) return false;
    throw e;
  }
}

async function digestOf(home: VolumeHome, name: string): Promise<string> {
  return (await contentDigest(home.conn, await home.conn.volumes.lookupByName(home.pool, name))).digest();
}

beforeAll(async () => {
  requireDaemon();
  requireSecondDaemon();
  const first = await open('qemu:///system');
  const second = await open(SECOND_URI);
  a = { host: 'host-a', conn: first, pool: await makePool(first, `${PREFIX}pool-a`) };
  b = { host: 'host-b', conn: second, pool: await makePool(second, `${PREFIX}pool-b`) };
});

afterAll(async () => {
  await proxy?.close();
  await removePool(a);
  await removePool(b);
  for (const c of opened) await c.close().catch(() => {});
});

describe('moving a volume between two libvirt daemons', () => {
  it('moves a sparse raw volume: only the allocated bytes travel, B holds the same content, A no longer has it', async () => {
    const name = `${PREFIX}raw`;
    await sparseVolume(a, name, 64, [0, 17, 63]);
    const before = await digestOf(a, name);

    const moved = await moveVolume(name, a, b, { verify: 'full' });

    expect(moved.verified).toBe('full');
    expect(moved.lengthBytes).toBe(64 * MiB);
    expect(moved.dataBytes).toBeLessThan(4 * MiB);
    expect(moved.dataBytes).toBeGreaterThanOrEqual(3 * MiB - 4096);
    expect(await digestOf(b, name)).toBe(before);
    expect(await exists(a, name)).toBe(false);
    expect(await exists(b, partialMarkerName(name))).toBe(false);
    const info = await b.conn.volumes.getInfo(await b.conn.volumes.lookupByName(b.pool, name));
    expect(info.capacity).toBe(BigInt(64 * MiB));
    // the copy stays sparse on B's file system
    expect(info.allocation).toBeLessThan(BigInt(8 * MiB));
  });

  it('moves a qcow2 volume as it is (format and capacity kept)', async () => {
    const name = `${PREFIX}qcow2`;
    await a.conn.volumes.createXML(a.pool, renderVolume({ name, capacityBytes: BigInt(1024 * MiB), allocationBytes: 0n, format: 'qcow2' }));
    const before = await digestOf(a, name);
    await moveVolume(name, a, b);
    const xml = await b.conn.volumes.getXMLDesc(await b.conn.volumes.lookupByName(b.pool, name));
    expect(xml).toMatch(/<format type='qcow2'\/>/);
    expect(xml).toMatch(/<capacity unit='bytes'>1073741824<\/capacity>/);
    expect(await digestOf(b, name)).toBe(before);
    expect(await exists(a, name)).toBe(false);
  });

  it('a move cut mid-stream keeps the original, marks the half copy, and a retry finishes', async () => {
    const name = `${PREFIX}cut`;
    await sparseVolume(a, name, 32, [1, 5, 9, 13, 30]);
    const before = await digestOf(a, name);
    // a real connection drop between the CPI and host B, 1 MiB into the upload's data
    proxy = await startCuttingProxy(SECOND_SOCKET);
    const viaProxy: VolumeHome = { ...b, conn: await open(proxy.uri) };
    proxy.arm({ procedure: Proc.STORAGE_VOL_UPLOAD.proc, when: 'mid-stream', afterBytes: MiB });

    const err = await moveVolume(name, a, viaProxy).then(() => null, (e: unknown) => e);

    expect(proxy.cuts).toBe(1);
    expect(err).toBeInstanceOf(CloudError);
    expect((err as CloudError).okToRetry).toBe(true);
    expect((err as CloudError).message).toMatch(/interrupted.*the original is kept on host-a/);
    expect(await digestOf(a, name)).toBe(before);
    // whatever B holds under that name is marked unfinished
    expect(await isPartialCopy(b, name)).toBe(true);

    const moved = await moveVolume(name, a, b);
    expect(moved.verified).toBe('sample');
    expect(await digestOf(b, name)).toBe(before);
    expect(await isPartialCopy(b, name)).toBe(false);
    expect(await exists(a, name)).toBe(false);
  });

  it.each(['full', 'sample'] as const)('a copy damaged on its way is refused (verify %s): the original stays, nothing is deleted on A', async (verify) => {
    const name = `${PREFIX}bad-${verify}`;
    await sparseVolume(a, name, 16, [0, 7]);
    const before = await digestOf(a, name);
    proxy ??= await startCuttingProxy(SECOND_SOCKET);
    const viaProxy: VolumeHome = { ...b, conn: await open(proxy.uri) };
    // one byte of the first MiB (always among the sampled windows), past the packet header
    proxy.arm({ procedure: Proc.STORAGE_VOL_UPLOAD.proc, when: 'corrupt-stream', afterBytes: 4096 });

    const err = await moveVolume(name, a, viaProxy, { verify }).then(() => null, (e: unknown) => e);

    expect(proxy.cuts).toBe(1);
    expect(err).toBeInstanceOf(CloudError);
    expect((err as CloudError).okToRetry).toBe(true);
    expect((err as CloudError).message).toMatch(/the copy does not match the original.*the original is kept/);
    expect(await digestOf(a, name)).toBe(before);
    expect(await exists(b, name)).toBe(false);
  });
});
