// Errors a user can cause get the Bosh::Clouds type the director acts on, name the object
// and leave nothing behind — here the ones that came back as CpiError "Unexpected error":
// a libvirt connection dropped under create_stemcell's upload (which left a partial
// `sc-` volume) or under any other call. bin/cpi reaches the real qemu:///system through
// a proxy that hangs up at a chosen call (test/helpers/cutting-proxy.ts), the way a
// libvirtd restart or a broken hop does.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpiError, leftovers, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { orphansCli } from '../helpers/crash.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';

const PREFIX = 't-errt-';
// Remote procedure numbers (src/libvirt/procedures.ts).
const STORAGE_VOL_CREATE_XML = 93;
const STORAGE_VOL_LOOKUP_BY_NAME = 95;
const STORAGE_VOL_UPLOAD = 208;

let proxy: CuttingProxy;
let viaProxy: string;
let direct: string;

beforeAll(async () => {
  requireBundle();
  requireDaemon();
  cleanupPrefix(PREFIX);
  proxy = await startCuttingProxy();
  direct = testConfig({ prefix: PREFIX }).path;
  viaProxy = testConfig({ prefix: PREFIX, overrides: { libvirt: { uri: proxy.uri } } }).path;
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  cleanupPrefix(PREFIX);
});

beforeEach(() => proxy.allow());

describe('create_stemcell whose connection drops in the middle of the upload', () => {
  it('is a retryable CloudError that names the partial volume, which is removed on a new connection', async () => {
    proxy.arm({ procedure: STORAGE_VOL_UPLOAD, when: 'mid-stream', afterBytes: 16 * 1024 });
    const image = tinyStemcell();
    const err = await cpiError(viaProxy, 'create_stemcell', [image, {}]);
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.ok_to_retry).toBe(true);
    expect(err.message).not.toMatch(/Unexpected error/);
    expect(err.message).toContain(`create_stemcell of ${image} lost its connection to libvirt`);
    expect(err.message).toMatch(/the partial stemcell volume t-errt-sc-[0-9a-f-]{36} was removed, nothing is left/);
    expect(leftovers(PREFIX)).toEqual([]);
  }, 120_000);

  it('with no new connection to be had: names the volume LEFT BEHIND and what removes it, and that removes it', async () => {
    proxy.arm({ procedure: STORAGE_VOL_UPLOAD, when: 'mid-stream', afterBytes: 16 * 1024, thenRefuse: true });
    const err = await cpiError(viaProxy, 'create_stemcell', [tinyStemcell(), {}]);
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    const cid = /partial stemcell volume (t-errt-sc-[0-9a-f-]{36}) \(pool t-errt-pool\) is LEFT BEHIND/.exec(err.message)?.[1];
    expect(cid, err.message).toBeDefined();
    expect(err.message).toContain('bosh-libvirt-cpi orphans --delete');
    // what the message names is what is there
    expect(leftovers(PREFIX)).toEqual([cid]);
    proxy.allow();
    const cleaned = await orphansCli(direct, ['--delete', '--min-age', '0']);
    expect(cleaned.report.deleted).toEqual([cid]);
    expect(leftovers(PREFIX)).toEqual([]);
  }, 120_000);
});

describe('create_disk whose connection drops after libvirt made the volume (its answer lost)', () => {
  it('removes the volume on a new connection: a disk the director never heard of would stay forever', async () => {
    proxy.arm({ procedure: STORAGE_VOL_CREATE_XML, when: 'after-reply' });
    const err = await cpiError(viaProxy, 'create_disk', [64, {}, null]);
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.ok_to_retry).toBe(true);
    expect(err.message).toMatch(/^create_disk lost its connection to libvirt \(qemu\+unix:.*\) while creating disk t-errt-d-[a-z0-9]{11}: .*; on a new connection volume t-errt-d-[a-z0-9]{11} was removed \(or had not been made\): nothing is left/);
    expect(leftovers(PREFIX)).toEqual([]);
  }, 60_000);

  it('with no new connection to be had: names the volume LEFT BEHIND and how to remove it', async () => {
    proxy.arm({ procedure: STORAGE_VOL_CREATE_XML, when: 'after-reply', thenRefuse: true });
    const err = await cpiError(viaProxy, 'create_disk', [64, {}, null]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    const cid = /the volume (t-errt-d-[a-z0-9]{11}) in pool t-errt-pool may be LEFT BEHIND/.exec(err.message)?.[1];
    expect(cid, err.message).toBeDefined();
    expect(err.message).toContain(`virsh vol-delete ${cid} --pool t-errt-pool`);
    expect(leftovers(PREFIX)).toEqual([cid]);
    cleanupPrefix(PREFIX);
  }, 60_000);
});

describe('any other call whose connection drops', () => {
  it('is a retryable CloudError saying the libvirt connection was lost, not "Unexpected error"', async () => {
    proxy.arm({ procedure: STORAGE_VOL_LOOKUP_BY_NAME, when: 'before', thenRefuse: true });
    const err = await cpiError(viaProxy, 'has_disk', [`${PREFIX}disk-00000000-0000-4000-8000-000000000000`]);
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.ok_to_retry).toBe(true);
    expect(err.message).toMatch(/^Lost the connection to libvirt during has_disk: the daemon closed the connection \(unix:.*libvirt\.sock\)/);
  }, 60_000);
});
