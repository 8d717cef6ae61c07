// Finding a disk's host from libvirt alone across two independent daemons: by the
// birth host in its CID, a forwarding record after a move, the other hosts when the
// record is missing — and a retryable error, never "not found", while a host is down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { CloudError } from '../../src/errors.js';
import { bornName, forwardName, locateVolume, moveDisk, readBirth, splitHost, withHost, type HostHandle } from '../../src/hosts/locate.js';
import { copyState, moveVolume, type VolumeHome } from '../../src/hosts/move.js';
import { renderVolume } from '../../src/xml/storage.js';
import { Readable } from 'node:stream';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { requireSecondDaemon, secondDaemon, SECOND_URI } from '../helpers/second-daemon.js';
import { Connections, digestOf, exists, makePool, removePool, sparseVolume } from '../helpers/two-hosts.js';

const PREFIX = `mh-${process.pid}-`;
const conns = new Connections();
let a: VolumeHome;
let b: VolumeHome;
/** how often each host was opened by the code under test */
const opens = { 'host-a': 0, 'host-b': 0 };
const poolB = `${PREFIX}pool-b`;

/** Host handles as the routing layer would hold them: host-b opened afresh each time, so a stopped daemon is seen. */
const handles: HostHandle[] = [
  { name: 'host-a', open: async () => { opens['host-a']++; return a; } },
  {
    name: 'host-b',
    open: async () => {
      opens['host-b']++;
      const conn = await conns.open(SECOND_URI);
      return { host: 'host-b', conn, pool: await conn.pools.lookupByName(poolB) };
    },
  },
];
const handle = (name: string) => handles.find((h) => h.name === name)!;

function diskCid(): string {
  return `${PREFIX}disk-${randomUUID()}`;
}

beforeAll(async () => {
  requireDaemon();
  requireSecondDaemon();
  const first = await conns.open('qemu:///system');
  const second = await conns.open(SECOND_URI);
  a = { host: 'host-a', conn: first, pool: await makePool(first, `${PREFIX}pool-a`) };
  b = { host: 'host-b', conn: second, pool: await makePool(second, poolB) };
});

afterAll(async () => {
  // the daemon-down test restarts it itself; this is for a failure half way
  secondDaemon('start');
  await removePool(a);
  const second = await conns.open(SECOND_URI).catch(() => null);
  if (second) await removePool({ host: 'host-b', conn: second, pool: await second.pools.lookupByName(poolB) });
  await conns.closeAll();
});

describe('multi-host CIDs', () => {
  it('carry the birth host after @; single-host CIDs have none', () => {
    const cid = 'disk-0b7e0c1e-8a38-4c43-9f0e-8f6c7e4b1f11';
    expect(withHost(cid, 'host-b')).toBe(`${cid}@host-b`);
    expect(splitHost(withHost(cid, 'host-b'))).toEqual({ cid, host: 'host-b' });
    expect(splitHost(cid)).toEqual({ cid, host: null });
    expect(splitHost(`${cid}@`)).toEqual({ cid: `${cid}@`, host: null });
  });
});

describe('locating a disk on two libvirt daemons', () => {
  it('asks the birth host first and only it when the disk is there', async () => {
    const cid = diskCid();
    await sparseVolume(a, cid, 4, [0]);
    opens['host-a'] = opens['host-b'] = 0;
    const found = await locateVolume(cid, 'host-a', handles);
    expect(found?.host).toBe('host-a');
    expect(opens).toEqual({ 'host-a': 1, 'host-b': 0 });
  });

  it('follows the forwarding record after a move, falls back to asking every host without it, and a move home removes it', async () => {
    const cid = diskCid();
    await sparseVolume(a, cid, 8, [0, 3]);
    await sparseVolume(a, `${cid}.meta`, 1, [0]);
    const before = await digestOf(a, cid);

    await moveDisk(cid, handle('host-a'), a, b, [`${cid}.meta`]);
    expect(await exists(a, forwardName(cid))).toBe(true);
    expect(await exists(b, `${cid}.meta`)).toBe(true);
    expect(await exists(a, `${cid}.meta`)).toBe(false);
    expect(await readBirth(b, cid)).toBe('host-a');
    const found = await locateVolume(cid, 'host-a', handles);
    expect(found?.host).toBe('host-b');
    expect(await digestOf(found!.home, cid)).toBe(before);

    // a move interrupted after the original went but before the record was written
    await a.conn.volumes.delete(await a.conn.volumes.lookupByName(a.pool, forwardName(cid)));
    expect((await locateVolume(cid, 'host-a', handles))?.host).toBe('host-b');

    await moveDisk(cid, handle('host-a'), b, a, [`${cid}.meta`]);
    expect(await exists(a, forwardName(cid))).toBe(false);
    expect(await exists(b, bornName(cid))).toBe(false);
    expect(await readBirth(a, cid)).toBeNull();
    expect((await locateVolume(cid, 'host-a', handles))?.host).toBe('host-a');
  });

  it('a retried move finishes a metadata volume an earlier attempt moved up to removing its original (its verified marker goes)', async () => {
    const cid = diskCid();
    await sparseVolume(a, cid, 4, [0]);
    // the earlier attempt: the metadata copied and verified, its original removed, the marker left
    await sparseVolume(a, `${cid}.meta`, 1, [0]);
    await moveVolume(`${cid}.meta`, a, b, { verify: 'full', keepOriginal: true });
    await a.conn.volumes.delete(await a.conn.volumes.lookupByName(a.pool, `${cid}.meta`));
    const marker = await b.conn.volumes.createXML(b.pool, renderVolume({ name: `${cid}.meta.partial`, capacityBytes: 512n, allocationBytes: 0n, format: 'raw' }));
    await b.conn.volumes.upload(marker, Readable.from([Buffer.from('verified')]));
    expect(await copyState(b, `${cid}.meta`)).toBe('verified');

    await moveDisk(cid, handle('host-a'), a, b, [`${cid}.meta`]);
    expect(await copyState(b, `${cid}.meta`)).toBe('none');
    expect(await exists(b, `${cid}.meta`)).toBe(true);
    expect((await locateVolume(cid, 'host-a', handles))?.host).toBe('host-b');
  });

  it('a half-written copy is not the disk; a disk on no host is null', async () => {
    const cid = diskCid();
    await sparseVolume(b, cid, 1, [0]);
    await sparseVolume(b, `${cid}.partial`, 1, [0]);
    expect(await locateVolume(cid, 'host-a', handles)).toBeNull();
    expect(await locateVolume(diskCid(), 'host-b', handles)).toBeNull();
  });

  it('with the second daemon stopped: disks on the first host are found, anything that may be on the second is a retryable error, never null', async () => {
    const onA = diskCid();
    await sparseVolume(a, onA, 1, [0]);
    const onB = diskCid();
    await sparseVolume(b, onB, 1, [0]);
    const movedToB = diskCid();
    await sparseVolume(a, movedToB, 1, [0]);
    await moveDisk(movedToB, handle('host-a'), a, b);

    secondDaemon('stop');
    try {
      expect((await locateVolume(onA, 'host-a', handles))?.host).toBe('host-a');
      for (const [cid, birth] of [[onB, 'host-b'], [movedToB, 'host-a'], [diskCid(), 'host-a']] as const) {
        const err = await locateVolume(cid, birth, handles).then(() => null, (e: unknown) => e);
        expect(err, cid).toBeInstanceOf(CloudError);
        expect((err as CloudError).okToRetry).toBe(true);
        expect((err as CloudError).message).toMatch(/Cannot reach libvirt host host-b .* retry when the host is back/);
      }
    } finally {
      secondDaemon('start');
    }
    expect((await locateVolume(onB, 'host-b', handles))?.host).toBe('host-b');
    expect((await locateVolume(movedToB, 'host-a', handles))?.host).toBe('host-b');
  });
});
