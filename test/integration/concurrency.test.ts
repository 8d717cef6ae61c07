// Concurrent CPI calls on one VM and one stemcell, each a separate bin/cpi process as
// the director runs them, against qemu:///system. The stemcell is an empty qcow2 that
// never boots: a live detach could not complete (no ACPI in the guest), so detaches run
// on a powered-off domain, the config-only path (as in the conformance suite).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireBundle, runCpi, type CpiRun } from '../helpers/cpi.js';
import { cleanupPrefix, cpi, cpiError, defineIsolatedNetwork, domainXml, leftovers, removeNetwork, testConfig, tinyStemcell } from '../helpers/driver-fixtures.js';
import { parseDomain, parseVmMetadata } from '../../src/xml/index.js';
import { processStart } from '../../src/driver/shared/creator.js';
import { orphansCli } from '../helpers/crash.js';
import { scratchDir } from '../helpers/scratch.js';

const PREFIX = 't-conc-';
const NET = 't-conc-net';
let config: string;
let pool: string;
let poolPath: string;
let stemcell: string;

const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });

function manual(ip: string) {
  return { type: 'manual', ip, netmask: '255.255.255.0', gateway: '198.18.130.1', dns: ['198.18.130.1'], default: ['dns', 'gateway'], cloud_properties: { name: NET } };
}

async function createVM(ip: string): Promise<string> {
  return ((await cpi(config, 'create_vm', ['agent-conc', stemcell, {}, { default: manual(ip) }, [], {}])) as [string])[0];
}

/** One call through bin/cpi, with its response whether it succeeded or not. */
function call(method: string, args: unknown[]): Promise<CpiRun> {
  return runCpi({ method, arguments: args, context: { director_uuid: 'test', request_id: `t-conc-${method}` }, api_version: 2 }, { config });
}

function failures(runs: CpiRun[]): string[] {
  return runs.flatMap((r) => (r.response.error ? [`${r.response.error.type}: ${r.response.error.message} (ok_to_retry ${r.response.error.ok_to_retry})`] : []));
}

/** Persistent disks in the domain XML (live when running, else the saved config), by CID. */
function xmlDisks(vm: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of parseDomain(domainXml(vm)).disks) {
    const name = d.file?.split('/').pop();
    if (name?.startsWith(`${PREFIX}d-`) || name?.startsWith(`${PREFIX}disk-`)) out.set(name, d.target);
  }
  return out;
}

/** The disks the VM's bosh metadata lists, read with virsh (not the CPI's own client). */
function metadataDisks(vm: string): Map<string, string> {
  return new Map(parseVmMetadata(domainXml(vm)).disks.map((d) => [d.cid, d.target]));
}

async function createDisks(n: number): Promise<string[]> {
  return (await Promise.all(Array.from({ length: n }, () => cpi(config, 'create_disk', [16, {}, null])))) as string[];
}

beforeAll(async () => {
  requireBundle();
  cleanupPrefix(PREFIX);
  defineIsolatedNetwork(NET, 't-conc-br0', 130, { dhcp: true });
  ({ path: config, pool, poolPath } = testConfig({ prefix: PREFIX, network: NET }));
  stemcell = (await cpi(config, 'create_stemcell', [tinyStemcell(64), { name: 'tiny', version: '1', disk_format: 'qcow2' }, {}])) as string;
});

afterAll(() => {
  cleanupPrefix(PREFIX);
  removeNetwork(NET);
});

describe('attach_disk / detach_disk / set_vm_metadata on one VM at once', () => {
  it('10 parallel attach_disk to a running VM all succeed with distinct targets, and the metadata lists exactly the 10', { timeout: 300_000 }, async () => {
    const vm = await createVM('198.18.130.10');
    const disks = await createDisks(10);
    try {
      const runs = await Promise.all(disks.map((d) => call('attach_disk', [vm, d])));
      expect(failures(runs)).toEqual([]);
      const paths = runs.map((r) => (r.response.result as { path: string }).path);
      expect(new Set(paths).size).toBe(10);
      const inXml = xmlDisks(vm);
      expect([...inXml.keys()].sort()).toEqual([...disks].sort());
      // Each hint names the device the disk really got.
      disks.forEach((d, i) => expect(`/dev/${inXml.get(d)}`).toBe(paths[i]));
      expect(metadataDisks(vm)).toEqual(inXml);
      expect(((await cpi(config, 'get_disks', [vm])) as string[]).sort()).toEqual([...disks].sort());
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await Promise.all(disks.map((d) => cpi(config, 'delete_disk', [d])));
    }
  });

  it('parallel detach_disk, attach_disk and set_vm_metadata leave the metadata equal to the domain XML, with every tag', { timeout: 300_000 }, async () => {
    const vm = await createVM('198.18.130.11');
    const [first, second] = [await createDisks(5), await createDisks(5)];
    try {
      for (const d of first) await cpi(config, 'attach_disk', [vm, d]);
      virsh('destroy', vm); // detach must not wait for a guest that cannot answer (see the top)
      const tags = Array.from({ length: 4 }, (_, i) => ({ [`tag${i}`]: `value${i}` }));
      const runs = await Promise.all([
        ...first.map((d) => call('detach_disk', [vm, d])),
        ...second.map((d) => call('attach_disk', [vm, d])),
        ...tags.map((t) => call('set_vm_metadata', [vm, t])),
      ]);
      // Metadata first: it must match the XML whatever else went wrong.
      const inXml = xmlDisks(vm);
      expect(metadataDisks(vm)).toEqual(inXml);
      expect(parseVmMetadata(domainXml(vm)).tags).toEqual(Object.assign({}, ...tags));
      expect(failures(runs)).toEqual([]);
      expect([...inXml.keys()].sort()).toEqual([...second].sort());
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await Promise.all([...first, ...second].map((d) => cpi(config, 'delete_disk', [d])));
    }
  });
  it('a disk gone from the domain but still in its metadata (a detach_disk cut between the two) leaves the record at the next detach_disk or attach_disk', { timeout: 120_000 }, async () => {
    const vm = await createVM('198.18.130.13');
    const [a, b, c] = (await createDisks(3)) as [string, string, string];
    try {
      for (const d of [a, b]) await cpi(config, 'attach_disk', [vm, d]);
      virsh('destroy', vm);
      // What a detach_disk that failed after its device change leaves: the device gone,
      // the metadata still naming the disk.
      for (const d of [a, b]) expect(virsh('detach-disk', vm, xmlDisks(vm).get(d)!, '--config').status).toBe(0);
      expect([...metadataDisks(vm).keys()].sort()).toEqual([a, b].sort());
      // The director's retry: the disk is not attached, and its record goes.
      expect((await cpiError(config, 'detach_disk', [vm, a])).type).toBe('Bosh::Clouds::DiskNotAttached');
      expect([...metadataDisks(vm).keys()]).toEqual([b]);
      // Any attach drops what is left over.
      await cpi(config, 'attach_disk', [vm, c]);
      expect([...metadataDisks(vm).keys()]).toEqual([c]);
      expect(metadataDisks(vm)).toEqual(xmlDisks(vm));
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await Promise.all([a, b, c].map((d) => cpi(config, 'delete_disk', [d])));
    }
  });
});

describe('a lock names its holder', () => {
  /** A `<name>.lock` volume as withVolumeLock leaves it, its holder's marker in the first block. */
  function plantLock(name: string, pid: number, start: string): void {
    const file = join(scratchDir('t-conc-lock-'), 'marker');
    writeFileSync(file, JSON.stringify({ host: hostname(), pid, start, at: new Date().toISOString() }));
    for (const args of [['vol-create-as', pool, `${name}.lock`, '8192', '--format', 'raw'], ['vol-upload', '--pool', pool, `${name}.lock`, file]]) {
      const r = virsh(...args);
      if (r.status !== 0) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
    }
  }
  const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

  it('a lock whose holder was killed is broken at once by the next call on the VM, not after 120 s', { timeout: 120_000 }, async () => {
    const vm = await createVM('198.18.130.12');
    const [disk] = await createDisks(1);
    try {
      // A holder that is gone: a pid whose process has exited, as a SIGKILLed CPI's would be.
      const dead = spawnSync('true').pid!;
      plantLock(vm, dead, `${bootId()}/1`);
      const run = await call('attach_disk', [vm, disk]);
      expect(run.response.error, run.stderr.slice(-2000)).toBeNull();
      expect(run.stderr).toMatch(/breaking a lock left by a CPI process that died.*is gone|is gone.*breaking a lock left by a CPI process that died/);
      expect(leftovers(PREFIX).filter((n) => n.endsWith('.lock'))).toEqual([]);
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await cpi(config, 'delete_disk', [disk]);
    }
  });

  it("the address lock a killed create_vm left is broken at once by the next create_vm with a static address, and listed by orphans until then", { timeout: 120_000 }, async () => {
    plantLock('bosh-libvirt-cpi-addresses', spawnSync('true').pid!, `${bootId()}/1`);
    let vm: string | undefined;
    try {
      const { report } = await orphansCli(config, ['--min-age', '0']);
      const listed = report.orphans.find((o) => o.name === 'bosh-libvirt-cpi-addresses.lock');
      expect(listed?.reason).toMatch(/^lock left by pid \d+ on .*, which is gone$/);
      const run = await call('create_vm', ['agent-conc', stemcell, {}, { default: manual('198.18.130.14') }, [], {}]);
      expect(run.response.error, run.stderr.slice(-2000)).toBeNull();
      vm = (run.response.result as [string])[0];
      expect(run.stderr).toMatch(/breaking a lock left by a CPI process that died/);
      expect(leftovers(PREFIX).filter((n) => n.endsWith('.lock'))).toEqual([]);
      expect(virsh('vol-list', pool).stdout).not.toContain('bosh-libvirt-cpi-addresses.lock');
    } finally {
      if (vm) await cpi(config, 'delete_vm', [vm]);
      virsh('vol-delete', '--pool', pool, 'bosh-libvirt-cpi-addresses.lock');
    }
  });

  it('orphans --min-age 0 never lists a lock whose holder runs, and lists one whose holder is gone', async () => {
    const running = `${PREFIX}vm-00000000-0000-4000-8000-00000000aaaa`;
    const gone = `${PREFIX}vm-00000000-0000-4000-8000-00000000bbbb`;
    plantLock(running, process.pid, processStart(process.pid)!);
    plantLock(gone, spawnSync('true').pid!, `${bootId()}/1`);
    try {
      const { report } = await orphansCli(config, ['--min-age', '0']);
      const names = report.orphans.map((o) => o.name);
      expect(names).toContain(`${gone}.lock`);
      expect(names).not.toContain(`${running}.lock`);
      expect(report.skippedYoung).toContain(`${running}.lock`);
    } finally {
      for (const n of [running, gone]) virsh('vol-delete', '--pool', pool, `${n}.lock`);
    }
  });
});

describe('attach_disk target choice', () => {
  it('skips a target that only the saved config of a running VM holds', async () => {
    const vm = await createVM('198.18.130.12');
    const [byHand, disk] = await createDisks(2);
    try {
      // Someone attached a disk to the saved config alone: vdc is taken there, free live.
      const out = virsh('attach-disk', vm, `${poolPath}/${byHand}`, 'vdc', '--config', '--subdriver', 'qcow2');
      expect(out.status, out.stderr).toBe(0);
      const hint = (await cpi(config, 'attach_disk', [vm, disk])) as { path: string };
      expect(hint.path).toBe('/dev/vdd');
      expect(virsh('dumpxml', '--inactive', vm).stdout).toContain(`${poolPath}/${disk}`);
      expect(metadataDisks(vm)).toEqual(new Map([[disk, 'vdd']]));
    } finally {
      await cpi(config, 'delete_vm', [vm]);
      await Promise.all([byHand, disk].map((d) => cpi(config, 'delete_disk', [d])));
    }
  });
});

describe('delete_stemcell while create_vm runs', () => {
  // Each round starts create_vm, then delete_stemcell after a delay that moves its
  // in-use check across create_vm's steps. Allowed outcomes: delete_stemcell refuses
  // (in use) and create_vm succeeds, or delete_stemcell succeeds before create_vm
  // used the stemcell and create_vm fails saying so, with nothing left. Never a VM (or
  // a half-made one) whose backing file is gone.
  const delays = [0, 30, 60, 90, 120, 160, 200, 240];

  it(`holds the invariant in ${delays.length} rounds with delays from 0 to 240 ms`, { timeout: 600_000 }, async () => {
    const outcomes: string[] = [];
    for (const [round, delay] of delays.entries()) {
      const sc = (await cpi(config, 'create_stemcell', [tinyStemcell(64), { name: 'race', version: String(round), disk_format: 'qcow2' }, {}])) as string;
      const creating = call('create_vm', ['agent-conc', sc, {}, { default: manual(`198.18.130.${100 + round}`) }, [], {}]);
      await sleep(delay);
      const deleting = await call('delete_stemcell', [sc]);
      const created = await creating;
      const vm = created.response.error ? null : (created.response.result as [string])[0];
      try {
        const where = `round ${round} (delay ${delay} ms): create_vm ${created.response.error ? `failed: ${created.response.error.message}` : `made ${vm}`}; delete_stemcell ${deleting.response.error ? `failed: ${deleting.response.error.message}` : 'succeeded'}`;
        if (vm) {
          expect(deleting.response.error, where).not.toBeNull();
          expect(deleting.response.error!.message, where).toMatch(new RegExp(`Stemcell ${sc} is still the base of 1 VM\\(s\\) \\(${vm}\\)`));
          expect(virsh('vol-info', '--pool', pool, sc).status, `${where}: the stemcell volume must still exist`).toBe(0);
          outcomes.push('refused');
        } else {
          expect(deleting.response.error, where).toBeNull();
          expect(created.response.error!.type, where).toBe('Bosh::Clouds::VMCreationFailed');
          expect(created.response.error!.message, where).toMatch(new RegExp(`while looking up the stemcell: Stemcell ${sc} does not exist .*; nothing had been created$`));
          expect(leftovers(PREFIX).filter((n) => n.includes('-vm-')), where).toEqual([]);
          outcomes.push('deleted first');
        }
      } finally {
        if (vm) await cpi(config, 'delete_vm', [vm]);
        await call('delete_stemcell', [sc]);
      }
    }
    // Which outcome each round had depends on timing; both are fine. Logged for the reader.
    console.log(`delete_stemcell during create_vm: ${outcomes.join(', ')}`);
  });
});

describe('delete_vm of several stopped VMs at once', () => {
  // Each delete asks every domain on the host which volumes it uses, reading a stopped
  // domain's overlay for its backing file; the delete beside it may remove that overlay
  // between the look-up and the read. That is no use of the volume, and no error.
  it('every call succeeds and nothing is left but the stemcell', async () => {
    // (The window is small: this run may pass without the fix; the e2e suite's parallel
    // delete_vm is where it showed.)
    const vms = await Promise.all([60, 61, 62, 63, 64, 65].map((n) => createVM(`198.18.130.${n}`)));
    for (const vm of vms) virsh('destroy', vm);
    const runs = await Promise.all(vms.map((vm) => call('delete_vm', [vm])));
    expect(failures(runs)).toEqual([]);
    expect(leftovers(PREFIX, pool).filter((n) => !n.startsWith(stemcell))).toEqual([]);
  }, 180_000);
});
