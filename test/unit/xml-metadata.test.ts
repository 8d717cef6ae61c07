// VM metadata: what the CPI keeps inside the domain (<bosh:vm>) must come back exactly,
// whatever users put into tags.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as specs from '../../fixtures/xml/specs.js';
import { parseVmMetadata, renderDomain, renderVmMetadata, XmlParseError } from '../../src/xml/index.js';
import type { VmMetadata } from '../../src/xml/index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/xml');

/** Strings built to hurt: markup, entity look-alikes, whitespace XML normalises, characters XML forbids. */
export const hostileString = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.string({
    unit: fc.constantFrom('&', '<', '>', '"', "'", '\r', '\n', '\t', ' ', '\u0000', '\u0007', '\uD800', '\uDC00', '\uFFFE',
      ']]>', '&amp;', '&lt;', '&#65;', '&#x41;', '&foo;', '<!--', 'a', 'ü', '𝄞', 'bosh:vm', 'xmlns'),
  }),
);

const metadataArb: fc.Arbitrary<VmMetadata> = fc.record(
  {
    agentId: hostileString,
    stemcellCid: hostileString,
    volumes: fc.array(hostileString, { maxLength: 4 }),
    disks: fc.array(fc.record({ cid: hostileString, serial: hostileString, target: hostileString, as: hostileString }, { requiredKeys: ['cid', 'serial', 'target'] }), { maxLength: 3 }),
    macs: fc.array(hostileString, { maxLength: 3 }),
    prefixes: fc.array(fc.record({ prefix: hostileString, via: hostileString, network: hostileString }), { maxLength: 2 }),
    reservations: fc.array(
      fc.record(
        { network: hostileString, family: fc.constantFrom('ipv4' as const, 'ipv6' as const), mac: hostileString, name: hostileString, ip: hostileString },
        { requiredKeys: ['network', 'family', 'ip'] },
      ),
      { maxLength: 3 },
    ),
    addresses: fc.array(fc.record({ network: hostileString, ip: hostileString }), { maxLength: 2 }),
    tags: fc.dictionary(hostileString, hostileString, { maxKeys: 6 }),
    stemcellApiVersion: fc.integer({ min: 0, max: 1000 }),
  },
  { requiredKeys: ['agentId', 'stemcellCid', 'volumes', 'disks', 'macs', 'prefixes', 'reservations', 'tags'] },
);

describe('renderVmMetadata / parseVmMetadata', () => {
  it('round-trips any metadata exactly, as the SET_METADATA fragment and inside a domain', () => {
    fc.assert(
      fc.property(metadataArb, (m) => {
        expect(parseVmMetadata(renderVmMetadata(m))).toEqual(m);
        expect(parseVmMetadata(renderDomain({ ...specs.qemuDomain, metadata: m }))).toEqual(m);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 300) },
    );
  });

  it('stores tag keys as attributes, never as element names', () => {
    const xml = renderVmMetadata({ ...specs.metadata, tags: { 'not an element': 'v', '1nvalid-name': 'w' } });
    expect(xml).toContain('<tag key="not an element">v</tag>');
    expect(xml).toContain('<tag key="1nvalid-name">w</tag>');
  });

  it('renders the fragment without a namespace, as DOMAIN_SET_METADATA requires', () => {
    const xml = renderVmMetadata(specs.metadata);
    expect(xml.startsWith('<vm>')).toBe(true);
    expect(xml).not.toContain('xmlns');
  });

  it('falls back to base64 only for what plain XML cannot carry', () => {
    const xml = renderVmMetadata({ ...specs.metadata, tags: { plain: 'a & b <c>', crlf: 'x\r\ny', 'tab\tkey': 'v' } });
    expect(xml).toContain('<tag key="plain">a &amp; b &lt;c&gt;</tag>');
    expect(xml).toMatch(/<tag key="crlf" encoding="base64">[A-Za-z0-9+/=]+<\/tag>/);
    expect(xml).toMatch(/<tag key="[A-Za-z0-9+/=]+" key-encoding="base64">v<\/tag>/);
  });

  it('keeps a tag named __proto__ as data', () => {
    const tags = Object.fromEntries([['__proto__', 'x']]) as Record<string, string>;
    const parsed = parseVmMetadata(renderVmMetadata({ ...specs.metadata, tags }));
    expect(Object.getPrototypeOf(parsed.tags)).toBe(Object.prototype);
    expect(Object.entries(parsed.tags)).toEqual([['__proto__', 'x']]);
  });

  it('reads metadata out of a domain as libvirt dumps it', () => {
    const xml = readFileSync(join(FIXTURES, 'libvirt-domain-q35-efi.dumpxml.xml'), 'utf8');
    expect(parseVmMetadata(xml)).toEqual(specs.metadata);
  });

  it('reads the namespaced form and the naked form DOMAIN_GET_METADATA returns alike', () => {
    const namespaced = readFileSync(join(FIXTURES, 'metadata-vm.xml'), 'utf8').replace('<vm>', '<b:vm xmlns:b="urn:bosh-libvirt-cpi:vm:1">').replace(/<(\/?)(?!b:vm)([a-z-]+)/g, '<$1b:$2').replace('</vm>', '</b:vm>');
    expect(namespaced).toContain('<b:tags>');
    expect(parseVmMetadata(namespaced)).toEqual(specs.metadata);
  });

  it('rejects documents that are not metadata', () => {
    expect(() => parseVmMetadata('<network><name>x</name></network>')).toThrow(XmlParseError);
    expect(() => parseVmMetadata(renderDomain({ ...specs.qemuDomain, metadata: undefined }))).toThrow(/no <bosh:vm>/);
    expect(() => parseVmMetadata('<vm><stemcell-cid>x</stemcell-cid></vm>')).toThrow(/agent-id/);
  });
});
