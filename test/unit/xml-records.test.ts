// src/xml/records.ts: what orphans and the lock read of a volume's XML (size, file times) and whether a domain carries this CPI's record, through the XML parser rather than regexes.
import { expect, test } from 'vitest';
import { domainMemoryKiB, hasVmMetadata, parseVolumeFacts, vmMetadataOf } from '../../src/xml/records.js';
const vol = `<volume type='file'>
  <name>x.lock</name><key>/p/x.lock</key>
  <capacity unit='bytes'>123456</capacity>
  <allocation unit='bytes'>4096</allocation>
  <physical unit='bytes'>123456</physical>
  <target><path>/p/x.lock</path><format type='raw'/>
    <permissions><mode>0600</mode><owner>0</owner><group>0</group></permissions>
    <timestamps><atime>1700000000.1</atime><mtime>1700000001.5</mtime><ctime>1700000002.25</ctime></timestamps>
  </target>
</volume>`;
test('a volume: its allocation and file times, fractional seconds kept; none where the pool reports none', () => {
  expect(parseVolumeFacts(vol)).toEqual({ allocationBytes: 4096, mtime: 1700000001.5, ctime: 1700000002.25 });
  expect(parseVolumeFacts(`<volume><name>a</name><allocation>0</allocation></volume>`)).toEqual({ allocationBytes: 0 });
});
test('a domain: a record in the bosh namespace is present (and unreadable here), another namespace is none', () => {
  const dom = `<domain type='kvm'><name>a</name><metadata><bosh:vm xmlns:bosh="urn:bosh-libvirt-cpi:vm:1"><bosh:agent-id>x</bosh:agent-id></bosh:vm></metadata></domain>`;
  expect(hasVmMetadata(dom)).toBe(true);
  expect(() => vmMetadataOf(dom)).toThrow();
  expect(hasVmMetadata(`<domain type='kvm'><name>a</name></domain>`)).toBe(false);
  expect(vmMetadataOf(`<domain type='kvm'><name>a</name><metadata><other xmlns="urn:x"/></metadata></domain>`)).toBe(null);
});
test("a domain's memory in KiB, as libvirt reports it; none in another unit", () => {
  expect(domainMemoryKiB(`<domain type='kvm'><name>a</name><memory unit='KiB'>524288</memory><currentMemory unit='KiB'>1</currentMemory></domain>`)).toBe(524288);
  expect(domainMemoryKiB(`<domain type='kvm'><name>a</name><memory unit='MiB'>512</memory></domain>`)).toBeUndefined();
  expect(domainMemoryKiB(`<domain type='kvm'><name>a</name></domain>`)).toBeUndefined();
});
