// Volumes and pools: overlays carry their backing store; sizes stay exact bigints.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as specs from '../../fixtures/xml/specs.js';
import { parsePool, parseVolume, renderDirPool, renderVolume, XmlParseError, XmlRenderError } from '../../src/xml/index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/xml');
const fixture = (f: string) => readFileSync(join(FIXTURES, f), 'utf8');

describe('renderVolume / parseVolume', () => {
  it('round-trips an overlay with its backing store', () => {
    const parsed = parseVolume(renderVolume(specs.overlayVolume));
    expect(parsed).toEqual({
      name: specs.overlayVolume.name,
      capacityBytes: specs.overlayVolume.capacityBytes,
      allocationBytes: 0n,
      format: 'qcow2',
      path: '',
      backing: specs.overlayVolume.backing,
    });
  });

  it('omits <allocation> and <backingStore> when not asked for', () => {
    const xml = renderVolume(specs.baseVolume);
    expect(xml).not.toMatch(/allocation|backingStore/);
    expect(parseVolume(xml).backing).toBeUndefined();
  });

  it('keeps capacities beyond 2^53 exact', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (capacityBytes) => {
        expect(parseVolume(renderVolume({ ...specs.rawVolume, capacityBytes })).capacityBytes).toBe(capacityBytes);
      }),
    );
  });

  it('reads libvirt vol-dumpxml output (key, physical, permissions, timestamps)', () => {
    expect(parseVolume(fixture('libvirt-volume-overlay.dumpxml.xml'))).toEqual({
      name: 't-xml-vm-root',
      capacityBytes: 10n * 1024n ** 3n,
      allocationBytes: expect.any(BigInt),
      format: 'qcow2',
      path: `${specs.POOL_PATH}/t-xml-vm-root`,
      backing: { path: `${specs.POOL_PATH}/t-xml-sc-base`, format: 'qcow2' },
    });
    expect(parseVolume(fixture('libvirt-volume-base.dumpxml.xml')).backing).toBeUndefined();
  });

  it('converts other size units and treats an empty <backingStore/> as none', () => {
    const xml = `<volume><name>v</name><capacity unit='GiB'>2</capacity><allocation unit='KB'>3</allocation><target><path>/p</path><format type='raw'/></target><backingStore/></volume>`;
    expect(parseVolume(xml)).toEqual({ name: 'v', capacityBytes: 2n * 1024n ** 3n, allocationBytes: 3000n, format: 'raw', path: '/p' });
    expect(() => parseVolume(`<volume><name>v</name><capacity unit='parsecs'>1</capacity></volume>`)).toThrow(XmlParseError);
  });

  it('refuses negative sizes and impossible names', () => {
    expect(() => renderVolume({ ...specs.rawVolume, capacityBytes: -1n })).toThrow(XmlRenderError);
    expect(() => renderVolume({ ...specs.rawVolume, name: 'a/b' })).toThrow(XmlRenderError);
  });
});

describe('renderDirPool / parsePool', () => {
  it('round-trips, and reads libvirt pool-dumpxml output', () => {
    expect(parsePool(renderDirPool(specs.dirPool))).toEqual({ name: 't-xml-pool', type: 'dir', path: specs.POOL_PATH });
    expect(parsePool(fixture('libvirt-pool-dir.dumpxml.xml'))).toEqual({ name: 't-xml-pool', type: 'dir', path: specs.POOL_PATH });
  });

  it('property: any representable pool name and path round-trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1 }), fc.string({ unit: 'binary' }), (name, path) => {
        let xml: string;
        try {
          xml = renderDirPool({ name, path });
        } catch (e) {
          expect(e).toBeInstanceOf(XmlRenderError);
          return;
        }
        expect(parsePool(xml)).toEqual({ name, type: 'dir', path });
      }),
    );
  });
});
