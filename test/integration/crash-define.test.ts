// A define whose answer never came, against the real qemu:///system. bin/cpi reaches
// libvirtd through the project's cutting proxy (test/helpers/cutting-proxy.ts), which
// here holds the DOMAIN_DEFINE_XML_FLAGS call for a few seconds before passing it on: the
// real daemon then runs it late, as a busy daemon does. Either the proxy hangs up on
// bin/cpi at once (the connection is lost, the daemon still gets the define), or it keeps
// the connection and the answer comes after libvirt.call_timeout_seconds (a slow daemon),
// or bin/cpi is killed while the define is held. In each case no domain may appear
// afterwards holding the VM's static address: create_vm answers ok_to_retry only with a
// fence in place, the retry with the same address succeeds, and `orphans` fences a name
// before it removes the volumes of a VM whose define may still be pending.
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CPI_BUNDLE, requireBundle } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { startCuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';
import { dhcpHosts, orphansCli } from '../helpers/crash.js';
import { requireDaemon } from '../helpers/libvirt-fixtures.js';
import { Proc } from '../../src/libvirt/procedures.js';
import { FENCE_NS } from '../../src/xml/index.js';

const PREFIX = 't-crash-d-';
const NET = { name: 't-crash-n122', bridge: 't-crash-br122', third: 122 };
const DOMAIN_DEFINE_XML_FLAGS = Proc.DOMAIN_DEFINE_XML_FLAGS.proc;
const HOLD_MS = 6000;

let proxy: CuttingProxy;
let viaProxy: string;
let slowViaProxy: string; // call_timeout_seconds shorter than the hold
let direct: string;
let stemcell: string;

const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });
function manual(ip: string) {
  return { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.122.1', dns: [], default: ['dns', 'gateway'], cloud_properties: { name: NET.name } };
}
const createArgs = (ip: string) => ['agent-define', stemcell, {}, { default: manual(ip) }, [], {}];
const isFence = (name: string) => virsh('dumpxml', name).stdout.includes(FENCE_NS);
/** Domains of the prefix, fences apart. */
function domains(): { vms: string[]; fences: string[] } {
  const names = virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX));
  return { vms: names.filter((n) => !isFence(n)), fences: names.filter(isFence) };
}
const leftBehind = () => leftovers(PREFIX).filter((n) => !n.startsWith(stemcell));

beforeAll(async () => {
  requireBundle();
  requireDaemon();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET.name, NET.bridge, NET.third, { dhcp: true });
  proxy = await startCuttingProxy();
  direct = testConfig({ prefix: PREFIX, network: NET.name }).path;
  viaProxy = testConfig({ prefix: PREFIX, network: NET.name, overrides: { libvirt: { uri: proxy.uri } } }).path;
  slowViaProxy = testConfig({ prefix: PREFIX, network: NET.name, overrides: { libvirt: { uri: proxy.uri, call_timeout_seconds: 2 } } }).path;
  stemcell = (await cpi(direct, 'create_stemcell', [tinyStemcell(), {}])) as string;
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  cleanupPrefix(PREFIX);
  removeNetwork(NET.name);
});

beforeEach(() => proxy.allow());

/** After the late define was answered: no VM domain, the retry with the same address works, orphans removes the fence. */
async function afterTheLateDefine(vm: string, ip: string): Promise<void> {
  // The daemon runs the held define now; it must fail: the fence holds the name.
  const late = await proxy.lateAnswer(60_000);
  expect(late.ok).toBe(false);
  expect(domains()).toEqual({ vms: [], fences: [vm] });
  // The fence is no VM for any method, and delete_vm leaves it in place.
  expect(await cpi(direct, 'has_vm', [vm])).toBe(false);
  for (const method of ['get_disks', 'delete_vm']) expect((await cpiError(direct, method, [vm])).type).toBe('Bosh::Clouds::VMNotFound');
  expect(domains()).toEqual({ vms: [], fences: [vm] });
  expect(dhcpHosts(NET.name)).toEqual([]);
  // The director's retry, same address: nothing holds it.
  const [again] = (await cpi(direct, 'create_vm', createArgs(ip))) as [string];
  await cpi(direct, 'delete_vm', [again]);
  // The fence is listed, and removed (here at once: --min-age 0).
  const swept = await orphansCli(direct, ['--delete', '--min-age', '0']);
  expect(swept.report.orphans.find((o) => o.name === vm)?.reason).toMatch(/^fence, not a VM/);
  expect(swept.report.deleted).toContain(vm);
  expect(leftBehind()).toEqual([]);
}

describe('create_vm whose define got no answer', () => {
  it('the connection drops while the daemon still has the define: a fence keeps it from landing, ok_to_retry, and the retry gets the address', async () => {
    const ip = '198.18.122.10';
    proxy.arm({ procedure: DOMAIN_DEFINE_XML_FLAGS, when: 'late', holdMs: HOLD_MS, cutClient: true });
    const err = await cpiError(viaProxy, 'create_vm', createArgs(ip));
    expect(proxy.cuts).toBe(1);
    const vm = /(t-crash-d-vm-[0-9a-f-]{36})/.exec(err.message)?.[1];
    expect(vm, err.message).toBeDefined();
    expect(err.type).toBe('Bosh::Clouds::VMCreationFailed');
    expect(err.message).toMatch(new RegExp(`made sure these never appear: domain ${vm} \\(its define got no answer; the fence domain`));
    expect(err.message).toMatch(/removed .*volume t-crash-d-vm-[^ ]+\.root/);
    expect(err.message).not.toContain('nothing had been created');
    expect(err.ok_to_retry).toBe(true);
    await afterTheLateDefine(vm!, ip);
  }, 180_000);

  it('the daemon answers later than call_timeout_seconds: the same, settled on a new connection', async () => {
    const ip = '198.18.122.11';
    proxy.arm({ procedure: DOMAIN_DEFINE_XML_FLAGS, when: 'late', holdMs: HOLD_MS });
    const err = await cpiError(slowViaProxy, 'create_vm', createArgs(ip));
    const vm = /(t-crash-d-vm-[0-9a-f-]{36})/.exec(err.message)?.[1];
    expect(vm, err.message).toBeDefined();
    expect(err.message).toMatch(/DOMAIN_DEFINE_XML_FLAGS got no reply within 2000 ms/);
    expect(err.message).toMatch(new RegExp(`made sure these never appear: domain ${vm}`));
    expect(err.ok_to_retry).toBe(true);
    await afterTheLateDefine(vm!, ip);
  }, 180_000);

  it('the define happened and only its answer was lost: the domain is removed as usual, no fence stays', async () => {
    proxy.arm({ procedure: DOMAIN_DEFINE_XML_FLAGS, when: 'after-reply' });
    const err = await cpiError(viaProxy, 'create_vm', createArgs('198.18.122.12'));
    expect(proxy.cuts).toBe(1);
    expect(err.message).toMatch(/removed domain t-crash-d-vm-[0-9a-f-]{36}/);
    expect(err.ok_to_retry).toBe(true);
    expect(domains()).toEqual({ vms: [], fences: [] });
    expect(leftBehind()).toEqual([]);
  }, 120_000);
});

describe('create_vm killed while its define is pending in the daemon', () => {
  it('orphans --delete fences the name before removing the volumes, so no domain appears afterwards, and says the sweep is not complete until the fence goes', async () => {
    proxy.arm({ procedure: DOMAIN_DEFINE_XML_FLAGS, when: 'late', holdMs: 15_000 });
    const child = spawn(process.execPath, [CPI_BUNDLE, viaProxy], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.end(JSON.stringify({ method: 'create_vm', arguments: createArgs('198.18.122.13'), context: { director_uuid: 'crash', request_id: 'kill-define' }, api_version: 2 }));
    const closed = new Promise((r) => child.on('close', r));
    const deadline = Date.now() + 60_000;
    while (proxy.cuts === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(proxy.cuts).toBe(1); // the define is held: the daemon has not run it yet
    child.kill('SIGKILL');
    await closed;
    const vm = leftBehind().find((n) => n.endsWith('.root'))!.replace(/\.root$/, '');

    const first = await orphansCli(direct, ['--delete', '--min-age', '0']);
    expect(first.code).toBe(0);
    expect(first.report.deleted).toContain(`${vm}.root`);
    expect((first.report as unknown as { fenced: string[] }).fenced).toEqual([vm]);
    expect((first.report as unknown as { complete: boolean }).complete).toBe(false);

    // The daemon now runs the define the killed process sent: it fails on the fence.
    expect((await proxy.lateAnswer(60_000)).ok).toBe(false);
    expect(domains()).toEqual({ vms: [], fences: [vm] });
    expect(dhcpHosts(NET.name)).toEqual([]);

    const second = await orphansCli(direct, ['--delete', '--min-age', '0']);
    expect(second.report.deleted).toEqual([vm]);
    expect((second.report as unknown as { complete: boolean }).complete).toBe(true);
    expect(leftBehind()).toEqual([]);
  }, 180_000);
});
