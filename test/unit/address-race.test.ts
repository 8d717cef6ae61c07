// Two create_vm calls that claim one static address settle it after both have defined
// their domains: each decides with the same data, so exactly one keeps the address.
import { describe, expect, it } from 'vitest';
import { comesFirst } from '../../src/driver/libvirt/address-holders.js';

describe('comesFirst', () => {
  const a = { vm: 't-vm-a', creatingAt: '2026-12-02T18:00:00.100Z' };
  const b = { vm: 't-vm-b', creatingAt: '2026-12-02T18:00:00.200Z' };

  it('the creation that began first keeps the address, whichever side asks', () => {
    expect(comesFirst(a, b)).toBe(true);
    expect(comesFirst(b, a)).toBe(false);
  });

  it('at the same instant the name decides, and exactly one side wins', () => {
    const b0 = { ...b, creatingAt: a.creatingAt };
    expect([comesFirst(a, b0), comesFirst(b0, a)]).toEqual([true, false]);
  });

  it('a finished VM (no creation mark) always keeps its address', () => {
    expect(comesFirst(a, { vm: 't-vm-old' })).toBe(false);
  });
});
