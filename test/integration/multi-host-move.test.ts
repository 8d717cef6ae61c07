// Moving a volume between two independent libvirt daemons on this machine (the first
// one and scripts/second-libvirtd.sh's) through the CPI's stream client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc } from '../../src/libvirt/procedures.js';
import { copyState, moveVolume, partialMarkerName, type VolumeHome } from '../../src/hosts/move.js';
import { HostUnreachable, locateVolume, type HostHandle } from '../../src/hosts/locate.js';
import { CloudError } from '../../src/errors.js';
import { renderVolume } from '../../src/xml/storage.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { requireSecondDaemon, SECOND_SOCKET, SECOND_URI } from '../helpers/second-daemon.js';
import { Connections, digestOf, exists, makePool, MiB, removePool, sparseVolume } from '../helpers/two-hosts.js';

const PREFIX = `mh-${process.pid}-`;
const conns = new Connections();
let a: VolumeHome;
let b: VolumeHome;
let proxy: CuttingProxy | undefined;
/** in front of host A's daemon, to cut the move where a kill would stop it */
let proxyA: CuttingProxy | undefined;

beforeAll(async () => {
  requireDaemon();
  requireSecondDaemon();
  const first = await conns.open('qemu:///system');
  const second = await conns.open(SECOND_URI);
  a = { host: 'host-a', conn: first, pool: await makePool(first, `${PREFIX}pool-a`) };
  b = { host: 'host-b', conn: second, pool: await makePool(second, `${PREFIX}pool-b`) };
});

afterAll(async () => {
  await proxy?.close();
  await proxyA?.close();
  await removePool(a);
  await removePool(b);
  await conns.closeAll();
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
    const viaProxy: VolumeHome = { ...b, conn: await conns.open(proxy.uri) };
    proxy.arm({ procedure: Proc.STORAGE_VOL_UPLOAD.proc, when: 'mid-stream', afterBytes: MiB });

    const err = await moveVolume(name, a, viaProxy).then(() => null, (e: unknown) => e);

    expect(proxy.cuts).toBe(1);
    expect(err).toBeInstanceOf(CloudError);
    expect((err as CloudError).okToRetry).toBe(true);
    expect((err as CloudError).message).toMatch(/interrupted.*the original is kept on host-a/);
    expect(await digestOf(a, name)).toBe(before);
    // whatever B holds under that name is marked unfinished
    expect(await copyState(b, name)).toBe('copying');

    const moved = await moveVolume(name, a, b);
    expect(moved.verified).toBe('sample');
    expect(await digestOf(b, name)).toBe(before);
    expect(await copyState(b, name)).toBe('none');
    expect(await exists(a, name)).toBe(false);
  });

  it.each(['full', 'sample'] as const)('a copy damaged on its way is refused (verify %s): the original stays, nothing is deleted on A', async (verify) => {
    const name = `${PREFIX}bad-${verify}`;
    await sparseVolume(a, name, 16, [0, 7]);
    const before = await digestOf(a, name);
    proxy ??= await startCuttingProxy(SECOND_SOCKET);
    const viaProxy: VolumeHome = { ...b, conn: await conns.open(proxy.uri) };
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

  describe('a move stopped around the removal of the original (where a kill could stop it)', () => {
    const handles = (aDown = false): HostHandle[] => [
      { name: 'host-a', open: async () => { if (aDown) throw new Error('connection refused (host-a stopped for the test)'); return a; } },
      { name: 'host-b', open: async () => b },
    ];
    /** Moves a fresh volume A → B with the original's removal on A cut as `when` says; its digest and the move's error. */
    const moveStoppedAtRemoval = async (name: string, dataAtMiB: number[], when: 'before' | 'after-reply') => {
      await sparseVolume(a, name, 16, dataAtMiB);
      const before = await digestOf(a, name);
      proxyA ??= await startCuttingProxy();
      const from: VolumeHome = { ...a, conn: await conns.open(proxyA.uri) };
      proxyA.arm({ procedure: Proc.STORAGE_VOL_DELETE.proc, when });
      const err = await moveVolume(name, from, b).then(() => null, (e: unknown) => e);
      return { before, err: err as CloudError };
    };

    it('just before: the copy is marked verified, the original stays the volume, and with its host down the copy is not taken for it', async () => {
      const name = `${PREFIX}before-delete`;
      const { before, err } = await moveStoppedAtRemoval(name, [2, 11], 'before');

      expect(proxyA!.cuts).toBe(1);
      expect(err.okToRetry).toBe(true);
      expect(err.message).toMatch(/complete and verified, but the move could not finish/);
      expect(await digestOf(a, name)).toBe(before);
      expect(await copyState(b, name)).toBe('verified');
      // never two unmarked copies: the original is the volume…
      expect((await locateVolume(name, 'host-a', handles()))?.host).toBe('host-a');
      // …and while its host cannot be asked, the copy is not taken for it
      await expect(locateVolume(name, 'host-a', handles(true))).rejects.toBeInstanceOf(HostUnreachable);
      expect(await copyState(b, name)).toBe('verified');
      // the retry replaces the copy and finishes
      await moveVolume(name, a, b);
      expect(await exists(a, name)).toBe(false);
      expect(await copyState(b, name)).toBe('none');
      expect(await digestOf(b, name)).toBe(before);
    });

    it('just after (the removal took effect, its answer lost): the verified copy is the only one, and the next lookup takes it and finishes the move', async () => {
      const name = `${PREFIX}after-delete`;
      const { before, err } = await moveStoppedAtRemoval(name, [3, 7], 'after-reply');

      expect(err.okToRetry).toBe(true);
      expect(await exists(a, name)).toBe(false);
      expect(await copyState(b, name)).toBe('verified');
      // while host A cannot be asked it may still hold an unmarked copy: retryable, not found nowhere
      await expect(locateVolume(name, 'host-a', handles(true))).rejects.toBeInstanceOf(HostUnreachable);
      const found = await locateVolume(name, 'host-a', handles());
      expect(found?.host).toBe('host-b');
      expect(await copyState(b, name)).toBe('none');
      expect(await digestOf(b, name)).toBe(before);
    });
  });
});
