// Domain XML for libvirt's VirtualBox driver: the attributes that driver acts on
// (vbox_common.c, libvirt 9.0), and the parser of what its dumpxml gives back.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch.js';
import { parseRoot } from '../../src/xml/dom.js';
import { parseVboxDomain, renderVboxDomain, vboxDiskTarget, VBOX_SATA_PORTS, XmlRenderError } from '../../src/xml/index.js';
import type { VboxDomainSpec } from '../../src/xml/index.js';

const DIR = '/var/lib/bosh-vbox/vms';
const spec: VboxDomainSpec = {
  name: 'vm-5b1f0c2e-1111-2222-3333-444455556666',
  uuid: '5B1F0C2E-1111-2222-3333-444455556666',
  memoryMiB: 2048,
  vcpus: 2,
  firmware: 'bios',
  disks: [
    { file: `${DIR}/vm-5b1f.root.vdi`, port: VBOX_SATA_PORTS.root },
    { file: `${DIR}/vm-5b1f.ephemeral.vdi`, port: VBOX_SATA_PORTS.ephemeral },
    { file: `${DIR}/d-abcdefgh12.vdi`, port: 5 },
  ],
  settings: { file: `${DIR}/vm-5b1f.settings.iso`, bus: 'sata' },
  interfaces: [
    { kind: 'network', network: 'vboxnet0', mac: '08:00:27:AA:BB:01' },
    { kind: 'bridge', bridge: 'eth0', mac: '08:00:27:aa:bb:02', model: 'virtio' },
  ],
};

/** libvirt's own domain schema (virt-xml-validate works offline, no daemon). */
function schemaErrors(xml: string): string | null {
  const file = join(scratchDir('xml-vbox-'), 'domain.xml');
  writeFileSync(file, xml);
  try {
    execFileSync('virt-xml-validate', [file, 'domain'], { stdio: 'pipe' });
    return null;
  } catch (e) {
    const err = e as { stderr?: Buffer; stdout?: Buffer };
    return `${err.stderr?.toString() ?? ''}${err.stdout?.toString() ?? ''}`;
  }
}

function devicesOf(xml: string) {
  return parseRoot(xml, 'domain').required('devices');
}

function renderError(s: VboxDomainSpec): XmlRenderError {
  try {
    renderVboxDomain(s);
  } catch (e) {
    expect(e).toBeInstanceOf(XmlRenderError);
    return e as XmlRenderError;
  }
  throw new Error('rendered without an error');
}

describe('renderVboxDomain', () => {
  const xml = renderVboxDomain(spec);
  const domain = parseRoot(xml, 'domain');
  const devices = devicesOf(xml);

  it("is a type='vbox' domain with the name, the uuid the machine keeps, memory and vCPUs", () => {
    expect(domain.attr('type')).toBe('vbox');
    expect(domain.textOf('name')).toBe(spec.name);
    expect(domain.textOf('uuid')).toBe(spec.uuid.toLowerCase());
    expect(domain.child('memory')?.attr('unit')).toBe('MiB');
    expect(domain.textOf('memory')).toBe('2048');
    expect(domain.textOf('vcpu')).toBe('2');
  });

  it('boots the hard disk only, with ACPI, IOAPIC and PAE, and names no firmware (the driver cannot set one)', () => {
    const os = domain.required('os');
    expect(os.textOf('type')).toBe('hvm');
    expect(os.children('boot').map((b) => b.attr('dev'))).toEqual(['hd']);
    expect(os.attr('firmware')).toBeUndefined();
    expect(os.child('loader')).toBeUndefined();
    expect(domain.required('features').children().map((f) => f.name)).toEqual(['acpi', 'apic', 'pae']);
  });

  it('stores nothing the driver drops: no metadata, description or title', () => {
    for (const el of ['metadata', 'description', 'title']) expect(domain.child(el)).toBeUndefined();
  });

  it('puts every disk on SATA controller 0 at its port (the address unit), with distinct target names', () => {
    expect(devices.children('controller').map((c) => [c.attr('type'), c.attr('index')])).toEqual([['sata', '0']]);
    const disks = devices.children('disk');
    expect(
      disks.map((d) => ({
        type: d.attr('type'),
        device: d.attr('device'),
        file: d.child('source')?.attr('file'),
        dev: d.child('target')?.attr('dev'),
        bus: d.child('target')?.attr('bus'),
        address: [d.child('address')?.attr('type'), d.child('address')?.attr('controller'), d.child('address')?.attr('bus'), d.child('address')?.attr('unit')],
        readonly: d.child('readonly') !== undefined,
      })),
    ).toEqual([
      { type: 'file', device: 'disk', file: spec.disks[0]!.file, dev: 'sda', bus: 'sata', address: ['drive', '0', '0', '0'], readonly: false },
      { type: 'file', device: 'disk', file: spec.disks[1]!.file, dev: 'sdb', bus: 'sata', address: ['drive', '0', '0', '1'], readonly: false },
      { type: 'file', device: 'disk', file: spec.disks[2]!.file, dev: 'sdf', bus: 'sata', address: ['drive', '0', '0', '5'], readonly: false },
      { type: 'file', device: 'cdrom', file: spec.settings!.file, dev: 'sdc', bus: 'sata', address: ['drive', '0', '0', '2'], readonly: true },
    ]);
    // No driver element: the vbox driver reads the format from the file itself.
    expect(disks.every((d) => d.child('driver') === undefined)).toBe(true);
  });

  it('puts the settings ISO on IDE as secondary master, with the explicit controller model the driver requires', () => {
    const ide = devicesOf(renderVboxDomain({ ...spec, settings: { file: spec.settings!.file, bus: 'ide' } }));
    expect(ide.children('controller').map((c) => [c.attr('type'), c.attr('model') ?? null])).toEqual([
      ['sata', null],
      ['ide', 'piix4'],
    ]);
    const cd = ide.children('disk').find((d) => d.attr('device') === 'cdrom')!;
    expect(cd.child('target')?.attr('bus')).toBe('ide');
    expect(cd.child('target')?.attr('dev')).toBe('hdc');
    expect([cd.child('address')?.attr('bus'), cd.child('address')?.attr('unit')]).toEqual(['1', '0']);
    expect(cd.child('readonly')).toBeDefined();
  });

  it('attaches host-only (network) and bridged NICs with lowercase MACs and VirtualBox adapter models', () => {
    expect(
      devices.children('interface').map((i) => ({
        type: i.attr('type'),
        source: i.child('source')?.attr(i.attr('type') === 'bridge' ? 'bridge' : 'network'),
        mac: i.child('mac')?.attr('address'),
        model: i.child('model')?.attr('type'),
      })),
    ).toEqual([
      { type: 'network', source: 'vboxnet0', mac: '08:00:27:aa:bb:01', model: '82540EM' },
      { type: 'bridge', source: 'eth0', mac: '08:00:27:aa:bb:02', model: 'virtio' },
    ]);
  });

  it('has only RDP graphics, so the driver starts the VM headless', () => {
    expect(devices.children('graphics').map((g) => [g.attr('type'), g.attr('autoport')])).toEqual([['rdp', 'yes']]);
  });

  it("passes libvirt's domain schema, with the settings ISO on SATA and on IDE", () => {
    expect(schemaErrors(xml)).toBeNull();
    expect(schemaErrors(renderVboxDomain({ ...spec, settings: { file: spec.settings!.file, bus: 'ide' } }))).toBeNull();
  });
});

describe('renderVboxDomain refuses what the driver would get wrong', () => {
  it('EFI firmware: libvirt 9.0 cannot select it, so the VM would boot BIOS', () => {
    const e = renderError({ ...spec, firmware: 'efi' });
    expect(e.field).toBe('firmware');
    expect(e.message).toContain('cannot select EFI');
  });

  it('a ninth NIC, which the driver would drop silently', () => {
    const nics = Array.from({ length: 9 }, (_, i) => ({ kind: 'network' as const, network: 'vboxnet0', mac: `08:00:27:00:00:0${i}` }));
    expect(renderError({ ...spec, interfaces: nics }).message).toContain('8 network adapters');
  });

  it('ports out of range or taken twice (a disk on the settings ISO port)', () => {
    expect(renderError({ ...spec, disks: [{ file: '/x.vdi', port: 30 }] }).message).toContain('a SATA port from 0 to 29');
    expect(renderError({ ...spec, disks: [{ file: '/x.vdi', port: 2 }] }).message).toBe('the settings ISO port "2": is taken by disk /x.vdi');
  });

  it('adapter models VirtualBox does not have, multicast MACs, relative paths and malformed UUIDs', () => {
    expect(renderError({ ...spec, interfaces: [{ kind: 'network', network: 'vboxnet0', mac: '08:00:27:00:00:01', model: 'e1000' as never }] }).message).toContain('82540EM');
    expect(renderError({ ...spec, interfaces: [{ kind: 'network', network: 'vboxnet0', mac: '09:00:27:00:00:01' }] }).message).toContain('multicast');
    expect(renderError({ ...spec, disks: [{ file: 'root.vdi', port: 0 }] }).message).toContain('absolute path');
    expect(renderError({ ...spec, uuid: 'not-a-uuid' }).field).toBe('uuid');
  });
});

// Shaped after vboxDomainGetXMLDesc (vbox_common.c): SATA targets numbered sda, sdb, …
// in attachment order (vboxGenerateMediumName with sdCount) while the address unit is the
// port; IDE ports as address bus, devices as unit; an empty drive has no <source>;
// NAT adapters come back as type='user'. Written from the code, not captured.
const DUMP = `<domain type='vbox'>
  <name>vm-5b1f0c2e-1111-2222-3333-444455556666</name>
  <uuid>5b1f0c2e-1111-2222-3333-444455556666</uuid>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <pae/>
  </features>
  <clock offset='localtime'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='${DIR}/vm-5b1f.root.vdi'/>
      <target dev='sda' bus='sata'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='${DIR}/vm-5b1f.ephemeral.vdi'/>
      <target dev='sdb' bus='sata'/>
      <address type='drive' controller='0' bus='0' target='0' unit='1'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='${DIR}/d-abcdefgh12.vdi'/>
      <target dev='sdc' bus='sata'/>
      <address type='drive' controller='0' bus='0' target='0' unit='5'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='${DIR}/vm-5b1f.settings.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
      <address type='drive' controller='0' bus='1' target='0' unit='0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdd' bus='ide'/>
      <readonly/>
      <address type='drive' controller='0' bus='1' target='0' unit='1'/>
    </disk>
    <controller type='ide' index='0' model='piix4'/>
    <controller type='sata' index='0'/>
    <interface type='network'>
      <mac address='08:00:27:aa:bb:01'/>
      <source network='vboxnet0'/>
      <model type='82540EM'/>
    </interface>
    <interface type='user'>
      <mac address='08:00:27:aa:bb:03'/>
      <model type='Am79C973'/>
    </interface>
    <graphics type='rdp' autoport='yes'>
      <listen type='address'/>
    </graphics>
    <video>
      <model type='vbox' vram='8192' heads='1' primary='yes'/>
    </video>
  </devices>
</domain>
`;

describe('parseVboxDomain', () => {
  it('reads disks with their VirtualBox port from the address, not the target name', () => {
    const parsed = parseVboxDomain(DUMP);
    expect(parsed.disks).toEqual([
      { device: 'disk', bus: 'sata', file: `${DIR}/vm-5b1f.root.vdi`, target: 'sda', port: 0, slot: 0, readonly: false },
      { device: 'disk', bus: 'sata', file: `${DIR}/vm-5b1f.ephemeral.vdi`, target: 'sdb', port: 1, slot: 0, readonly: false },
      { device: 'disk', bus: 'sata', file: `${DIR}/d-abcdefgh12.vdi`, target: 'sdc', port: 5, slot: 0, readonly: false },
      { device: 'cdrom', bus: 'ide', file: `${DIR}/vm-5b1f.settings.iso`, target: 'hdc', port: 1, slot: 0, readonly: true },
      { device: 'cdrom', bus: 'ide', target: 'hdd', port: 1, slot: 1, readonly: true },
    ]);
  });

  it('reads NICs with MACs, sources and models, and the rest the profile checks', () => {
    const parsed = parseVboxDomain(DUMP);
    expect(parsed.interfaces).toEqual([
      { kind: 'network', source: 'vboxnet0', mac: '08:00:27:aa:bb:01', model: '82540EM' },
      { kind: 'user', source: '', mac: '08:00:27:aa:bb:03', model: 'Am79C973' },
    ]);
    expect(parsed).toMatchObject({ name: spec.name, uuid: '5b1f0c2e-1111-2222-3333-444455556666', memoryKiB: 2097152, vcpus: 2, boot: ['hd'], graphics: ['rdp'] });
    expect(parsed.controllers).toEqual([{ type: 'ide', model: 'piix4' }, { type: 'sata' }]);
  });

  it('gets back the ports and MACs it rendered', () => {
    const parsed = parseVboxDomain(renderVboxDomain(spec));
    expect(parsed.disks.map((d) => [d.device, d.file, d.port])).toEqual([
      ['disk', spec.disks[0]!.file, 0],
      ['disk', spec.disks[1]!.file, 1],
      ['disk', spec.disks[2]!.file, 5],
      ['cdrom', spec.settings!.file, 2],
    ]);
    expect(parsed.interfaces.map((i) => i.mac)).toEqual(['08:00:27:aa:bb:01', '08:00:27:aa:bb:02']);
  });

  it("reads a document that passes libvirt's domain schema", () => {
    expect(schemaErrors(DUMP)).toBeNull();
  });

  it('refuses a domain of another driver', () => {
    expect(() => parseVboxDomain("<domain type='kvm'><name>x</name></domain>")).toThrow(/type='vbox'/);
  });
});

describe('vboxDiskTarget', () => {
  it("names indexes as libvirt's virIndexToDiskName does", () => {
    expect([0, 1, 25, 26, 29].map((i) => vboxDiskTarget(i))).toEqual(['sda', 'sdb', 'sdz', 'sdaa', 'sdad']);
    expect(vboxDiskTarget(2, 'hd')).toBe('hdc');
  });
});
