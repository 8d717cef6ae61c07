// Disk CIDs the BOSH agent finds by ID: the agent globs /dev/disk/by-id/*<X>, X being the
// disk CID's first 20 characters (agents before April 2023) or the whole CID (since), and
// udev names a virtio disk `virtio-<serial>`, serial at most 20 characters.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isCid, isShortDiskCid, newCid, parseOwnedName, SHORT_DISK_PREFIX_MAX } from '../../src/driver/cids.js';
import { persistentDiskSerial } from '../../src/driver/qemu/serials.js';

/** What the agent's glob matches among `virtio-<serial>` names, under each rule. */
function agentFinds(cid: string, serial: string): { first20: boolean; whole: boolean } {
  const byId = `virtio-${serial}`;
  if (cid.length < 20) return { first20: false, whole: false };
  return { first20: byId.endsWith(cid.slice(0, 20)), whole: byId.endsWith(cid) };
}

const prefixes = fc.stringMatching(/^[a-z0-9-]{0,32}$/);

describe('disk CIDs', () => {
  it('are 20 characters, their own serial, found by ID under both agent rules, for every prefix up to the limit', () => {
    fc.assert(
      fc.property(prefixes.filter((p) => p.length <= SHORT_DISK_PREFIX_MAX), (prefix) => {
        const cid = newCid(prefix, 'disk');
        expect(cid).toHaveLength(20);
        expect(cid.startsWith(prefix)).toBe(true);
        expect(isShortDiskCid(cid)).toBe(true);
        expect(isCid(cid, 'disk', prefix)).toBe(true);
        const serial = persistentDiskSerial(cid);
        expect(serial).toBe(cid);
        expect(serial.length).toBeLessThanOrEqual(20);
        expect(agentFinds(cid, serial)).toEqual({ first20: true, whole: true });
      }),
    );
  });

  it('keep the long form under a longer prefix: its serial cannot be the CID, and neither agent finds it by ID', () => {
    const prefix = 'x'.repeat(SHORT_DISK_PREFIX_MAX + 1);
    const cid = newCid(prefix, 'disk');
    expect(cid).toMatch(new RegExp(`^${prefix}disk-[0-9a-f-]{36}$`));
    expect(isShortDiskCid(cid)).toBe(false);
    expect(isCid(cid, 'disk', prefix)).toBe(true);
    expect(agentFinds(cid, persistentDiskSerial(cid))).toEqual({ first20: false, whole: false });
  });

  it('from before (disk-<uuid>) are still this CPI\'s and keep their serial: the uuid\'s first 20 hex digits', () => {
    const old = 'disk-0b7e0c1e-8a38-4c43-9f0e-8f6c7e4b1f11';
    expect(isCid(old, 'disk', '')).toBe(true);
    expect(persistentDiskSerial(old)).toBe('0b7e0c1e8a384c439f0e');
    expect(isCid('t-x-disk-0b7e0c1e-8a38-4c43-9f0e-8f6c7e4b1f11', 'disk', 't-x-')).toBe(true);
  });

  it('the `@host` form: agents before April 2023 find it by ID, later ones only by path', () => {
    const cid = newCid('', 'disk');
    expect(agentFinds(`${cid}@host-a`, persistentDiskSerial(cid))).toEqual({ first20: true, whole: false });
  });

  it('belong to exactly one prefix: no other prefix parses another prefix\'s name, with or without suffix', () => {
    fc.assert(
      fc.property(prefixes, prefixes, fc.constantFrom('', '.meta', '.lock', '.moved'), (mine, other, suffix) => {
        fc.pre(mine !== other);
        const cid = newCid(mine, 'disk');
        expect(parseOwnedName(mine, cid + suffix)?.cid).toBe(cid);
        expect(parseOwnedName(other, cid + suffix)).toBeNull();
      }),
    );
  });

  it('are never mistaken for another kind, and other kinds keep the uuid form', () => {
    const vm = newCid('p-', 'vm');
    expect(vm).toMatch(/^p-vm-[0-9a-f-]{36}$/);
    expect(isCid(vm, 'disk', 'p-')).toBe(false);
    expect(isCid(newCid('p-', 'disk'), 'vm', 'p-')).toBe(false);
    expect(isShortDiskCid(vm)).toBe(false);
  });
});
