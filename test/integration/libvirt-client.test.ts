// The libvirt RPC client against the real libvirtd on this machine.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionClosedError, DomainState, DrvFeature, ErrorCode, MetadataType, NetworkUpdateCommand, NetworkUpdateSection,
  NoDomainError, NoDomainMetadataError, NoNetworkError, NoStoragePoolError, NoStorageVolError, RemoteConnection,
  StorageVolExistError, VolStreamFlags, connect, isLibvirtError, type Connection, type DomainRef, type NetworkRef, type PoolRef,
} from '../../src/libvirt/index.js';
import { requireDaemon, startUnixProxy, tempDir, uniq } from '../helpers/libvirt-fixtures.js';

const TEST_URI = 'test+unix:///default';
const MiB = 1024 * 1024;

/** Runs every cleanup step even when earlier ones fail (objects may already be gone). */
async function cleanup(steps: Array<() => Promise<unknown>>): Promise<void> {
  for (const s of steps) await s().catch(() => {});
}

function domainXml(name: string): string {
  return `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>` +
    `<os><type arch='x86_64'>hvm</type></os></domain>`;
}

beforeAll(() => requireDaemon());

describe('open and close', () => {
  it.each(['qemu:///system', TEST_URI])('opens %s over the unix socket and closes cleanly', async (uri) => {
    const c = await connect(uri);
    expect(c.uri).toBe(uri.replace('+unix', ''));
    expect(await c.libVersion()).toBeGreaterThan(1_000_000n);
    expect(await c.version()).toBeGreaterThan(0n);
    expect(await c.capabilities()).toContain('<capabilities>');
    await c.close();
    await expect(c.closed).resolves.toBeUndefined();
    await expect(c.libVersion()).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('reports a missing socket clearly', async () => {
    await expect(connect('test+unix:///default?socket=/nonexistent/t-rpc.sock')).rejects.toThrow(/cannot connect to libvirt.*t-rpc\.sock/);
  });
});

describe('test driver objects', () => {
  let c: Connection;
  const names = { dom: uniq('dom'), pool: uniq('pool'), vol: uniq('vol'), net: uniq('net') };

  beforeAll(async () => {
    c = await connect(TEST_URI);
  });
  afterAll(async () => {
    await cleanup([
      async () => c.domains.destroy(await c.domains.lookupByName(names.dom)),
      async () => c.domains.undefine(await c.domains.lookupByName(names.dom), 2 /* SNAPSHOTS_METADATA */),
      async () => c.networks.destroy(await c.networks.lookupByName(names.net)),
      async () => c.networks.undefine(await c.networks.lookupByName(names.net)),
      async () => {
        const p = await c.pools.lookupByName(names.pool);
        for (const v of await c.pools.listAllVolumes(p)) await c.volumes.delete(v).catch(() => {});
        await c.pools.destroy(p).catch(() => {});
        await c.pools.undefine(p);
      },
    ]);
    await c.close();
  });

  it('domains: define, start, state, metadata, snapshot, stop, undefine', async () => {
    let dom: DomainRef = await c.domains.defineXML(domainXml(names.dom));
    expect(dom.name).toBe(names.dom);
    expect(dom.uuid).toHaveLength(16);
    expect((await c.domains.lookupByUUID(dom.uuid)).name).toBe(names.dom);
    expect(await c.domains.getXMLDesc(dom)).toContain(`<name>${names.dom}</name>`);
    expect((await c.domains.listAll()).map((d) => d.name)).toContain(names.dom);

    dom = await c.domains.create(dom);
    expect(dom.id).toBeGreaterThan(0);
    expect((await c.domains.getState(dom)).state).toBe(DomainState.RUNNING);

    const ns = 'urn:t-rpc:test';
    await expect(c.domains.getMetadata(dom, MetadataType.ELEMENT, ns)).rejects.toBeInstanceOf(NoDomainMetadataError);
    await c.domains.setMetadata(dom, MetadataType.ELEMENT, '<vm><cid>vm-1</cid></vm>', 'tr', ns, 1 | 2);
    expect(await c.domains.getMetadata(dom, MetadataType.ELEMENT, ns, 2)).toBe('<vm>\n  <cid>vm-1</cid>\n</vm>');

    const snap = await c.domains.snapshotCreateXML(dom, `<domainsnapshot><name>${names.dom}-s1</name></domainsnapshot>`);
    expect((await c.domains.snapshotLookupByName(dom, snap.name)).dom.name).toBe(names.dom);
    await c.domains.snapshotDelete(snap);

    await c.domains.destroy(dom);
    expect((await c.domains.getState(dom)).state).toBe(DomainState.SHUTOFF);
    await c.domains.undefine(dom);
    await expect(c.domains.lookupByName(names.dom)).rejects.toBeInstanceOf(NoDomainError);
  });

  it('looking up a missing domain is a NO_DOMAIN error with libvirt code and domain', async () => {
    const err = await c.domains.lookupByName(uniq('missing')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoDomainError);
    expect(isLibvirtError(err, ErrorCode.NO_DOMAIN)).toBe(true);
    expect(err).toMatchObject({ code: 42, domain: 12 /* VIR_FROM_TEST */ });
    expect((err as Error).message).toMatch(/not found/i);
  });

  it('pools and volumes: define, build, start, info, volumes CRUD, clone, errors', async () => {
    const pool: PoolRef = await c.pools.defineXML(
      `<pool type='dir'><name>${names.pool}</name><target><path>/var/tmp/${names.pool}</path></target></pool>`);
    await c.pools.build(pool).catch((e: unknown) => { if (!isLibvirtError(e, ErrorCode.NO_SUPPORT)) throw e; });
    await c.pools.create(pool);
    await c.pools.setAutostart(pool, false);
    expect((await c.pools.getInfo(pool)).state).toBe(2 /* RUNNING */);
    expect(await c.pools.getXMLDesc(pool)).toContain(names.pool);
    expect((await c.pools.listAll()).map((p) => p.name)).toContain(names.pool);

    const volXml = (n: string) => `<volume><name>${n}</name><capacity unit='MiB'>8</capacity></volume>`;
    const vol = await c.volumes.createXML(pool, volXml(names.vol));
    expect(vol).toMatchObject({ pool: names.pool, name: names.vol });
    // The test driver reports a duplicate as OPERATION_FAILED; the real storage driver's STORAGE_VOL_EXIST is checked on qemu below.
    await expect(c.volumes.createXML(pool, volXml(names.vol))).rejects.toThrow(/already exists/);
    const info = await c.volumes.getInfo(vol);
    expect(info.capacity).toBe(8n * BigInt(MiB));
    const path = await c.volumes.getPath(vol);
    expect(path).toContain(names.vol);
    expect((await c.volumes.lookupByPath(path)).name).toBe(names.vol);
    expect((await c.volumes.lookupByName(pool, names.vol)).key).toBe(vol.key);
    const clone = await c.volumes.createXMLFrom(pool, volXml(`${names.vol}-clone`), vol);
    expect((await c.pools.listAllVolumes(pool)).map((v) => v.name).sort()).toEqual([names.vol, `${names.vol}-clone`].sort());
    await c.pools.refresh(pool);
    await c.volumes.delete(clone);
    await c.volumes.delete(vol);
    await expect(c.volumes.lookupByName(pool, names.vol)).rejects.toBeInstanceOf(NoStorageVolError);

    await c.pools.destroy(pool);
    await c.pools.undefine(pool);
    await expect(c.pools.lookupByName(names.pool)).rejects.toBeInstanceOf(NoStoragePoolError);
  });

  it('networks: define (isolated, dual stack), start, update DHCP host, stop, undefine', async () => {
    const bridge = `t-rpc-br${process.pid % 1000}`;
    const net: NetworkRef = await c.networks.defineXML(`<network><name>${names.net}</name><bridge name='${bridge}'/>` +
      `<ip address='198.18.20.1' netmask='255.255.255.0'><dhcp><range start='198.18.20.100' end='198.18.20.200'/></dhcp></ip>` +
      `<ip family='ipv6' address='fd00:20::1' prefix='64'/></network>`);
    expect(await c.networks.isActive(net)).toBe(false);
    await c.networks.create(net);
    expect(await c.networks.isActive(net)).toBe(true);
    expect((await c.networks.listAll()).map((n) => n.name)).toContain(names.net);
    await c.networks.update(net, NetworkUpdateCommand.ADD_LAST, NetworkUpdateSection.IP_DHCP_HOST, -1,
      `<host mac='52:54:00:aa:bb:cc' name='t-rpc-host' ip='198.18.20.10'/>`, 1 | 2);
    const xml = await c.networks.getXMLDesc(net);
    expect(xml).toContain("mac='52:54:00:aa:bb:cc'");
    expect(xml).not.toContain('<forward');
    expect(await (c as RemoteConnection).networkUpdateHasCorrectOrder()).toBe(true);
    await c.networks.destroy(net);
    await c.networks.undefine(net);
    await expect(c.networks.lookupByName(names.net)).rejects.toBeInstanceOf(NoNetworkError);
  });

  it('runs 50 concurrent calls on one connection and matches every reply', async () => {
    const doms = await c.domains.listAll();
    expect(doms.length).toBeGreaterThan(0);
    const name = doms[0]!.name;
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      i % 2 ? c.domains.lookupByName(name).then((d) => d.name) : c.domains.getXMLDesc(doms[0]!).then((x) => /<name>(.*?)<\/name>/.exec(x)![1])));
    expect(results).toEqual(Array(50).fill(name));
  });

  it('supports feature probes (keepalive, network update order)', async () => {
    expect(await c.supportsFeature(DrvFeature.NETWORK_UPDATE_HAS_CORRECT_ORDER)).toBe(true);
  });
});

describe('daemon-side disconnect', () => {
  it('rejects pending calls and `closed` when the connection is cut mid-call (real socket, via a proxy)', async () => {
    const dir = tempDir('proxy');
    const proxy = await startUnixProxy(dir);
    try {
      const c = await connect(`test+unix:///default?socket=${proxy.address}`, { callTimeoutMs: 60_000 });
      expect((await c.domains.listAll()).length).toBeGreaterThan(0);
      proxy.stall();
      const before = proxy.bytesIn;
      const pending = [c.capabilities(), c.domains.listAll()];
      while (proxy.bytesIn === before) await new Promise((r) => setTimeout(r, 5));
      proxy.cutAll();
      for (const p of pending) {
        const e = await p.catch((x: unknown) => x);
        expect(e).toBeInstanceOf(ConnectionClosedError);
        expect((e as Error).message).toMatch(/closed the connection.*pending/);
      }
      await expect(c.closed).rejects.toBeInstanceOf(ConnectionClosedError);
      await c.close(); // idempotent after a hang-up
    } finally {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('keepalive', () => {
  it('answers the daemon PINGs once keepalive is advertised', async () => {
    const c = (await connect(TEST_URI)) as RemoteConnection;
    try {
      expect(await c.supportsFeature(DrvFeature.PROGRAM_KEEPALIVE)).toBe(true);
      // libvirtd pings after keepalive_interval (5 s by default) without traffic.
      for (let i = 0; i < 200 && c.client.pongsSent === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(c.client.pongsSent).toBeGreaterThan(0);
      expect((await c.domains.listAll()).length).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  }, 60_000);
});

describe('volume streams on qemu:///system', () => {
  let c: Connection;
  const poolName = uniq('pool');
  const dir = `/var/tmp/${poolName}`;
  const work = tempDir('stream');
  let pool: PoolRef;

  beforeAll(async () => {
    c = await connect('qemu:///system');
    pool = await c.pools.defineXML(`<pool type='dir'><name>${poolName}</name><target><path>${dir}</path></target></pool>`);
    await c.pools.build(pool);
    await c.pools.create(pool);
  });
  afterAll(async () => {
    await cleanup([
      async () => { for (const v of await c.pools.listAllVolumes(pool)) await c.volumes.delete(v).catch(() => {}); },
      () => c.pools.destroy(pool),
      () => c.pools.undefine(pool),
    ]);
    await c.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('uploads 256 MiB into a volume and downloads it back byte-identical', async () => {
    const size = 256 * MiB;
    const src = join(work, 'src.bin');
    const srcHash = createHash('sha256');
    // Pseudo-random content made of repeated random blocks: cheap to produce, non-sparse, not constant.
    const blocks = Array.from({ length: 16 }, () => randomBytes(MiB));
    await pipeline(Readable.from((function* () {
      for (let i = 0; i < size / MiB; i++) {
        const b = Buffer.from(blocks[(i * 7) % 16]!);
        b.writeUInt32BE(i, 0);
        srcHash.update(b);
        yield b;
      }
    })()), createWriteStream(src));

    const vol = await c.volumes.createXML(pool,
      `<volume><name>${uniq('vol')}.raw</name><capacity unit='bytes'>${size}</capacity><target><format type='raw'/></target></volume>`);
    await c.volumes.upload(vol, createReadStream(src, { highWaterMark: MiB }));

    const dstHash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of c.volumes.download(vol)) {
      dstHash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    expect(bytes).toBe(size);
    expect(dstHash.digest('hex')).toBe(srcHash.digest('hex'));
  }, 300_000);

  it('sends runs of zeros as holes with SPARSE_STREAM: the volume stays sparse and reads back identical', async () => {
    // zeros 2 MiB | data 1 MiB | zeros 5 KiB (too short for a hole) | data 1 MiB |
    // zeros 8 MiB | 100 bytes of data off any block boundary | zeros 3 MiB (trailing)
    const parts: Array<[kind: 'zero' | 'data', bytes: number]> = [
      ['zero', 2 * MiB], ['data', MiB], ['zero', 5 * 1024], ['data', MiB], ['zero', 8 * MiB], ['data', 100], ['zero', 3 * MiB],
    ];
    const whole = Buffer.concat(parts.map(([k, n]) => (k === 'zero' ? Buffer.alloc(n) : randomBytes(n).fill(7, 0, 1))));
    const dataBytes = parts.filter(([k]) => k === 'data').reduce((n, [, b]) => n + b, 0);
    // Chunks of an odd size, so zero runs and data straddle chunk boundaries.
    const chunks = (buf: Buffer) => Readable.from((function* () {
      for (let off = 0; off < buf.length; off += 77_777) yield buf.subarray(off, off + 77_777);
    })());
    const create = async (tag: string) => c.volumes.createXML(pool,
      `<volume><name>${uniq(tag)}.raw</name><capacity unit='bytes'>${whole.length}</capacity><allocation>0</allocation><target><format type='raw'/></target></volume>`);

    const sparse = await create('sparse');
    await c.volumes.upload(sparse, chunks(whole), { length: BigInt(whole.length), flags: VolStreamFlags.SPARSE_STREAM });
    const dense = await create('dense');
    await c.volumes.upload(dense, chunks(whole), { length: BigInt(whole.length) });

    const sparseInfo = await c.volumes.getInfo(sparse);
    const denseInfo = await c.volumes.getInfo(dense);
    expect(sparseInfo.capacity).toBe(BigInt(whole.length));
    // Only the data (plus the short zero run and block rounding) is allocated…
    expect(Number(sparseInfo.allocation)).toBeLessThan(dataBytes + 256 * 1024);
    // …while the same bytes sent as data allocate everything.
    expect(Number(denseInfo.allocation)).toBeGreaterThanOrEqual(whole.length);

    for (const flags of [0, VolStreamFlags.SPARSE_STREAM]) {
      const got: Buffer[] = [];
      for await (const chunk of c.volumes.download(sparse, { flags })) got.push(Buffer.from(chunk as Buffer));
      const back = Buffer.concat(got);
      expect(back.length).toBe(whole.length);
      expect(back.equals(whole)).toBe(true);
    }
  }, 120_000);

  it('reports STORAGE_VOL_EXIST for a duplicate volume name', async () => {
    const xml = `<volume><name>${uniq('dup')}.raw</name><capacity unit='bytes'>65536</capacity></volume>`;
    await c.volumes.createXML(pool, xml);
    const err = await c.volumes.createXML(pool, xml).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageVolExistError);
    expect(isLibvirtError(err, ErrorCode.STORAGE_VOL_EXIST)).toBe(true);
  });

  it('surfaces a daemon-side error in the middle of an upload and keeps the connection usable', async () => {
    const vol = await c.volumes.createXML(pool, `<volume><name>${uniq('small')}.raw</name><capacity unit='MiB'>1</capacity></volume>`);
    // More data than the declared length: the daemon's stream fails with ENOSPC after 4 KiB.
    const err = await c.volumes.upload(vol, Readable.from([Buffer.alloc(MiB)]), { length: 4096n }).catch((e: unknown) => e);
    expect(isLibvirtError(err, ErrorCode.SYSTEM_ERROR)).toBe(true);
    expect((err as Error).message).toMatch(/No space left/);
    expect(await c.volumes.getPath(vol)).toContain(dir);
  });

  it('rejects an upload to a volume that no longer exists with NO_STORAGE_VOL', async () => {
    const vol = await c.volumes.createXML(pool, `<volume><name>${uniq('gone')}.raw</name><capacity unit='MiB'>1</capacity></volume>`);
    await c.volumes.delete(vol);
    await expect(c.volumes.upload(vol, Readable.from([Buffer.alloc(16)]))).rejects.toBeInstanceOf(NoStorageVolError);
  });

  it('surfaces a source stream error as the rejection and aborts the upload', async () => {
    const vol = await c.volumes.createXML(pool, `<volume><name>${uniq('abort')}.raw</name><capacity unit='MiB'>4</capacity></volume>`);
    const source = new Readable({ read() {} });
    source.push(Buffer.alloc(300 * 1024, 1));
    setTimeout(() => source.destroy(new Error('t-rpc source failed')), 50);
    await expect(c.volumes.upload(vol, source)).rejects.toThrow('t-rpc source failed');
    expect((await c.volumes.getInfo(vol)).capacity).toBe(4n * BigInt(MiB));
  });

  it('lets a consumer stop a download early without hanging the connection', async () => {
    const vol = await c.volumes.createXML(pool, `<volume><name>${uniq('dl')}.raw</name><capacity unit='MiB'>32</capacity></volume>`);
    const rs = c.volumes.download(vol);
    let got = 0;
    for await (const chunk of rs) {
      got += (chunk as Buffer).length;
      if (got > 2 * MiB) break; // destroys the stream → STREAM abort
    }
    expect(got).toBeGreaterThan(2 * MiB);
    expect((await c.volumes.getInfo(vol)).capacity).toBe(32n * BigInt(MiB));
  });
});

// Procedure numbers written by hand are easy to get wrong (35 is DOMAIN_UNDEFINE, not
// DOMAIN_RESUME): prove suspend/resume against the daemon, and that the domain stays defined.
describe('suspend and resume', () => {
  it('pause and resume a running domain without undefining it', async () => {
    const { connect } = await import('../../src/libvirt/index.js');
    const conn = await connect('test+unix:///default');
    try {
      const name = `t-rpc-suspend-${process.pid}`;
      const xml = `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>`;
      const dom = await conn.domains.defineXML(xml, 0);
      try {
        await conn.domains.create(dom, 0);
        await conn.domains.suspend(dom);
        expect((await conn.domains.getState(dom, 0)).state).toBe(3 /* PAUSED */);
        await conn.domains.resume(dom);
        expect((await conn.domains.getState(dom, 0)).state).toBe(1 /* RUNNING */);
        expect((await conn.domains.listAll(4 /* PERSISTENT */)).map((d) => d.name)).toContain(name);
      } finally {
        await conn.domains.destroy(dom, 0).catch(() => undefined);
        await conn.domains.undefine(dom, 0).catch(() => undefined);
      }
    } finally {
      await conn.close();
    }
  });
});
