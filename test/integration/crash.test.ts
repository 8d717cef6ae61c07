// Lost connections against the real qemu:///system: bin/cpi reaches libvirtd through a
// proxy in this test (test/helpers/cutting-proxy.ts) that hangs up at a chosen call,
// the way a libvirtd restart does, without touching the shared daemon. create_vm must
// undo on a fresh connection and never claim that nothing exists when something does;
// delete_vm and attach_disk must finish the job on a fresh connection.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { dhcpHosts, domainMetadata, orphansCli } from '../helpers/crash.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';

const PREFIX = 't-crash-c-';
const NET = { name: 't-crash-n120', bridge: 't-crash-br120', third: 120 };
// Remote procedure numbers (src/libvirt/procedures.ts).
const DOMAIN_CREATE_WITH_FLAGS = 196;
const DOMAIN_SET_METADATA = 264;
const STORAGE_VOL_CREATE_XML = 93;
const STORAGE_VOL_DELETE = 94;
const STORAGE_VOL_UPLOAD = 208;

let proxy: CuttingProxy;
let viaProxy: string; // config reaching libvirtd through the proxy
let direct: string; // the same prefix and pool, straight to the daemon
let stemcell: string;

function manual(ip: string) {
  return { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.120.1', dns: [], default: ['dns', 'gateway'], cloud_properties: { name: NET.name } };
}
const createArgs = (ip: string) => ['agent-crash', stemcell, {}, { default: manual(ip) }, [], {}];

beforeAll(async () => {
  requireBundle();
  requireDaemon();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET.name, NET.bridge, NET.third, { dhcp: true });
  proxy = await startCuttingProxy();
  direct = testConfig({ prefix: PREFIX, network: NET.name }).path;
  viaProxy = testConfig({ prefix: PREFIX, network: NET.name, overrides: { libvirt: { uri: proxy.uri } } }).path;
  stemcell = (await cpi(direct, 'create_stemcell', [tinyStemcell(), {}])) as string;
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  cleanupPrefix(PREFIX);
  removeNetwork(NET.name);
});

beforeEach(() => proxy.allow());

/** Everything of this prefix except the stemcell (and its sidecar) the tests share. */
const leftBehind = () => leftovers(PREFIX).filter((n) => !n.startsWith(stemcell));

describe('create_vm losing its connection', () => {
  it('after the root volume was made (its answer lost): removes it on a new connection instead of claiming nothing exists', async () => {
    // The first volume create_vm makes is the stemcell's lock; the second is the root disk.
    proxy.arm({ procedure: STORAGE_VOL_CREATE_XML, when: 'after-reply', nth: 2 });
    const err = await cpiError(viaProxy, 'create_vm', createArgs('198.18.120.10'));
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).toMatch(/removed volume t-crash-c-vm-[0-9a-f-]+\.root/);
    expect(err.message).not.toContain('nothing had been created');
    expect(err.ok_to_retry).toBe(true);
    expect(leftBehind()).toEqual([]);
  }, 120_000);

  it('while taking the stemcell lock (its answer lost): knows the lock is its own, goes on, and releases it', async () => {
    proxy.arm({ procedure: STORAGE_VOL_CREATE_XML, when: 'after-reply', nth: 1 });
    const [vm] = (await cpi(viaProxy, 'create_vm', createArgs('198.18.120.14'))) as [string];
    expect(proxy.cuts).toBe(1);
    expect(leftovers(PREFIX).filter((n) => n.endsWith('.lock'))).toEqual([]);
    await cpi(direct, 'delete_vm', [vm]);
    expect(leftBehind()).toEqual([]);
  }, 120_000);

  it('after the domain started: reconnects and removes the running domain, its volumes and reservations', async () => {
    proxy.arm({ procedure: DOMAIN_CREATE_WITH_FLAGS, when: 'after-reply' });
    const err = await cpiError(viaProxy, 'create_vm', createArgs('198.18.120.11'));
    expect(proxy.cuts).toBe(1);
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).toMatch(/while starting the domain/);
    expect(err.message).toMatch(/removed .*DHCP reservation 198\.18\.120\.11 on t-crash-n120.*domain t-crash-c-vm-.*volume t-crash-c-vm-[^ ]+\.root/);
    expect(err.ok_to_retry).toBe(true);
    expect(leftBehind()).toEqual([]);
    expect(dhcpHosts(NET.name)).toEqual([]);
  }, 120_000);

  it('when no new connection can be made: names every leftover, refuses a retry, and orphans finds and removes them', async () => {
    proxy.arm({ procedure: DOMAIN_CREATE_WITH_FLAGS, when: 'after-reply', thenRefuse: true });
    const err = await cpiError(viaProxy, 'create_vm', createArgs('198.18.120.12'));
    const vm = /(t-crash-c-vm-[0-9a-f-]{36})/.exec(err.message)?.[1];
    expect(vm, err.message).toBeDefined();
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).not.toContain('nothing had been created');
    for (const what of [`domain ${vm}`, `volume ${vm}.root`, `volume ${vm}.ephemeral`, `volume ${vm}.config`, 'DHCP reservation 198.18.120.12 on t-crash-n120']) {
      expect(err.message).toContain(what);
    }
    expect(err.message).toMatch(/LEFT BEHIND/);
    expect(err.ok_to_retry).toBe(false);
    // What the message says is what is there: a running domain, its volumes, its reservation.
    expect(leftBehind().sort()).toEqual([vm, `${vm}.config`, `${vm}.ephemeral`, `${vm}.root`].sort());
    expect(dhcpHosts(NET.name).join()).toContain('198.18.120.12');
    expect(domainMetadata(vm!)).toMatch(/<creating /);

    // bin/cpi has exited: orphans sees the creator is gone (same host: pid and start
    // time), even with the default --min-age, and removes all of it.
    const listed = await orphansCli(direct, []);
    expect(listed.report.orphans.map((o) => o.name)).toEqual([vm]);
    expect(listed.report.orphans[0]!.reason).toMatch(/create_vm never finished/);
    const cleaned = await orphansCli(direct, ['--delete']);
    expect(cleaned.code).toBe(0);
    expect(cleaned.report.deleted).toContain(vm);
    expect(leftBehind()).toEqual([]);
    expect(dhcpHosts(NET.name)).toEqual([]);
  }, 180_000);
});

describe('create_stemcell losing its connection', () => {
  it('during the upload: removes the partial volume on a new connection', async () => {
    proxy.arm({ procedure: STORAGE_VOL_UPLOAD, when: 'after-reply' });
    const err = await cpiError(viaProxy, 'create_stemcell', [tinyStemcell(), {}]);
    expect(proxy.cuts).toBe(1);
    expect(err.message).toMatch(/connection|closed/i);
    expect(leftBehind()).toEqual([]);
  }, 120_000);
});

describe('delete_vm losing its connection', () => {
  it('finishes the delete on a new connection', async () => {
    const [vm] = (await cpi(viaProxy, 'create_vm', createArgs('198.18.120.13'))) as [string];
    proxy.arm({ procedure: STORAGE_VOL_DELETE, when: 'after-reply' });
    await expect(cpi(viaProxy, 'delete_vm', [vm])).resolves.toBeNull();
    expect(proxy.cuts).toBe(1);
    expect(leftBehind()).toEqual([]);
    expect(dhcpHosts(NET.name)).toEqual([]);
  }, 120_000);
});

describe('delete_vm without a way back to libvirt', () => {
  it('says a retry finishes the job (ok_to_retry), and the retry does', async () => {
    const [vm] = (await cpi(viaProxy, 'create_vm', createArgs('198.18.120.15'))) as [string];
    proxy.arm({ procedure: STORAGE_VOL_DELETE, when: 'after-reply', thenRefuse: true });
    const err = await cpiError(viaProxy, 'delete_vm', [vm]);
    expect(err.type).toBe('Bosh::Clouds::CloudError');
    expect(err.message).toMatch(/delete_vm lost its connection to libvirt .* could not reconnect .* a retry finishes it/);
    expect(err.ok_to_retry).toBe(true);
    proxy.allow();
    await expect(cpi(viaProxy, 'delete_vm', [vm])).resolves.toBeNull();
    expect(leftBehind()).toEqual([]);
    expect(dhcpHosts(NET.name)).toEqual([]);
  }, 120_000);
});

describe('attach_disk losing its connection', () => {
  it('after the live attach, before the metadata write: completes the record on a new connection', async () => {
    const [vm] = (await cpi(direct, 'create_vm', createArgs('198.18.120.14'))) as [string];
    const disk = (await cpi(direct, 'create_disk', [64, {}, vm])) as string;
    try {
      proxy.arm({ procedure: DOMAIN_SET_METADATA, when: 'before' });
      const hint = (await cpi(viaProxy, 'attach_disk', [vm, disk])) as { id: string; path: string };
      expect(proxy.cuts).toBe(1);
      expect(hint.path).toMatch(/^\/dev\/vd[c-z]$/);
      expect(domainXml(vm)).toContain(`/${disk}'`);
      expect(domainMetadata(vm)).toContain(`cid="${disk}"`);
    } finally {
      await cpi(direct, 'delete_vm', [vm]);
      await cpi(direct, 'delete_disk', [disk]);
    }
  }, 120_000);
});
