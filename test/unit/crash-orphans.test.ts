// What `orphans` decides from libvirt alone about interrupted calls: a domain still
// marked by create_vm (its creator gone, or the mark older than --min-age when the
// creator ran on another host), a stemcell or snapshot volume without its sidecar; and
// the mark itself surviving the metadata round trip.
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { classify, unfinishedCreate } from '../../src/cli/orphans.js';
import { creatorMarker, creatorState, processStart } from '../../src/driver/shared/creator.js';
import { parseVmMetadata, renderVmMetadata, type VmMetadata } from '../../src/xml/index.js';

const P = 't-crash-u-';
const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const vm = `${P}vm-${uuid(1)}`;

/** A pid that certainly ran and exited: a child that is gone. */
function deadPid(): number {
  return spawnSync('true').pid!;
}

describe('the creation mark', () => {
  it('round-trips through the domain metadata', () => {
    const m: VmMetadata = { agentId: 'a', stemcellCid: 'sc', volumes: [], disks: [], macs: [], prefixes: [], reservations: [], tags: {}, creating: creatorMarker(new Date('2026-01-02T03:04:05Z')) };
    expect(parseVmMetadata(renderVmMetadata(m))).toEqual(m);
    const { creating: _c, ...finished } = m;
    expect(parseVmMetadata(renderVmMetadata(finished)).creating).toBeUndefined();
  });

  it('names this process as running, a dead pid (or a reused one) as gone, another host as unknown', () => {
    const me = creatorMarker();
    expect(me.start).toBe(processStart(process.pid));
    expect(creatorState(me)).toBe('running');
    expect(creatorState({ ...me, pid: deadPid() })).toBe('gone');
    // The same pid started at another moment is another process.
    expect(creatorState({ ...me, start: `${me.start}0` })).toBe('gone');
    expect(creatorState({ ...me, host: `${hostname()}-elsewhere` })).toBe('unknown');
  });
});

describe('unfinishedCreate', () => {
  const now = Date.parse('2026-01-02T03:14:05Z');
  it('is an orphan once its creator on this host is gone, whatever its age', () => {
    const m = { ...creatorMarker(new Date(now)), pid: deadPid() };
    expect(unfinishedCreate(m, 600, now)).toMatchObject({ orphan: true });
    expect(unfinishedCreate(creatorMarker(new Date(now - 3_600_000)), 0, now)).toMatchObject({ orphan: false });
  });
  it('from another host is judged by age alone', () => {
    const m = { ...creatorMarker(new Date('2026-01-02T03:04:05Z')), host: 'director-vm' };
    expect(unfinishedCreate(m, 601, now)).toMatchObject({ orphan: false });
    expect(unfinishedCreate(m, 600, now)).toMatchObject({ orphan: true, reason: expect.stringMatching(/600 s ago by pid .* on director-vm/) });
  });
});

describe('classify', () => {
  it('lists a marked domain judged unfinished, with its volumes, and not a finished one', () => {
    const done = `${P}vm-${uuid(2)}`;
    const out = classify(P, [{ name: vm, hasMetadata: true, unfinished: 'create_vm never finished' }, { name: done, hasMetadata: true }], [`${vm}.root`, `${done}.root`]);
    expect(out).toEqual([{ kind: 'domain', name: vm, reason: `create_vm never finished (its volumes go with it: ${vm}.root)` }]);
  });

  it('lists stemcells and snapshots without their sidecar, never complete ones or persistent disks', () => {
    const half = `${P}sc-${uuid(3)}`;
    const whole = `${P}sc-${uuid(4)}`;
    const snap = `${P}snap-${uuid(5)}`;
    const disk = `${P}disk-${uuid(6)}`;
    const out = classify(P, [], [half, whole, `${whole}.meta`, snap, disk]);
    expect(out.map((o) => o.name).sort()).toEqual([half, snap].sort());
    expect(out.find((o) => o.name === half)!.reason).toMatch(/create_stemcell never finished/);
  });

  it('lists locks a dead call left, on a VM that still exists and on a stemcell, with the stemcell itself kept', () => {
    const live = `${P}vm-${uuid(9)}`;
    const sc = `${P}sc-${uuid(10)}`;
    const out = classify(P, [{ name: live, hasMetadata: true }], [`${live}.root`, `${live}.lock`, sc, `${sc}.meta`, `${sc}.lock`]);
    expect(out.map((o) => o.name).sort()).toEqual([`${live}.lock`, `${sc}.lock`].sort());
    expect(out.find((o) => o.name === `${sc}.lock`)!.reason).toMatch(/lock on stemcell .* left by a CPI call that died/);
  });

  it('lists a birth record without its disk (several hosts), never one next to its disk, nor a forwarding record (judged across hosts)', () => {
    const here = `${P}disk-${uuid(11)}`;
    const gone = `${P}disk-${uuid(12)}`;
    const out = classify(P, [], [here, `${here}.born`, `${gone}.born`, `${gone}.moved`]);
    expect(out.map((o) => o.name)).toEqual([`${gone}.born`]);
    expect(out[0]!.reason).toMatch(/birth record of disk .* not on this host/);
  });

  it('ignores another prefix', () => {
    expect(classify(P, [{ name: `t-other-vm-${uuid(7)}`, hasMetadata: true, unfinished: 'x' }], [`t-other-sc-${uuid(8)}`])).toEqual([]);
  });
});
