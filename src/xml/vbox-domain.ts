// Domain XML for libvirt's VirtualBox driver (`vbox:///session`, libvirt 9.0), written
// for what that driver reads and nothing else (src/vbox/vbox_common.c,
// vboxDomainDefineXMLFlags and the vboxAttach* functions it calls):
//   - name, uuid (kept as the machine's id: CreateMachine gets "UUID=<uuid>"), memory,
//     vcpu, <features> acpi/apic/pae, the <boot> order (at most 4 positions);
//   - no firmware choice: the driver never calls IMachine::SetFirmwareType, and <os
//     firmware>/<loader> are only logged (vboxSetBootDeviceOrder). A machine it makes
//     boots VirtualBox's BIOS. EFI is refused here rather than silently dropped;
//   - disks: type='file' only; for a SATA disk the VirtualBox port is the drive address's
//     `unit` (device/slot is its `bus`, 0 on SATA); for IDE port = `bus`, device = `unit`.
//     The controller index is ignored, so every disk carries an explicit
//     <address controller='0'>: without one libvirt numbers SATA disks 6 per controller
//     (virDomainDiskDefAssignAddress) and the 7th would land on port 0 of "another"
//     controller that the driver maps to the same one;
//   - IDE needs an explicit controller model: the driver refuses the default one
//     ("Unexpected IDE controller model", vboxSetStorageController);
//   - interfaces: network → host-only adapter named like the libvirt network (the
//     vboxnetN interface), bridge → bridged adapter on that host interface; models are
//     VirtualBox's (Am79C970A, Am79C973, 82540EM, 82545EM, 82543GC, virtio) — any other
//     name, e.g. "e1000", leaves the adapter type unset. NICs beyond the chipset's
//     adapter count (8 on the PIIX3 chipset every machine the driver makes has) are
//     dropped without an error, so more are refused here;
//   - graphics: only <graphics type='rdp'> makes the driver store FRONTEND/Type=vrdp,
//     which starts the VM headless.
// The driver stores nothing else (no <metadata>, no <description>, no disk serials) and
// rebuilds the XML from VirtualBox's state (vboxDomainGetXMLDesc): parseVboxDomain reads
// that back, ports from the addresses, never from target names (vboxDumpDisks numbers
// SATA targets sda, sdb, … in attachment order, whatever the port).
import type { Builder } from './builder.js';
import { document, serialize } from './builder.js';
import { El, parseRoot } from './dom.js';
import { XmlParseError, XmlRenderError } from './errors.js';
import { attr, macAddress, objectName } from './text.js';
import type { VmMetadata } from './types.js';

/** VirtualBox's network adapter types as libvirt's vbox driver names them (vboxAttachNetwork). */
export const VBOX_NIC_MODELS = ['Am79C970A', 'Am79C973', '82540EM', '82545EM', '82543GC', 'virtio'] as const;
export type VboxNicModel = (typeof VBOX_NIC_MODELS)[number];

export const VBOX_LIMITS = {
  /** ports of a VirtualBox SATA (AHCI) controller */
  sataPorts: 30,
  /** ISystemProperties::getMaxNetworkAdapters(PIIX3): the driver never changes the chipset */
  nics: 8,
  /** ISystemProperties::maxBootPosition */
  bootPositions: 4,
} as const;

/**
 * Where the profile puts each disk on the one SATA controller: fixed ports, so the
 * guest's view (and the agent's hints) survive a redefine.
 */
export const VBOX_SATA_PORTS = {
  root: 0,
  ephemeral: 1,
  /** the settings ISO when it rides on SATA */
  settings: 2,
  /** persistent disks take ports 3 … 29 */
  firstPersistent: 3,
} as const;

export const VBOX_DOMAIN_DEFAULTS = {
  memoryUnit: 'MiB',
  /** IOAPIC is needed for more than one vCPU; ACPI for a graceful shutdown; PAE/NX for 64-bit guests */
  features: ['acpi', 'apic', 'pae'] as const,
  /** the settings ISO is data, not a boot medium */
  boot: ['hd'] as const,
  nicModel: '82540EM' as VboxNicModel,
  /** IDE controller model when the settings ISO rides on IDE (VirtualBox's own default) */
  ideModel: 'piix4',
} as const;

export interface VboxHardDisk {
  /** absolute path of a VDI/VMDK/VHD file on the VirtualBox host */
  file: string;
  /** SATA port, 0 … 29 */
  port: number;
}

export interface VboxSettingsMedium {
  /** absolute path of the settings ISO */
  file: string;
  /** SATA: on the disks' controller at `port` (default VBOX_SATA_PORTS.settings); IDE: secondary master */
  bus: 'sata' | 'ide';
  port?: number;
}

export type VboxInterface =
  | { kind: 'network'; network: string; mac: string; model?: VboxNicModel }
  | { kind: 'bridge'; bridge: string; mac: string; model?: VboxNicModel };

export interface VboxDomainSpec {
  name: string;
  /** required: the machine keeps it, and a redefine must give the same one */
  uuid: string;
  memoryMiB: number;
  vcpus: number;
  /** what the stemcell needs; 'efi' is refused (libvirt 9.0's vbox driver cannot select it) */
  firmware: 'bios' | 'efi';
  disks: VboxHardDisk[];
  settings?: VboxSettingsMedium;
  interfaces: VboxInterface[];
}

/**
 * The domain a vbox profile's create_vm defines: the spec with the discriminant the
 * shared create_vm renders by (renderDomain) and the VM's record, which the vbox driver
 * cannot store (no <metadata>): the profile keeps it in a file, and renderVboxDomain
 * leaves it out.
 */
export interface VboxVmDomain extends VboxDomainSpec {
  type: 'vbox';
  metadata?: VmMetadata;
}

export interface ParsedVboxDisk {
  device: 'disk' | 'cdrom' | 'floppy';
  bus: 'sata' | 'ide' | 'scsi' | 'fdc';
  /** the medium's location; absent for an empty drive */
  file?: string;
  /** what libvirt numbered it; for SATA only the attachment order, not the port */
  target: string;
  /** VirtualBox's port: the address unit (SATA/SCSI) or bus (IDE) */
  port: number;
  /** VirtualBox's device (slot) on that port: 0, or the address unit on IDE */
  slot: number;
  readonly: boolean;
}

export interface ParsedVboxInterface {
  kind: string;
  /** host-only network / bridged interface / internal network name; '' for NAT */
  source: string;
  mac: string;
  model?: string;
}

export interface ParsedVboxDomain {
  name: string;
  uuid: string;
  memoryKiB?: number;
  vcpus?: number;
  boot: string[];
  disks: ParsedVboxDisk[];
  interfaces: ParsedVboxInterface[];
  controllers: Array<{ type: string; model?: string }>;
  graphics: string[];
}

/** libvirt's disk name for an index (virIndexToDiskName): 0 → sda, 25 → sdz, 26 → sdaa. */
export function vboxDiskTarget(index: number, prefix = 'sd'): string {
  let name = '';
  for (let i = index; i >= 0; i = Math.floor(i / 26) - 1) name = String.fromCharCode(97 + (i % 26)) + name;
  return prefix + name;
}

/** The full <domain type='vbox'> for DOMAIN_DEFINE_XML over a vbox:// connection. */
export function renderVboxDomain(spec: VboxDomainSpec): string {
  if (spec.firmware === 'efi') {
    throw new XmlRenderError(
      'firmware',
      'efi',
      "libvirt's VirtualBox driver (9.0) cannot select EFI: it never sets the machine's firmware type, so the VM would boot BIOS; an EFI-only stemcell (vsphere-ovf) cannot boot through it",
    );
  }
  if (spec.firmware !== 'bios') throw new XmlRenderError('firmware', String(spec.firmware), "expected 'bios'");
  checkPorts(spec);
  if (spec.interfaces.length > VBOX_LIMITS.nics) {
    throw new XmlRenderError('interfaces', String(spec.interfaces.length), `VirtualBox's PIIX3 chipset has ${VBOX_LIMITS.nics} network adapters; libvirt would silently drop the rest`);
  }

  const doc = document();
  const domain = doc.ele('domain', { type: 'vbox' });
  domain.ele('name').txt(objectName('domain name', spec.name));
  domain.ele('uuid').txt(uuid(spec.uuid));
  domain.ele('memory', { unit: VBOX_DOMAIN_DEFAULTS.memoryUnit }).txt(positiveInt('memoryMiB', spec.memoryMiB));
  domain.ele('vcpu').txt(positiveInt('vcpus', spec.vcpus));
  const os = domain.ele('os');
  os.ele('type').txt('hvm');
  for (const dev of VBOX_DOMAIN_DEFAULTS.boot) os.ele('boot', { dev });
  const features = domain.ele('features');
  for (const f of VBOX_DOMAIN_DEFAULTS.features) features.ele(f);

  const devices = domain.ele('devices');
  devices.ele('controller', { type: 'sata', index: '0' });
  if (spec.settings?.bus === 'ide') devices.ele('controller', { type: 'ide', index: '0', model: VBOX_DOMAIN_DEFAULTS.ideModel });
  for (const d of spec.disks) appendDisk(devices, 'disk', d.file, 'sata', d.port);
  if (spec.settings) {
    if (spec.settings.bus === 'ide') appendDisk(devices, 'cdrom', spec.settings.file, 'ide', 2);
    else appendDisk(devices, 'cdrom', spec.settings.file, 'sata', spec.settings.port ?? VBOX_SATA_PORTS.settings);
  }
  for (const nic of spec.interfaces) appendInterface(devices, nic);
  // The only display: the driver then sets FRONTEND/Type=vrdp and the VM starts headless.
  devices.ele('graphics', { type: 'rdp', autoport: 'yes' });
  return serialize(doc);
}

/** Reads what vboxDomainGetXMLDesc returns: disks with their ports, NICs with their MACs. */
export function parseVboxDomain(xml: string): ParsedVboxDomain {
  const domain = parseRoot(xml, 'domain');
  const type = domain.attr('type');
  if (type !== 'vbox') throw new XmlParseError(`expected <domain type='vbox'>, got type=${JSON.stringify(type ?? null)}`);
  const devices = domain.child('devices');
  const parsed: ParsedVboxDomain = {
    name: domain.required('name').text,
    uuid: domain.textOf('uuid') ?? '',
    boot: (domain.child('os')?.children('boot') ?? []).map((b) => b.attr('dev') ?? ''),
    disks: (devices?.children('disk') ?? []).map(parseDisk),
    interfaces: (devices?.children('interface') ?? []).map(parseInterface),
    controllers: (devices?.children('controller') ?? []).map((c) => {
      const model = c.attr('model');
      return { type: c.attr('type') ?? '', ...(model !== undefined ? { model } : {}) };
    }),
    graphics: (devices?.children('graphics') ?? []).map((g) => g.attr('type') ?? ''),
  };
  const memory = domain.child('memory');
  if (memory) parsed.memoryKiB = toKiB(memory.text, memory.attr('unit') ?? 'KiB');
  const vcpu = domain.textOf('vcpu');
  if (vcpu !== undefined && /^\d+$/.test(vcpu.trim())) parsed.vcpus = Number(vcpu.trim());
  return parsed;
}

function appendDisk(devices: Builder, device: 'disk' | 'cdrom', file: string, bus: 'sata' | 'ide', port: number): void {
  const disk = devices.ele('disk', { type: 'file', device });
  disk.ele('source', { file: absolutePath(device === 'disk' ? 'disk file' : 'settings file', file) });
  if (bus === 'sata') {
    disk.ele('target', { dev: vboxDiskTarget(port), bus: 'sata' });
    if (device === 'cdrom') disk.ele('readonly');
    disk.ele('address', { type: 'drive', controller: '0', bus: '0', target: '0', unit: String(port) });
  } else {
    // IDE index 2 = secondary master (hdc): VirtualBox port 1, device 0.
    disk.ele('target', { dev: vboxDiskTarget(port, 'hd'), bus: 'ide' });
    disk.ele('readonly');
    disk.ele('address', { type: 'drive', controller: '0', bus: String(Math.floor(port / 2)), target: '0', unit: String(port % 2) });
  }
}

function appendInterface(devices: Builder, nic: VboxInterface): void {
  const model = nic.model ?? VBOX_DOMAIN_DEFAULTS.nicModel;
  if (!(VBOX_NIC_MODELS as readonly string[]).includes(model)) {
    throw new XmlRenderError('interface model', String(model), `VirtualBox adapter types are ${VBOX_NIC_MODELS.join(', ')}`);
  }
  const iface = devices.ele('interface', { type: nic.kind });
  if (nic.kind === 'network') iface.ele('source', { network: attr('interface network', nonEmpty('interface network', nic.network)) });
  else if (nic.kind === 'bridge') iface.ele('source', { bridge: attr('interface bridge', nonEmpty('interface bridge', nic.bridge)) });
  else throw new XmlRenderError('interface kind', String((nic as { kind: unknown }).kind), "expected 'network' (host-only) or 'bridge'");
  iface.ele('mac', { address: unicastMac(nic.mac) });
  iface.ele('model', { type: model });
}

function checkPorts(spec: VboxDomainSpec): void {
  const used = new Map<number, string>();
  const take = (port: number, what: string) => {
    if (!Number.isInteger(port) || port < 0 || port >= VBOX_LIMITS.sataPorts) {
      throw new XmlRenderError(`${what} port`, String(port), `a SATA port from 0 to ${VBOX_LIMITS.sataPorts - 1}`);
    }
    const other = used.get(port);
    if (other !== undefined) throw new XmlRenderError(`${what} port`, String(port), `is taken by ${other}`);
    used.set(port, what);
  };
  if (spec.settings && spec.settings.bus !== 'ide' && spec.settings.bus !== 'sata') {
    throw new XmlRenderError('settings bus', String(spec.settings.bus), "expected 'sata' or 'ide'");
  }
  for (const d of spec.disks) take(d.port, `disk ${d.file}`);
  if (spec.settings?.bus === 'sata') take(spec.settings.port ?? VBOX_SATA_PORTS.settings, 'the settings ISO');
}

function parseDisk(disk: El): ParsedVboxDisk {
  const bus = (disk.child('target')?.attr('bus') ?? '') as ParsedVboxDisk['bus'];
  const address = disk.child('address');
  const num = (name: string): number => {
    const v = address?.attr(name);
    if (v === undefined) return 0;
    // libvirt writes decimal; its parser also takes hex.
    const n = v.startsWith('0x') ? parseInt(v.slice(2), 16) : Number(v);
    if (!Number.isInteger(n) || n < 0) throw new XmlParseError(`<disk> address ${name}=${JSON.stringify(v)} is not a number`);
    return n;
  };
  const onIde = bus === 'ide';
  const file = disk.child('source')?.attr('file');
  return {
    device: (disk.attr('device') ?? 'disk') as ParsedVboxDisk['device'],
    bus,
    ...(file !== undefined ? { file } : {}),
    target: disk.child('target')?.attr('dev') ?? '',
    port: onIde ? num('bus') : num('unit'),
    slot: onIde ? num('unit') : 0,
    readonly: disk.child('readonly') !== undefined,
  };
}

function parseInterface(iface: El): ParsedVboxInterface {
  const kind = iface.attr('type') ?? '';
  const source = iface.child('source');
  const name = kind === 'bridge' ? source?.attr('bridge') : kind === 'internal' ? source?.attr('name') : source?.attr('network');
  const parsed: ParsedVboxInterface = { kind, source: name ?? '', mac: (iface.child('mac')?.attr('address') ?? '').toLowerCase() };
  const model = iface.child('model')?.attr('type');
  if (model !== undefined) parsed.model = model;
  return parsed;
}

function toKiB(value: string, unit: string): number | undefined {
  const n = Number(value.trim());
  if (!Number.isFinite(n)) return undefined;
  const scale: Record<string, number> = { b: 1 / 1024, bytes: 1 / 1024, k: 1, kib: 1, m: 1024, mib: 1024, g: 1024 * 1024, gib: 1024 * 1024 };
  const s = scale[unit.toLowerCase()];
  return s === undefined ? undefined : Math.round(n * s);
}

/** VirtualBox takes only unicast MACs (it checks the second hex digit is even). */
function unicastMac(value: string): string {
  const mac = macAddress(value);
  if (parseInt(mac.slice(0, 2), 16) & 1) throw new XmlRenderError('mac', value, 'is a multicast address; VirtualBox adapters need a unicast one');
  return mac;
}

function absolutePath(field: string, value: string): string {
  if (typeof value !== 'string' || !value.startsWith('/')) throw new XmlRenderError(field, String(value), 'must be an absolute path');
  return attr(field, value);
}

function nonEmpty(field: string, value: string): string {
  if (typeof value !== 'string' || value === '') throw new XmlRenderError(field, String(value), 'must not be empty');
  return value;
}

function uuid(value: string): string {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(value)) {
    throw new XmlRenderError('uuid', String(value), 'is not a UUID (8-4-4-4-12 hex digits)');
  }
  return value.toLowerCase();
}

function positiveInt(field: string, value: number): string {
  if (!Number.isSafeInteger(value) || value <= 0) throw new XmlRenderError(field, String(value), 'must be a positive integer');
  return String(value);
}
