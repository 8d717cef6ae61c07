// Backend-agnostic conformance suite: drives only bin/cpi with JSON on stdin, the way the
// director does, and checks the lifecycle CPIs are held to (reference/cpi-contract.md,
// "Lifecycle checks real CPIs run") plus a malformed-input battery over every method.
// Runs against qemu:///system with its own pool, network and stemcell, or against any
// libvirt host/backend given by CONFORMANCE_CONFIG (see README "Conformance suite").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOSH_ERROR_TYPES,
  CONTRACT_METHODS,
  agentEnv,
  backendIs,
  callCpi,
  dynamicNetwork,
  env,
  fails,
  inBatches,
  libvirtState,
  manualNetwork,
  neverCid,
  ok,
  prepare,
  teardown,
  trackCall,
  virsh,
  type CpiCall,
} from './harness.js';
import { METHOD_SHAPES, batteryCases, envelopeCases, type BatteryCase, type Resources } from './battery.js';
import { scratchDir } from '../helpers/scratch.js';

/**
 * A check that applies only to some targets: elsewhere it is not registered at all, so
 * it is never counted as passed or as skipped, and a line on stdout says why.
 */
type ItLike = typeof it;
function onlyWhen(applies: boolean, why: string): ItLike {
  if (applies) return it;
  const note = (name: string) => console.log(`conformance: "${name}" does not apply here: ${why}`);
  return Object.assign(note, { each: () => note }) as unknown as ItLike;
}

const LONG = { timeout: 600_000 };
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

beforeAll(async () => {
  await prepare();
}, 600_000);

afterAll(async () => {
  await teardown();
}, 600_000);

// One VM for the checks that need a running VM but do not delete it (disks, snapshots,
// the battery); created from calculate_vm_cloud_properties' answer (check 10).
const SIZE = { cpu: 1, ram: 256, ephemeral_disk_size: 64 };
let workhorseP: Promise<string> | undefined;
function workhorse(): Promise<string> {
  workhorseP ??= (async () => {
    const props = await ok('calculate_vm_cloud_properties', [SIZE]);
    const [cid] = (await ok('create_vm', ['agent-workhorse', env().stemcell, props, { default: dynamicNetwork() }, null, agentEnv()])) as [string, unknown];
    return cid;
  })();
  return workhorseP;
}

const macsOf = (vm: string): string[] =>
  virsh('domiflist', vm)
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/).pop() ?? '')
    .filter((m) => MAC_RE.test(m))
    .map((m) => m.toLowerCase())
    .sort();

/**
 * A live detach completes only when the guest answers the ACPI unplug request. The tiny
 * stemcell boots no OS, so unless CONFORMANCE_STEMCELL_BOOTS=1 says the stemcell boots a
 * guest that does, the VM is powered off (virsh destroy: the domain stays defined) before
 * detach_disk, which then takes the config-only path; reboot_vm starts it again.
 */
const liveDetach = process.env.CONFORMANCE_STEMCELL_BOOTS === '1';
async function detach(vm: string, disk: string): Promise<void> {
  if (!liveDetach) virsh('destroy', vm);
  expect(await ok('detach_disk', [vm, disk])).toBeNull();
  if (!liveDetach) {
    expect(await ok('reboot_vm', [vm])).toBeNull(); // starts a VM that is off
    expect(virsh('domstate', vm).stdout.trim()).toBe('running');
  }
}

describe('1. info', () => {
  it.each([
    ['without api_version (the director\'s first call)', { noApiVersion: true }],
    ['with api_version 1 (the CLI)', { apiVersion: 1 }],
    ['with api_version 2', { apiVersion: 2 }],
  ] as const)('answers %s with api_version >= 2 and stemcell formats', async (_label, opts) => {
    const result = (await ok('info', [], opts)) as { api_version: unknown; stemcell_formats: unknown };
    expect(Number.isInteger(result.api_version)).toBe(true);
    expect(result.api_version as number).toBeGreaterThanOrEqual(2);
    expect(Array.isArray(result.stemcell_formats)).toBe(true);
    expect((result.stemcell_formats as unknown[]).length).toBeGreaterThan(0);
    for (const f of result.stemcell_formats as unknown[]) expect(typeof f).toBe('string');
  });
});

describe('2. create_stemcell → delete_stemcell', () => {
  it.each([
    ['API v2 (two arguments)', [] as unknown[], 2],
    ['API v3 (env with tags)', [{ tags: { any: 'value', 'ünï': '<&>' } }], 3],
  ] as const)('imports and deletes a stemcell, %s', async (_label, extra, apiVersion) => {
    const before = libvirtState();
    const cid = await ok('create_stemcell', [env().stemcellImage, { name: 'conformance-2', version: '2', disk_format: 'qcow2' }, ...extra], { apiVersion });
    expect(typeof cid).toBe('string');
    expect((cid as string).length).toBeGreaterThan(0);
    expect(libvirtState()).not.toEqual(before);
    expect(await ok('delete_stemcell', [cid])).toBeNull();
    expect(libvirtState()).toEqual(before);
    // Deleting it again: done already (the CLI tolerates StemcellNotFound).
    const again = await callCpi('delete_stemcell', [cid]);
    expect(again.wireProblems).toEqual([]);
    if (again.response!.error) expect(again.response!.error.type).toBe('Bosh::Clouds::StemcellNotFound');
    else expect(again.response!.result).toBeNull();
  }, LONG.timeout);
});

describe('3. create_vm → has_vm → set_vm_metadata → reboot_vm → delete_vm → has_vm', () => {
  const variants: Array<[string, () => Record<string, Record<string, unknown>>]> = [
    ['a dynamic network', () => ({ private: dynamicNetwork() })],
    ['a manual network and a vip network', () => ({ private: manualNetwork(env().ipv4[0]), public: { type: 'vip', ip: '198.18.99.10', cloud_properties: {} } })],
    [
      'three manual networks, each with its own mac',
      () => ({
        a: manualNetwork(env().ipv4[0], { mac: '52:54:00:C0:F0:01' }),
        b: manualNetwork(env().ipv4[1], { mac: '52:54:00:c0:f0:02', default: [] }),
        c: manualNetwork(env().ipv4[2], { mac: '52:54:00:c0:f0:03', default: [] }),
      }),
    ],
  ];

  it.each(variants)('with %s', async (_label, networksOf) => {
    const networks = networksOf();
    const before = libvirtState();
    const answer = await ok('create_vm', [`agent-<&>'"-ünï`, env().stemcell, {}, networks, null, agentEnv()], {
      context: { vm: { stemcell: { api_version: 3 } } },
    });
    // API v2: [vm_cid, networks], never a bare string.
    expect(Array.isArray(answer)).toBe(true);
    const [cid, returned] = answer as [unknown, Record<string, Record<string, unknown>>];
    expect(typeof cid).toBe('string');
    expect((cid as string).length).toBeGreaterThan(0);
    expect(Object.keys(returned).sort()).toEqual(Object.keys(networks).sort());
    const nicMacs: string[] = [];
    for (const [name, sent] of Object.entries(networks)) {
      const got = returned[name]!;
      expect(got.type).toBe(sent.type);
      if (sent.type === 'vip') {
        expect(got.ip).toBe(sent.ip);
        continue;
      }
      if (sent.type === 'manual') expect(got.ip).toBe(sent.ip);
      expect(got.mac).toMatch(MAC_RE);
      if (typeof sent.mac === 'string') expect(String(got.mac).toLowerCase()).toBe(sent.mac.toLowerCase());
      nicMacs.push(String(got.mac).toLowerCase());
    }
    expect(new Set(nicMacs).size).toBe(nicMacs.length);
    // The domain has one NIC per returned mac, and no other.
    expect(macsOf(cid as string)).toEqual([...nicMacs].sort());

    expect(await ok('has_vm', [cid])).toBe(true);
    const tags = {
      director: 'conformance',
      deployment: 'conf-deployment',
      instance_group: 'conf-group',
      job: 'conf-group',
      id: 'b0f1c4e2-0000-4000-8000-000000000001',
      name: 'conf-group/b0f1c4e2-0000-4000-8000-000000000001',
      index: '0',
      created_at: '2026-01-01T00:00:00Z',
      custom: `a <tag> & 'quotes' "too" ünï`,
    };
    expect(await ok('set_vm_metadata', [cid, tags])).toBeNull();
    expect(await ok('reboot_vm', [cid])).toBeNull();
    expect(await ok('has_vm', [cid])).toBe(true);
    expect(virsh('domstate', cid as string).stdout.trim()).toBe('running');
    expect(await ok('delete_vm', [cid])).toBeNull();
    expect(await ok('has_vm', [cid])).toBe(false);
    // Owned volumes, DHCP reservations and the domain are gone with it.
    expect(libvirtState()).toEqual(before);
  }, LONG.timeout);
});

describe('4. has_vm of a VM that never existed', () => {
  it('is false, not an error', async () => {
    expect(await ok('has_vm', [neverCid('vm')])).toBe(false);
  });
});

describe('5. deleting what is missing', () => {
  it('delete_vm of a missing VM is VMNotFound', async () => {
    expect((await fails('delete_vm', [neverCid('vm')])).type).toBe('Bosh::Clouds::VMNotFound');
  });

  it('delete_disk of a missing disk is DiskNotFound', async () => {
    expect((await fails('delete_disk', [neverCid('disk')])).type).toBe('Bosh::Clouds::DiskNotFound');
  });

  it('delete_snapshot of a missing snapshot succeeds', async () => {
    expect(await ok('delete_snapshot', [neverCid('snap')])).toBeNull();
  });

  it('detach_disk of an existing disk that is not attached is DiskNotAttached', async () => {
    const vm = await workhorse();
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    try {
      expect((await fails('detach_disk', [vm, disk])).type).toBe('Bosh::Clouds::DiskNotAttached');
    } finally {
      await ok('delete_disk', [disk]);
    }
  }, LONG.timeout);

  it('detach_disk of a disk that does not exist is DiskNotAttached (or DiskNotFound), never an unknown error', async () => {
    const vm = await workhorse();
    expect(['Bosh::Clouds::DiskNotAttached', 'Bosh::Clouds::DiskNotFound']).toContain((await fails('detach_disk', [vm, neverCid('disk')])).type);
  }, LONG.timeout);

  it('detach_disk from a VM that does not exist is VMNotFound', async () => {
    expect((await fails('detach_disk', [neverCid('vm'), neverCid('disk')])).type).toBe('Bosh::Clouds::VMNotFound');
  });
});

describe('6. create_disk → has_disk → attach_disk → get_disks → set_disk_metadata → detach_disk → delete_disk', () => {
  it.each([
    ['with the VM as locality hint', true],
    ['with vm_cid null', false],
  ] as const)('%s', async (_label, withHint) => {
    const vm = await workhorse();
    const disk = (await ok('create_disk', [128, {}, withHint ? vm : null])) as string;
    expect(typeof disk).toBe('string');
    expect(await ok('has_disk', [disk])).toBe(true);
    expect(await ok('get_disks', [vm])).not.toContain(disk);

    const hint = await ok('attach_disk', [vm, disk]);
    // API v2: a non-empty hint; this CPI gives {id: the 20-character virtio serial, path}
    // for a block device (qemu), {path: the directory in the container} for lxc, and
    // {path: /dev/disk/by-id/ata-VBOX_HARDDISK_<VirtualBox's serial>} for vbox.
    expect(hint).toBeTruthy();
    expect(typeof hint).toBe('object');
    const h = hint as Record<string, unknown>;
    if (backendIs('vbox')) {
      expect(h.id).toBeUndefined();
      expect(h.path).toMatch(/^\/dev\/disk\/by-id\/ata-VBOX_HARDDISK_VB[0-9a-f]{8}-[0-9a-f]{8}$/);
    } else if (!backendIs('lxc') || h.id !== undefined) {
      expect(typeof h.id).toBe('string');
      expect((h.id as string).length).toBe(20);
    }
    expect(typeof h.path).toBe('string');
    expect((h.path as string).length).toBeGreaterThan(0);
    expect(await ok('get_disks', [vm])).toContain(disk);

    const meta = { director: 'conformance', deployment: 'conf-deployment', instance_id: 'b0f1c4e2', instance_index: '0', instance_group: 'conf-group', attached_at: '2026-01-01T00:00:00Z' };
    expect(await ok('set_disk_metadata', [disk, meta])).toBeNull();

    await detach(vm, disk);
    expect(await ok('get_disks', [vm])).not.toContain(disk);
    expect(await ok('has_disk', [disk])).toBe(true);
    expect(await ok('delete_disk', [disk])).toBeNull();
    expect(await ok('has_disk', [disk])).toBe(false);
  }, LONG.timeout);
});

describe('6a. set_disk_metadata from concurrent processes', () => {
  // The director runs calls in parallel as separate processes (max_in_flight): tagging
  // one disk from several at once must not fail unexpectedly.
  it('answers every call with null (or a proper, anticipated error)', async () => {
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    try {
      const calls = await Promise.all(Array.from({ length: 6 }, (_, i) => callCpi('set_disk_metadata', [disk, { deployment: 'conf', [`tag${i}`]: String(i) }])));
      const bad = calls
        .map((c, i) => {
          const e = c.response?.error;
          if (c.wireProblems.length) return `call ${i}: ${c.wireProblems.join('; ')}`;
          if (e && /^Unexpected error/i.test(e.message)) return `call ${i}: ${e.type}: ${e.message}`;
          return '';
        })
        .filter(Boolean);
      expect(bad).toEqual([]);
    } finally {
      await callCpi('delete_disk', [disk]);
    }
    expect(await ok('has_disk', [disk])).toBe(false);
  }, LONG.timeout);
});

describe('6b. detach_disk of a running VM whose guest has not released the disk', () => {
  // The director retries what the CPI marks ok_to_retry; the retry must then either finish
  // the detach or say DiskNotAttached / the same retriable error, never an unexpected one.
  // With a guest that boots nothing (the default stemcell) the first call cannot complete.
  it('can be retried as the error says', async () => {
    const vm = await workhorse();
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    try {
      await ok('attach_disk', [vm, disk]);
      const first = await callCpi('detach_disk', [vm, disk]);
      expect(first.wireProblems).toEqual([]);
      const firstError = first.response!.error;
      if (firstError) {
        expect(firstError.type).toBe('Bosh::Clouds::CloudError');
        expect(firstError.ok_to_retry, firstError.message).toBe(true);
        expect(firstError.message).toMatch(/did not release the disk within \d+ s \(vm\.detach_timeout_seconds\)/);
        const retry = await callCpi('detach_disk', [vm, disk]);
        expect(retry.wireProblems).toEqual([]);
        const e = retry.response!.error;
        if (e) {
          const retriable = e.type === 'Bosh::Clouds::CloudError' && e.ok_to_retry;
          expect(retriable || e.type === 'Bosh::Clouds::DiskNotAttached', `retry of detach_disk answered ${e.type} (ok_to_retry ${e.ok_to_retry}): ${e.message}`).toBe(true);
        }
      }
    } finally {
      // Whatever state that left: power off, detach (config only), start again, delete.
      virsh('destroy', vm);
      await callCpi('detach_disk', [vm, disk]);
      await callCpi('reboot_vm', [vm]);
      await callCpi('delete_disk', [disk]);
    }
    expect(await ok('has_disk', [disk])).toBe(false);
    expect(await ok('get_disks', [vm])).not.toContain(disk);
  }, LONG.timeout);
});

// The VM check 7 makes carries the disk into check 11, which deletes it.
let hinted: { vm: string; disk: string } | undefined;

describe('7. create_vm with disk_cids locality hints', () => {
  it('creates the VM next to the disk, which then attaches to it', async () => {
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    const answer = await ok('create_vm', ['agent-hinted', env().stemcell, {}, { default: dynamicNetwork() }, [disk], agentEnv()]);
    expect(Array.isArray(answer)).toBe(true);
    const vm = (answer as [string])[0];
    hinted = { vm, disk };
    expect(await ok('has_vm', [vm])).toBe(true);
    // A hint is not an attachment.
    expect(await ok('get_disks', [vm])).toEqual([]);
    const hint = await ok('attach_disk', [vm, disk]);
    expect(hint).toBeTruthy();
    expect(await ok('get_disks', [vm])).toEqual([disk]);
  }, LONG.timeout);
});

describe('8. snapshot_disk → delete_snapshot', () => {
  // A directory disk has no point-in-time copy: the lxc backend answers NotSupported
  // naming itself, for a detached and an attached disk alike. libvirt's vbox driver has
  // no disk snapshot the CPI could use: the vbox backend answers the same way.
  const noSnapshots = backendIs('lxc') ? 'lxc' : backendIs('vbox') ? 'vbox' : undefined;
  const noSnapshotsWhy =
    noSnapshots === 'vbox'
      ? "the vbox backend has no disk snapshots (libvirt's vbox driver snapshots whole machines only); the check above covers it"
      : 'a directory disk (lxc) has no snapshots; the check above covers it';
  onlyWhen(noSnapshots !== undefined, 'only the lxc and vbox backends lack snapshots')(`is NotSupported by the ${noSnapshots ?? 'lxc'} backend, which says so`, async () => {
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    const before = libvirtState();
    const err = await fails('snapshot_disk', [disk, {}]);
    expect(err.type).toBe('Bosh::Clouds::NotSupported');
    expect(err.message).toContain(`${noSnapshots} backend`);
    expect(libvirtState()).toEqual(before);
    expect(await ok('delete_snapshot', [neverCid('snap')])).toBeNull();
    await ok('delete_disk', [disk]);
  }, LONG.timeout);

  onlyWhen(noSnapshots === undefined, noSnapshotsWhy)('snapshots a detached disk and deletes the snapshot (twice)', async () => {
    const disk = (await ok('create_disk', [64, {}, null])) as string;
    const before = libvirtState();
    const snap = await ok('snapshot_disk', [disk, { director: 'conformance', deployment: 'd', instance_id: 'i', agent_id: 'a', instance_index: '0', instance_group: 'g' }]);
    expect(typeof snap).toBe('string');
    expect((snap as string).length).toBeGreaterThan(0);
    expect(await ok('delete_snapshot', [snap])).toBeNull();
    expect(libvirtState()).toEqual(before);
    expect(await ok('delete_snapshot', [snap])).toBeNull();
    await ok('delete_disk', [disk]);
  }, LONG.timeout);

  onlyWhen(noSnapshots === undefined, noSnapshotsWhy)('snapshots a disk attached to a running VM', async () => {
    const vm = await workhorse();
    const disk = (await ok('create_disk', [64, {}, vm])) as string;
    await ok('attach_disk', [vm, disk]);
    const before = libvirtState();
    const snap = await ok('snapshot_disk', [disk, null]);
    expect(typeof snap).toBe('string');
    expect(virsh('domstate', vm).stdout.trim()).toBe('running');
    expect(await ok('delete_snapshot', [snap])).toBeNull();
    expect(libvirtState()).toEqual(before);
    await detach(vm, disk);
    await ok('delete_disk', [disk]);
  }, LONG.timeout);
});

describe('9. failures', () => {
  const expectNothingLeft = async (label: string, args: unknown[], opts: Parameters<typeof fails>[2] = {}, types = ['Bosh::Clouds::VMCreationFailed']) => {
    const before = libvirtState();
    const err = await fails('create_vm', args, opts);
    expect(types, `${label}: ${err.type}: ${err.message}`).toContain(err.type);
    expect(err.message.length).toBeGreaterThan(0);
    expect(typeof err.ok_to_retry).toBe('boolean');
    expect(libvirtState()).toEqual(before);
    return err;
  };

  it('create_vm from a stemcell that does not exist raises VMCreationFailed and leaves nothing', async () => {
    await expectNothingLeft('missing stemcell', ['agent-fail', neverCid('sc'), {}, { default: dynamicNetwork() }, null, agentEnv()]);
  }, LONG.timeout);

  it('create_vm on a libvirt network that does not exist raises VMCreationFailed (or NetworkNotFound) and leaves nothing', async () => {
    await expectNothingLeft(
      'missing network',
      ['agent-fail', env().stemcell, {}, { default: { type: 'dynamic', cloud_properties: { name: 't-conf-no-such-net' } } }, null, agentEnv()],
      {},
      ['Bosh::Clouds::VMCreationFailed', 'Bosh::Clouds::NetworkNotFound'],
    );
  }, LONG.timeout);

  // Faults can only be injected into a CPI this suite runs itself, against its own host.
  onlyWhen(!process.env.CONFORMANCE_CONFIG, 'faults are injected only into a CPI the suite prepares itself').each(['create_vm:after-reservations', 'create_vm:after-start'])(
    'create_vm failing at %s (after real volumes, DHCP reservations and the domain exist) undoes all of it',
    async (point) => {
      await expectNothingLeft(point, ['agent-fault', env().stemcell, {}, { default: manualNetwork(env().ipv4[0]) }, null, agentEnv()], {
        env: { BOSH_LIBVIRT_CPI_FAULTS: point },
      });
    },
    LONG.timeout,
  );

  describe('an invalid configuration answers an error with a message and a log', () => {
    let dir: string;
    beforeAll(() => {
      dir = scratchDir('t-conf-config-');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const variant = (name: string, edit: (c: Record<string, unknown>) => unknown): string => {
      const base = JSON.parse(readFileSync(env().config, 'utf8')) as Record<string, unknown>;
      const path = join(dir, `${name}.json`);
      const edited = edit(structuredClone(base));
      writeFileSync(path, typeof edited === 'string' ? edited : JSON.stringify(edited));
      return path;
    };

    const unreachable = (c: Record<string, unknown>) => {
      const libvirt = { uri: 'qemu+unix:///system?socket=/nonexistent/t-conf.sock' };
      const hosts = Array.isArray(c.hosts) ? { hosts: (c.hosts as Array<Record<string, unknown>>).map((h) => ({ ...h, libvirt })) } : {};
      return { ...c, libvirt, ...hosts };
    };
    const cases: Array<[string, (c: Record<string, unknown>) => unknown, string[]]> = [
      ['a file that is not JSON', () => '{"libvirt": ', ['info', 'has_vm', 'create_disk']],
      ['a file that is a JSON array', () => '[]', ['info', 'has_vm']],
      ['no agent section', (c) => ({ ...c, agent: undefined }), ['info', 'has_vm']],
      ['an unknown top-level key', (c) => ({ ...c, bogus_key: 1 }), ['info', 'has_vm']],
      ['a libvirt URI of no known driver', (c) => ({ ...c, libvirt: { uri: 'nonsense:///x' } }), ['info', 'has_vm']],
      ['storage.pool of the wrong type', (c) => ({ ...c, storage: { pool: 42 } }), ['has_vm', 'create_disk']],
      // With several hosts, every one of them (one unreachable host alone is not a failure: the CPI uses the others).
      ['an unreachable libvirt', (c) => unreachable(c), ['has_vm', 'create_disk']],
    ];
    it.each(cases)('%s', async (name, edit, methods) => {
      const config = variant(name.replace(/\W+/g, '-'), edit);
      for (const method of methods) {
        const args = method === 'has_vm' ? [neverCid('vm')] : method === 'create_disk' ? [64, {}, null] : [];
        const err = await fails(method, args, { config });
        expect((BOSH_ERROR_TYPES as readonly string[]).includes(err.type), `${method}: ${err.type}`).toBe(true);
        expect(err.message.length, method).toBeGreaterThan(0);
        expect(typeof err.log, method).toBe('string');
      }
    }, LONG.timeout);

    it('a config path that does not exist', async () => {
      const err = await fails('has_vm', [neverCid('vm')], { config: join(dir, 'missing.json') });
      expect(err.message.length).toBeGreaterThan(0);
      expect(typeof err.log).toBe('string');
    });
  });
});

describe('10. calculate_vm_cloud_properties', () => {
  it('answers cloud_properties that create_vm accepts for that size', async () => {
    const props = await ok('calculate_vm_cloud_properties', [SIZE]);
    expect(typeof props).toBe('object');
    expect(props).not.toBeNull();
    expect(Array.isArray(props)).toBe(false);
    const vm = await workhorse(); // created from these cloud_properties
    expect(await ok('has_vm', [vm])).toBe(true);
    // libvirt's vbox driver reports the host's largest guest RAM as "Max memory" and the
    // machine's RAM as "Used memory" (vboxDomainGetInfo).
    const field = backendIs('vbox') ? 'Used memory' : 'Max memory';
    const memory = new RegExp(`${field}:\\s+(\\d+) KiB`).exec(virsh('dominfo', vm).stdout)?.[1];
    expect(Number(memory)).toBe(SIZE.ram * 1024);
    expect(/CPU\(s\):\s+(\d+)/.exec(virsh('dominfo', vm).stdout)?.[1]).toBe(String(SIZE.cpu));
  }, LONG.timeout);

  it('answers for a large size too', async () => {
    const props = await ok('calculate_vm_cloud_properties', [{ cpu: 16, ram: 65536, ephemeral_disk_size: 102400 }]);
    expect(typeof props).toBe('object');
  });
});

describe('11. delete_vm with a persistent disk attached', () => {
  it('deletes the VM and leaves the disk intact', async () => {
    let { vm, disk } = hinted ?? { vm: '', disk: '' };
    if (!hinted) {
      // Check 7 did not get that far: make the same situation here.
      disk = (await ok('create_disk', [64, {}, null])) as string;
      vm = ((await ok('create_vm', ['agent-11', env().stemcell, {}, { default: dynamicNetwork() }, [disk], agentEnv()])) as [string])[0];
      await ok('attach_disk', [vm, disk]);
    }
    expect(await ok('get_disks', [vm])).toContain(disk);
    expect(await ok('delete_vm', [vm])).toBeNull();
    expect(await ok('has_vm', [vm])).toBe(false);
    expect(await ok('has_disk', [disk])).toBe(true);
    // Intact: it can be attached again (to another VM) and deleted normally.
    const other = await workhorse();
    await ok('attach_disk', [other, disk]);
    expect(await ok('get_disks', [other])).toContain(disk);
    await detach(other, disk);
    expect(await ok('delete_disk', [disk])).toBeNull();
    expect(await ok('has_disk', [disk])).toBe(false);
    hinted = undefined;
  }, LONG.timeout);
});

// ---------------------------------------------------------------------------------------

interface Outcome {
  c: BatteryCase;
  call: CpiCall;
  problems: string[];
}

/** What is wrong with one battery answer (empty: conformant). */
function judge(c: BatteryCase, call: CpiCall): string[] {
  const problems = [...call.wireProblems];
  const res = call.response;
  if (!res) return problems;
  if (res.error) {
    if (c.types && !c.types.includes(res.error.type)) problems.push(`error type ${res.error.type}, expected one of ${c.types.join(', ')}`);
    // A CpiError wrapping an exception the CPI did not anticipate is a crash in disguise.
    if (/^Unexpected error/i.test(res.error.message)) problems.push(`unhandled exception: ${res.error.message.slice(0, 200)}`);
    return problems;
  }
  const r = res.result;
  const allowed =
    (c.outcome === 'error-or-false' && r === false) ||
    (c.outcome === 'error-or-null' && r === null) ||
    (c.outcome === 'error-or-result' && r !== null && typeof r === 'object');
  if (!allowed) problems.push(`succeeded with ${JSON.stringify(r)?.slice(0, 200)}, expected ${c.outcome}`);
  return problems;
}

const shortArgs = (args: unknown[]) => JSON.stringify(args, (_k, v: unknown) => (typeof v === 'string' && v.length > 60 ? `${v.slice(0, 20)}…(${v.length} chars)` : v))?.slice(0, 300);

describe('malformed-input battery', () => {
  const outcomes = new Map<string, Outcome[]>();
  let cases: BatteryCase[] = [];
  let before: ReturnType<typeof libvirtState>;
  let after: ReturnType<typeof libvirtState>;
  let disk = '';
  const envelope: Array<{ label: string; call: CpiCall; types: readonly string[] }> = [];

  beforeAll(async () => {
    const vm = await workhorse();
    disk = (await ok('create_disk', [64, {}, null])) as string;
    // Tags live next to the disk (a sidecar volume on qemu): make it exist before the
    // snapshot, so set_disk_metadata cases that legitimately succeed change no listing.
    await ok('set_disk_metadata', [disk, { deployment: 'battery' }]);
    const e = env();
    const r: Resources = {
      stemcellImage: e.stemcellImage,
      stemcell: e.stemcell,
      vm,
      disk,
      network: e.network,
      never: { vm: neverCid('vm'), disk: neverCid('disk'), snap: neverCid('snap'), sc: neverCid('sc') },
    };
    cases = batteryCases(r);
    before = libvirtState();
    const calls = await inBatches(cases, 8, async (c) => {
      const call = await callCpi(c.method, c.args);
      trackCall(call, c.args); // whatever a non-conformant CPI created is removed in teardown
      return { c, call, problems: judge(c, call) };
    });
    for (const o of calls) outcomes.set(o.c.method, [...(outcomes.get(o.c.method) ?? []), o]);
    for (const ec of envelopeCases()) envelope.push({ label: ec.label, call: await callCpi('(raw)', [], { raw: ec.raw }), types: ec.types });
    after = libvirtState();
    const byType = new Map<string, number>();
    for (const o of calls) {
      const k = o.call.response?.error?.type ?? `result ${JSON.stringify(o.call.response?.result)}`;
      byType.set(k, (byType.get(k) ?? 0) + 1);
    }
    console.log(`battery: ${cases.length} calls over ${outcomes.size} methods, plus ${envelope.length} broken envelopes; answers: ${JSON.stringify(Object.fromEntries(byType))}`);
  }, 1_800_000);

  afterAll(async () => {
    if (disk) await callCpi('delete_disk', [disk]);
  }, 600_000);

  it('the table covers exactly the 22 methods of the contract', () => {
    expect(METHOD_SHAPES.map((m) => m.method).sort()).toEqual([...CONTRACT_METHODS].sort());
    expect(CONTRACT_METHODS.length).toBe(22);
    for (const m of METHOD_SHAPES) {
      const families = new Set(cases.filter((c) => c.method === m.method).map((c) => c.family));
      expect([...families].sort(), m.method).toEqual(m.args.length === 0 ? ['extra'] : ['absurd', 'extra', 'missing', 'wrong-type']);
    }
  });

  it.each(CONTRACT_METHODS)('%s answers every malformed call with a Bosh::Clouds error (exactly one JSON line, exit 0)', (method) => {
    const list = outcomes.get(method) ?? [];
    expect(list.length).toBeGreaterThan(0);
    const bad = list.filter((o) => o.problems.length > 0).map((o) => `${o.c.family} / ${o.c.label} ${shortArgs(o.c.args)} → ${o.problems.join('; ')} | response: ${o.call.stdout.trim().slice(0, 300)}`);
    expect(bad).toEqual([]);
  });

  it('broken request envelopes are CpiErrors (or NotImplemented for unknown methods)', () => {
    const bad = envelope
      .map(({ label, call, types }) => {
        const p = [...call.wireProblems];
        const t = call.response?.error?.type;
        if (!t) p.push(`no error: ${call.stdout.trim().slice(0, 200)}`);
        else if (!types.includes(t)) p.push(`error type ${t}, expected one of ${types.join(', ')}`);
        return p.length ? `${label}: ${p.join('; ')}` : '';
      })
      .filter(Boolean);
    expect(bad).toEqual([]);
  });

  it('leaves libvirt unchanged: domains, the pool\'s volumes, networks and DHCP hosts', () => {
    expect(after).toEqual(before);
  });
});
