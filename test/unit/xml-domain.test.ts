// Domain XML: the parser reads libvirt's own dumpxml; renderers never emit a document
// that differs from the spec or breaks well-formedness, whatever the strings.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as specs from '../../fixtures/xml/specs.js';
import { parseDomain, renderDiskDevice, renderDomain, renderInterfaceDevice, XmlParseError, XmlRenderError } from '../../src/xml/index.js';
import { parseRoot, parseXml } from '../../src/xml/dom.js';
import type { DomainSpec } from '../../src/xml/index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/xml');
const RUNS = Number(process.env.FC_RUNS ?? 300);

const expectedDisks = (spec: DomainSpec) =>
  spec.disks.map((d) => ({ device: d.device, file: d.file, target: d.target, bus: d.bus, format: d.format, ...(d.serial ? { serial: d.serial } : {}) }));
const expectedNics = (spec: DomainSpec) =>
  spec.interfaces.map((n) => ({ kind: n.kind, source: n.kind === 'network' ? n.network : n.bridge, mac: n.mac, model: n.model }));

/** Anything a string can hold, markup and characters XML cannot carry included. */
const anyString = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.string({ unit: fc.constantFrom('&', '<', '>', '"', "'", '\r', '\n', '\t', '/', ' ', '\u0001', '\uD800', ']]>', '&amp;', '&#65;', '&x;', 'a', 'é', '𝄞') }),
);

describe('renderDomain', () => {
  for (const spec of [specs.qemuDomain, specs.q35EfiDomain, specs.kvmDomain]) {
    it(`${spec.name}: parses back to its spec`, () => {
      const parsed = parseDomain(renderDomain(spec));
      expect(parsed).toEqual({
        name: spec.name,
        uuid: spec.uuid,
        title: spec.title,
        disks: expectedDisks(spec),
        interfaces: expectedNics(spec),
        serialLogFile: spec.serialLogFile,
      });
    });
  }

  it('chooses a CPU that works for the hypervisor: maximum under TCG, host-passthrough under KVM', () => {
    expect(renderDomain(specs.qemuDomain)).toContain('<cpu mode="maximum" check="none"/>');
    expect(renderDomain(specs.kvmDomain)).toContain('<cpu mode="host-passthrough" check="none"/>');
  });

  it('asks for UEFI through firmware autoselection, without secure boot, and BIOS otherwise', () => {
    expect(renderDomain(specs.q35EfiDomain)).toMatch(/<os firmware="efi">[\s\S]*<feature enabled="no" name="secure-boot"\/>/);
    expect(renderDomain(specs.qemuDomain)).toMatch(/<os>\s*<type arch="x86_64" machine="pc">hvm<\/type>/);
  });

  it('logs the serial console to a file and still offers a pty console', () => {
    const xml = renderDomain(specs.qemuDomain);
    expect(xml).toContain(`<log file="${specs.qemuDomain.serialLogFile}" append="on"/>`);
    expect(xml).toContain('<console type="pty">');
    expect(renderDomain({ ...specs.qemuDomain, serialLogFile: undefined })).not.toContain('<log');
  });

  it('has no graphics, a virtio RNG and a virtio balloon', () => {
    const xml = renderDomain(specs.qemuDomain);
    expect(xml).not.toMatch(/<graphics|<video/);
    expect(xml).toContain('<backend model="random">/dev/urandom</backend>');
    expect(xml).toContain('<memballoon model="virtio"/>');
  });

  it('uses cache=none for disks unless told otherwise, and no cache mode for cdroms', () => {
    const xml = renderDomain(specs.kvmDomain);
    expect(xml).toContain('<driver name="qemu" type="qcow2" cache="none"/>');
    expect(xml).toContain('<driver name="qemu" type="raw" cache="writeback"/>');
    expect(renderDiskDevice(specs.qemuDomain.disks[2]!)).toContain('<driver name="qemu" type="raw"/>');
  });

  it('renders a read-only disk (the config drive on q35) without a cache mode and with <readonly/>', () => {
    const xml = renderDiskDevice(specs.q35EfiDomain.disks[2]!);
    expect(xml).toContain('<disk type="file" device="disk">');
    expect(xml).toContain('<driver name="qemu" type="raw"/>');
    expect(xml).toContain('<readonly/>');
  });

  it('renders the same <disk> and <interface> inside the domain as for attach/detach', () => {
    const xml = renderDomain(specs.qemuDomain);
    const indent = (s: string) => s.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
    expect(xml).toContain(indent(renderDiskDevice(specs.qemuDomain.disks[0]!)));
    expect(xml).toContain(indent(renderInterfaceDevice(specs.qemuDomain.interfaces[1]!)));
  });

  it('refuses what libvirt or XML cannot hold instead of changing it', () => {
    const bad: Array<[Partial<DomainSpec>, RegExp]> = [
      [{ name: 'a/b' }, /domain name/],
      [{ name: '' }, /domain name/],
      [{ uuid: 'nope' }, /uuid/],
      [{ memoryMiB: 0 }, /memoryMiB/],
      [{ vcpus: 1.5 }, /vcpus/],
      [{ serialLogFile: '/var/log/x\ny' }, /serialLogFile/],
      [{ interfaces: [{ kind: 'network', network: 'n', mac: '52:54:00:zz:00:01', model: 'virtio' }] }, /mac/],
      [{ disks: [{ device: 'disk', file: '/f', format: 'raw', bus: 'virtio', target: 'vda', serial: 'x'.repeat(21) }] }, /20 bytes/],
      [{ description: 'bell\u0007' }, /description/],
    ];
    for (const [patch, message] of bad) {
      expect(() => renderDomain({ ...specs.qemuDomain, ...patch })).toThrow(XmlRenderError);
      expect(() => renderDomain({ ...specs.qemuDomain, ...patch })).toThrow(message);
    }
  });

  it('folds line breaks in titles into spaces (libvirt refuses multi-line titles) and drops empty ones', () => {
    expect(parseDomain(renderDomain({ ...specs.qemuDomain, title: 'a\nb\r\nc' })).title).toBe('a b c');
    expect(parseDomain(renderDomain({ ...specs.qemuDomain, title: '' })).title).toBeUndefined();
  });

  it('property: arbitrary names, titles, descriptions, paths and serials either round-trip or are refused', () => {
    fc.assert(
      fc.property(anyString, anyString, anyString, anyString, anyString, (name, title, description, file, serial) => {
        const spec: DomainSpec = {
          ...specs.qemuDomain,
          name,
          title,
          description,
          disks: [{ device: 'disk', file, format: 'qcow2', bus: 'scsi', target: 'sda', serial }],
          serialLogFile: file,
        };
        let xml: string;
        try {
          xml = renderDomain(spec);
        } catch (e) {
          expect(e).toBeInstanceOf(XmlRenderError);
          return;
        }
        const parsed = parseDomain(xml);
        expect(parsed.name).toBe(name);
        const oneLine = title.replace(/\r\n|\r|\n/g, ' ');
        expect(parsed.title).toBe(oneLine === '' ? undefined : oneLine);
        expect(parsed.disks[0]).toMatchObject({ file, serial });
        expect(parsed.serialLogFile).toBe(file);
        expect(parseXml(xml).children.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('parseDomain', () => {
  it('reads libvirt dumpxml output with its added controllers, addresses and reordered elements', () => {
    const parsed = parseDomain(readFileSync(join(FIXTURES, 'libvirt-domain-q35-efi.dumpxml.xml'), 'utf8'));
    expect(parsed).toEqual({
      name: specs.q35EfiDomain.name,
      uuid: specs.q35EfiDomain.uuid,
      title: specs.q35EfiDomain.title,
      disks: expectedDisks(specs.q35EfiDomain),
      interfaces: expectedNics(specs.q35EfiDomain),
      serialLogFile: specs.q35EfiDomain.serialLogFile,
    });
  });

  it('tolerates attribute order, single quotes, comments and unknown elements', () => {
    const xml = `<?xml version='1.0'?>
<!-- a comment -->
<domain id='3' type='kvm'>
  <uuid>u</uuid><name>n</name><extra><x/></extra>
  <devices>
    <disk device='disk' type='block'><serial>s</serial><target bus='scsi' dev='sdb'/><source dev='/dev/sdb'/><alias name='scsi0-0-0-1'/></disk>
    <interface type='bridge'><model type='e1000'/><source bridge='br0'/><mac address='52:54:00:00:00:01'/><target dev='vnet0'/></interface>
    <serial type='pty'><source path='/dev/pts/3'/><log append='on' file='/l'/></serial>
  </devices>
</domain>`;
    expect(parseDomain(xml)).toEqual({
      name: 'n',
      uuid: 'u',
      disks: [{ device: 'disk', file: '/dev/sdb', target: 'sdb', bus: 'scsi', serial: 's' }],
      interfaces: [{ kind: 'bridge', source: 'br0', mac: '52:54:00:00:00:01', model: 'e1000' }],
      serialLogFile: '/l',
    });
  });

  it('refuses malformed documents and other roots', () => {
    expect(() => parseDomain('<domain><name>x</domain>')).toThrow(XmlParseError);
    expect(() => parseDomain('<domain><name>a&b</name></domain>')).toThrow(XmlParseError);
    expect(() => parseDomain('<!DOCTYPE d [<!ENTITY e "x">]><domain><name>&e;</name></domain>')).toThrow(XmlParseError);
    expect(() => parseDomain('<network><name>x</name></network>')).toThrow(/expected a <domain>/);
    expect(() => parseDomain('<domain><uuid>u</uuid></domain>')).toThrow(/name/);
  });
});

describe('renderDomain for containers (type lxc)', () => {
  it('renders init, the mounts and the NIC addressing, and parses the mounts back', () => {
    const xml = renderDomain(specs.lxcDomain);
    const parsed = parseDomain(xml);
    expect(parsed.name).toBe(specs.lxcDomain.name);
    expect(parsed.filesystems).toEqual(specs.lxcDomain.filesystems.map((f) => ({ source: f.source, target: f.target })));
    expect(parsed.interfaces).toEqual([{ kind: 'network', source: 't-xml-net', mac: '52:54:00:0c:00:01' }]);
    expect(parsed.disks).toEqual([]);
    const os = parseRoot(xml, 'domain').child('os')!;
    expect(os.child('type')?.text).toBe('exe');
    expect(os.textOf('init')).toBe('/sbin/init');
    // a container has no emulated hardware: no model, no serial port, no firmware
    expect(xml).not.toMatch(/<model|<serial|<features|<boot/);
    const nic = parseRoot(xml, 'domain').child('devices')!.child('interface')!;
    expect(nic.children('ip').map((ip) => [ip.attr('family'), ip.attr('address'), ip.attr('prefix')])).toEqual([
      ['ipv4', '198.18.40.20', '24'],
      ['ipv6', 'fd00:40::20', '64'],
    ]);
    expect(nic.children('route').map((r) => [r.attr('family'), r.attr('address'), r.attr('prefix'), r.attr('gateway')])).toEqual([
      ['ipv4', '0.0.0.0', '0', '198.18.40.1'],
      ['ipv6', '::', '0', 'fd00:40::1'],
    ]);
  });

  it('passes init arguments in order', () => {
    const os = parseRoot(renderDomain({ ...specs.lxcDomain, initArgs: ['--one', 'two words'] }), 'domain').child('os')!;
    expect(os.children('initarg').map((a) => a.text)).toEqual(['--one', 'two words']);
  });

  it('refuses a container without a root mount, relative paths and bad prefixes, naming the field', () => {
    expect(() => renderDomain({ ...specs.lxcDomain, filesystems: specs.lxcDomain.filesystems.slice(1) })).toThrow(/filesystems.*target '\/'/);
    expect(() => renderDomain({ ...specs.lxcDomain, init: 'sbin/init' })).toThrow(XmlRenderError);
    expect(() => renderDomain({ ...specs.lxcDomain, filesystems: [{ source: 'rel/dir', target: '/' }] })).toThrow(/filesystem source.*absolute/);
    const nic = specs.lxcDomain.interfaces[0]!;
    expect(() => renderDomain({ ...specs.lxcDomain, interfaces: [{ ...nic, ips: [{ family: 'ipv4', address: '198.18.40.20', prefix: 33 }] }] })).toThrow(
      /prefix.*33.*0\.\.32/,
    );
  });

  it('a QEMU NIC keeps its model and gains no addressing', () => {
    const xml = renderInterfaceDevice(specs.qemuDomain.interfaces[0]!);
    expect(xml).toMatch(/<model type="virtio"\/>/);
    expect(xml).not.toMatch(/<ip|<route/);
  });
});
