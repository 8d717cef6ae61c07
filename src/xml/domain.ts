import type { Builder } from './builder.js';
import { document, serialize } from './builder.js';
import { DOMAIN_DEFAULTS, LXC_DOMAIN_DEFAULTS } from './defaults.js';
import { El, parseRoot } from './dom.js';
import { XmlRenderError } from './errors.js';
import { appendVmMetadata } from './metadata.js';
import { prefix } from './network.js';
import { attr, macAddress, objectName, text } from './text.js';
import { renderVboxDomain, type VboxVmDomain } from './vbox-domain.js';
import type { DiskDevice, DomainSpec, FilesystemMount, InterfaceDevice, LxcDomainSpec, ParsedDisk, ParsedDomain } from './types.js';

/** The full <domain> definition for DOMAIN_DEFINE_XML. */
export function renderDomain(spec: DomainSpec | LxcDomainSpec | VboxVmDomain): string {
  if (spec.type === 'lxc') return renderLxcDomain(spec);
  if (spec.type === 'vbox') return renderVboxDomain(spec);
  const doc = document();
  const domain = domainHead(doc, spec);

  const os = domain.ele('os', spec.firmware === 'efi' ? { firmware: 'efi' } : {});
  os.ele('type', { arch: spec.arch, machine: spec.machine }).txt('hvm');
  if (spec.firmware === 'efi') {
    os.ele('firmware').ele('feature', { enabled: DOMAIN_DEFAULTS.efiSecureBoot ? 'yes' : 'no', name: 'secure-boot' });
  }
  os.ele('boot', { dev: DOMAIN_DEFAULTS.bootDevice });

  const features = domain.ele('features');
  for (const f of DOMAIN_DEFAULTS.features) features.ele(f);

  domain.ele('cpu', {
    mode: spec.type === 'kvm' ? DOMAIN_DEFAULTS.cpuModeKvm : DOMAIN_DEFAULTS.cpuModeQemu,
    check: 'none',
  });

  const clock = domain.ele('clock', { offset: DOMAIN_DEFAULTS.clockOffset });
  for (const timer of DOMAIN_DEFAULTS.timers) clock.ele('timer', timer);

  domain.ele('on_poweroff').txt(DOMAIN_DEFAULTS.onPoweroff);
  domain.ele('on_reboot').txt(DOMAIN_DEFAULTS.onReboot);
  domain.ele('on_crash').txt(DOMAIN_DEFAULTS.onCrash);

  const devices = domain.ele('devices');
  if (spec.emulator !== undefined) devices.ele('emulator').txt(text('emulator', spec.emulator));
  for (const disk of spec.disks) appendDisk(devices, disk);
  for (const nic of spec.interfaces) appendInterface(devices, nic);
  appendConsole(devices, spec.serialLogFile);
  devices.ele('rng', { model: 'virtio' }).ele('backend', { model: 'random' }).txt(DOMAIN_DEFAULTS.rngBackend);
  devices.ele('memballoon', { model: DOMAIN_DEFAULTS.memballoonModel });
  if (spec.machine === 'q35') {
    // libvirt numbers controllers in order and index 0 must be the root complex; it
    // places the domain's own devices in the first ports.
    devices.ele('controller', { type: 'pci', index: '0', model: 'pcie-root' });
    const own = spec.disks.filter((d) => d.bus === 'virtio').length + spec.interfaces.length + DOMAIN_DEFAULTS.q35OtherPciDevices;
    for (let i = 0; i < own + DOMAIN_DEFAULTS.q35HotplugPorts; i++) devices.ele('controller', { type: 'pci', model: 'pcie-root-port' });
  }
  return serialize(doc);
}

/**
 * A system container: init runs as the first process in its own namespaces, the root
 * and every other directory come from the host through <filesystem type='mount'>, and
 * libvirt sets each NIC's addresses and routes itself (no DHCP, no agent work).
 */
/** What every domain starts with, whatever its type: names, metadata, memory and vCPUs. */
function domainHead(doc: Builder, spec: DomainSpec | LxcDomainSpec) {
  const domain = doc.ele('domain', { type: spec.type });
  domain.ele('name').txt(objectName('domain name', spec.name));
  if (spec.uuid !== undefined) domain.ele('uuid').txt(uuid(spec.uuid));
  const title = spec.title === undefined ? undefined : domainTitle(spec.title);
  if (title) domain.ele('title').txt(title);
  if (spec.description !== undefined) domain.ele('description').txt(text('description', spec.description));
  if (spec.metadata) appendVmMetadata(domain.ele('metadata'), spec.metadata);
  domain.ele('memory', { unit: DOMAIN_DEFAULTS.memoryUnit }).txt(positiveInt('memoryMiB', spec.memoryMiB));
  domain.ele('vcpu', { placement: 'static' }).txt(positiveInt('vcpus', spec.vcpus));
  return domain;
}

export function renderLxcDomain(spec: LxcDomainSpec): string {
  if (!spec.filesystems.some((f) => f.target === '/')) {
    throw new XmlRenderError('filesystems', JSON.stringify(spec.filesystems.map((f) => f.target)), "need one with target '/' (the container's root)");
  }
  const doc = document();
  const domain = domainHead(doc, spec);

  const os = domain.ele('os');
  os.ele('type', { arch: LXC_DOMAIN_DEFAULTS.arch }).txt(LXC_DOMAIN_DEFAULTS.osType);
  os.ele('init').txt(absolutePath('init', spec.init));
  for (const arg of spec.initArgs ?? []) os.ele('initarg').txt(text('initarg', arg));

  domain.ele('on_poweroff').txt(LXC_DOMAIN_DEFAULTS.onPoweroff);
  domain.ele('on_reboot').txt(LXC_DOMAIN_DEFAULTS.onReboot);
  domain.ele('on_crash').txt(LXC_DOMAIN_DEFAULTS.onCrash);

  const devices = domain.ele('devices');
  for (const fs of spec.filesystems) appendFilesystem(devices, fs);
  for (const nic of spec.interfaces) appendInterface(devices, nic);
  devices.ele('console', { type: LXC_DOMAIN_DEFAULTS.consoleType });
  return serialize(doc);
}

/** A standalone <disk> for DOMAIN_ATTACH_DEVICE_FLAGS / DOMAIN_DETACH_DEVICE_FLAGS. */
export function renderDiskDevice(disk: DiskDevice): string {
  const doc = document();
  appendDisk(doc, disk);
  return serialize(doc);
}

/** A standalone <interface> for attach/detach. */
export function renderInterfaceDevice(nic: InterfaceDevice): string {
  const doc = document();
  appendInterface(doc, nic);
  return serialize(doc);
}

/** Reads back what the CPI needs from DOMAIN_GET_XML_DESC output. */
export function parseDomain(xml: string): ParsedDomain {
  const domain = parseRoot(xml, 'domain');
  const devices = domain.child('devices');
  const parsed: ParsedDomain = {
    name: domain.required('name').text,
    uuid: domain.textOf('uuid') ?? '',
    disks: (devices?.children('disk') ?? []).map(parseDisk),
    interfaces: (devices?.children('interface') ?? []).map(parseInterface),
  };
  const mounts = (devices?.children('filesystem') ?? []).filter((f) => (f.attr('type') ?? 'mount') === 'mount');
  if (mounts.length > 0) parsed.filesystems = mounts.map(parseFilesystem);
  const title = domain.textOf('title');
  if (title !== undefined) parsed.title = title;
  const logFile = devices
    ?.children('serial')
    .map((s) => s.child('log')?.attr('file'))
    .find((f): f is string => f !== undefined);
  if (logFile !== undefined) parsed.serialLogFile = logFile;
  return parsed;
}

function appendDisk(parent: Builder, d: DiskDevice): void {
  const disk = parent.ele('disk', { type: 'file', device: d.device });
  const driver: Record<string, string> = { name: DOMAIN_DEFAULTS.diskDriver, type: d.format };
  // Read-only media (cdroms, the config drive as a virtio disk) are never written:
  // cache=none buys nothing there and needs O_DIRECT support.
  const writable = d.device === 'disk' && d.readonly !== true;
  const cache = d.cache ?? (writable ? DOMAIN_DEFAULTS.diskCache : undefined);
  if (cache !== undefined) driver.cache = cache;
  disk.ele('driver', driver);
  disk.ele('source', { file: attr('disk file', d.file) });
  disk.ele('target', { dev: attr('disk target', d.target), bus: d.bus });
  if (d.serial !== undefined) disk.ele('serial').txt(diskSerial(d));
  if (d.readonly ?? d.device === 'cdrom') disk.ele('readonly');
}

function appendInterface(parent: Builder, nic: InterfaceDevice): void {
  const iface = parent.ele('interface', { type: nic.kind });
  if (nic.kind === 'network') iface.ele('source', { network: attr('interface network', nic.network) });
  else iface.ele('source', { bridge: attr('interface bridge', nic.bridge) });
  iface.ele('mac', { address: macAddress(nic.mac) });
  for (const ip of nic.ips ?? []) {
    iface.ele('ip', { address: attr('interface ip address', ip.address), family: ip.family, prefix: prefix(ip.family, ip.prefix) });
  }
  for (const r of nic.routes ?? []) {
    iface.ele('route', {
      family: r.family,
      address: attr('interface route address', r.address),
      prefix: prefix(r.family, r.prefix),
      gateway: attr('interface route gateway', r.gateway),
    });
  }
  if (nic.model !== undefined) iface.ele('model', { type: attr('interface model', nic.model) });
}

function appendFilesystem(devices: Builder, fs: FilesystemMount): void {
  const el = devices.ele('filesystem', { type: 'mount', accessmode: 'passthrough' });
  el.ele('source', { dir: absolutePath('filesystem source', fs.source) });
  el.ele('target', { dir: absolutePath('filesystem target', fs.target) });
  if (fs.readonly) el.ele('readonly');
}

function parseFilesystem(fs: El): NonNullable<ParsedDomain['filesystems']>[number] {
  return { source: fs.child('source')?.attr('dir') ?? '', target: fs.child('target')?.attr('dir') ?? '' };
}

// libvirt resolves relative paths against its own working directory, which is nothing
// the caller controls.
function absolutePath(field: string, value: string): string {
  if (!value.startsWith('/')) throw new XmlRenderError(field, value, 'must be an absolute path');
  return attr(field, value);
}

// A pty keeps `virsh console` working; <log> makes virtlogd copy everything the guest
// writes to a host file, which survives the domain and needs no client attached.
function appendConsole(devices: Builder, logFile: string | undefined): void {
  const serial = devices.ele('serial', { type: 'pty' });
  if (logFile !== undefined) serial.ele('log', { file: attr('serialLogFile', logFile), append: DOMAIN_DEFAULTS.serialLogAppend });
  serial.ele('target', { port: '0' });
  devices.ele('console', { type: 'pty' }).ele('target', { type: 'serial', port: '0' });
}

function parseDisk(disk: El): ParsedDisk {
  const parsed: ParsedDisk = {
    device: disk.attr('device') ?? 'disk',
    target: disk.child('target')?.attr('dev') ?? '',
  };
  const source = disk.child('source');
  const file = source?.attr('file') ?? source?.attr('dev');
  if (file !== undefined) parsed.file = file;
  const bus = disk.child('target')?.attr('bus');
  if (bus !== undefined) parsed.bus = bus;
  const serial = disk.textOf('serial');
  if (serial !== undefined) parsed.serial = serial;
  const format = disk.child('driver')?.attr('type');
  if (format !== undefined) parsed.format = format;
  return parsed;
}

function parseInterface(iface: El): ParsedDomain['interfaces'][number] {
  const kind = iface.attr('type') ?? '';
  const source = iface.child('source');
  const parsed: ParsedDomain['interfaces'][number] = {
    kind,
    source: source?.attr(kind === 'bridge' ? 'bridge' : 'network') ?? source?.attr('network') ?? source?.attr('bridge') ?? '',
    mac: iface.child('mac')?.attr('address') ?? '',
  };
  const model = iface.child('model')?.attr('type');
  if (model !== undefined) parsed.model = model;
  return parsed;
}

// libvirt refuses titles with newlines; a title is a label for people, so line breaks
// become spaces rather than failing the whole VM creation over cosmetics.
function domainTitle(title: string): string | undefined {
  const oneLine = text('title', title.replace(/\r\n|\r|\n/g, ' '));
  return oneLine.length > 0 ? oneLine : undefined;
}

function uuid(value: string): string {
  if (!/^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/.test(value)) {
    throw new XmlRenderError('uuid', value, 'is not a UUID');
  }
  return value;
}


function positiveInt(field: string, value: number): string {
  if (!Number.isSafeInteger(value) || value <= 0) throw new XmlRenderError(field, String(value), 'must be a positive integer');
  return String(value);
}

// QEMU truncates virtio serials beyond 20 bytes, and the guest then finds the disk under
// a different /dev/disk/by-id name than the one the agent was told.
function diskSerial(d: DiskDevice): string {
  const serial = d.serial ?? '';
  if (d.bus === 'virtio' && Buffer.byteLength(serial, 'utf8') > 20) {
    throw new XmlRenderError('disk serial', serial, 'virtio serials hold at most 20 bytes');
  }
  return text('disk serial', serial);
}
