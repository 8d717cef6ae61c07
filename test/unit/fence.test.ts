// The fence's XML and how it is told apart (src/driver/libvirt/fence.ts); that libvirt
// accepts it and refuses the late define is shown against the real daemons in
// test/integration/crash-define.test.ts.
import { describe, expect, it } from 'vitest';
import { fenceDomainType, fenceXml, mayBeFence, parseFence, vmUuid } from '../../src/driver/libvirt/fence.js';
import { parseVmMetadata } from '../../src/xml/index.js';

const info = { of: 't-x-vm-00000000-0000-4000-8000-000000000001', reason: `define got no answer: <lost> & "late"`, host: 'h', pid: 42, start: 'b/1', at: '2026-01-01T00:00:00.000Z' };

describe('fence', () => {
  it('its XML carries the record, read back exactly, and is no VM metadata', () => {
    const xml = fenceXml('qemu', 'fe0cefe0-1111-4222-8333-444455556666', info);
    expect(parseFence(xml)).toEqual(info);
    expect(xml).not.toMatch(/<disk|<interface/);
    expect(() => parseVmMetadata(xml)).toThrow();
  });

  it('a domain without the fence element is none', () => {
    expect(parseFence("<domain type='qemu'><name>x</name><metadata><fence xmlns='urn:other'/></metadata></domain>")).toBeUndefined();
  });

  it('the os element suits each driver', () => {
    expect(fenceXml(fenceDomainType('lxc:///'), 'fe0cefe0-1111-4222-8333-444455556666', info)).toContain('<type>exe</type><init>');
    expect(fenceXml(fenceDomainType('test+unix:///default'), 'fe0cefe0-1111-4222-8333-444455556666', info)).toContain("type='test'");
    expect(fenceDomainType('qemu+ssh://h/system')).toBe('qemu');
  });

  it("a VM's uuid never looks like a fence's", () => {
    for (let i = 0; i < 2000; i++) {
      const u = vmUuid();
      expect(mayBeFence({ name: 'x', id: -1, uuid: Buffer.from(u.replace(/-/g, ''), 'hex') })).toBe(false);
    }
    expect(mayBeFence({ name: 'x', id: -1, uuid: Buffer.from('fe0cefe0111142228333444455556666', 'hex') })).toBe(true);
  });
});
