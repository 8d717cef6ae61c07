// libvirt's REAL vbox driver (Debian's libvirt-daemon-driver-vbox 9.0, inside a libvirtd
// of its own: scripts/vbox-host.sh) over the SIMULATED VirtualBox 6.1 of fixtures/vbox-sim
// — never a real VirtualBox, which cannot be installed here. Each step goes through
// libvirt (virsh or the project's own RPC client, as the CPI will) and is checked twice:
// in what libvirt reads back, and in what the simulated VirtualBox holds (its state file).
// The last block proves, with the driver's own errors, what libvirt's vbox driver cannot do.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainState, ErrorCode, MetadataType, NetworkUpdateCommand, NetworkUpdateSection, connect, isLibvirtError,
  type Connection, type DomainRef, type PoolRef, type VolRef,
} from '../../src/libvirt/index.js';
import { scratchDir } from '../helpers/scratch.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'vbox-host.sh');
const DIR = process.env.VBOX_LIBVIRTD_DIR ?? '/var/lib/bosh-cpi-vbox-libvirtd';
const STATE = join(DIR, 'vbox-sim', 'state.json');
const PREFIX = 't-vbox-sim-';
const MiB = 1024n * 1024n;

interface SimAttachment { port: number; device: number; type: string; medium: string | null }
interface SimMachine {
  name: string; uuid: string; state: string; memoryMB: number; cpus: number; firmware: string;
  frontend: string | null; requestedFrontend: string | null;
  storageControllers: Array<{ name: string; bus: string; controllerType: string; attachments: SimAttachment[] }>;
  networkAdapters: Array<{ slot: number; attachment: string; hostOnlyInterface: string | null; mac: string }>;
}
interface SimMedium { location: string; uuid: string; format: string; deviceType: string; logicalSize: number; machines: string[] }
interface SimState {
  simulation: boolean; version: string; machines: SimMachine[]; media: SimMedium[];
  hostOnlyInterfaces: Array<{ name: string; ipv4: string; mask: string }>;
  dhcpServers: unknown[];
}

const sim = (): SimState => JSON.parse(readFileSync(STATE, 'utf8')) as SimState;
const machine = (name: string): SimMachine | undefined => sim().machines.find((m) => m.name === name);
const medium = (location: string): SimMedium | undefined => sim().media.find((m) => m.location === location);

let uri = '';
const virsh = (...args: string[]): string => execFileSync('virsh', ['-c', uri, ...args], { encoding: 'utf8' });

async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isLibvirtError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('the call was expected to fail and did not');
}

let c: Connection;
let pool: PoolRef;
const dir = scratchDir(PREFIX);
const names = { dom: `${PREFIX}vm-${process.pid}`, root: `${PREFIX}root-${process.pid}.vmdk` };
const rootPath = join(dir, names.root);
const isoPath = join(dir, `${PREFIX}settings-${process.pid}.iso`);
const macs = ['08:00:27:5a:00:01', '08:00:27:5a:00:02'];

/** Removes what this file may have left in the simulated VirtualBox, whatever state it is in. */
async function cleanup(): Promise<void> {
  if (!c) return;
  const step = async (f: () => Promise<unknown>) => { await f().catch(() => {}); };
  for (const d of await c.domains.listAll().catch(() => [] as DomainRef[])) {
    if (!d.name.startsWith(PREFIX)) continue;
    await step(() => c.domains.destroy(d));
    await step(() => c.domains.undefine(d));
  }
  for (const m of sim().media.filter((x) => x.location.startsWith(dir) && x.deviceType === 'HardDisk')) {
    await step(async () => c.volumes.delete(await c.volumes.lookupByPath(m.location)));
  }
}

beforeAll(async () => {
  execFileSync(SCRIPT, ['start'], { stdio: ['ignore', 'ignore', 'pipe'] });
  uri = execFileSync(SCRIPT, ['uri'], { encoding: 'utf8' }).trim();
  c = await connect(uri);
  await cleanup();
  pool = await c.pools.lookupByName('default-pool');
  writeFileSync(isoPath, Buffer.alloc(64 * 1024)); // any small file: the driver opens it as a DVD image
});

afterAll(async () => {
  await cleanup();
  await c?.close();
});

describe('libvirt vbox driver over the simulated VirtualBox', () => {
  it('reaches the daemon with vbox:///session?socket=…, and the driver initialised over the simulation', async () => {
    expect(uri).toBe(`vbox:///session?socket=${DIR}/run/libvirt-sock`);
    expect(execFileSync(SCRIPT, ['status'], { encoding: 'utf8' })).toMatch(/vbox driver initialised/);
    // virsh names the VBOX hypervisor; its version number is not VirtualBox's: libvirt 9.0's
    // vbox_common.c and vbox_tmpl.c see struct _vboxDriver with different layouts (the
    // vboxClient member exists only where VBOX_API_VERSION is defined), so `version` reads
    // the IVirtualBoxClient pointer. The simulation's own record names 6.1.
    expect(virsh('version')).toMatch(/Running hypervisor: VBOX \d+/);
    expect(await c.capabilities()).toMatch(/<domain type='vbox'\/>/);
    expect(sim()).toMatchObject({ simulation: true, version: expect.stringMatching(/^6\.1\.\d+$/) });
  });

  it('shows the host-only interface vboxnet0 as a network', async () => {
    expect(virsh('net-list', '--name').split('\n')).toContain('vboxnet0');
    const xml = virsh('net-dumpxml', 'vboxnet0');
    expect(xml).toContain("<ip address='198.18.240.1' netmask='255.255.255.0'>");
    expect(xml).not.toContain('<forward');
    expect(await c.networks.getXMLDesc(await c.networks.lookupByName('vboxnet0'))).toContain('<name>vboxnet0</name>');
    expect(sim().hostOnlyInterfaces).toEqual([expect.objectContaining({ name: 'vboxnet0', ipv4: '198.18.240.1', mask: '255.255.255.0' })]);
  });

  it('creates and deletes vmdk and vdi volumes in default-pool as media with files', async () => {
    for (const format of ['vmdk', 'vdi'] as const) {
      const path = join(dir, `${PREFIX}vol-${process.pid}.${format}`);
      const vol = await c.volumes.createXML(pool, `<volume><name>${PREFIX}vol.${format}</name>` +
        `<capacity unit='MiB'>16</capacity><target><path>${path}</path><format type='${format}'/></target></volume>`);
      expect(existsSync(path)).toBe(true);
      expect(medium(path)).toMatchObject({ format: format.toUpperCase(), deviceType: 'HardDisk', machines: [] });
      expect(vol.key).toBe(medium(path)?.uuid);
      expect(await c.volumes.getPath(vol)).toBe(path);
      expect(await c.volumes.getXMLDesc(vol)).toContain(`<format type='${format}'/>`);
      // The driver hands VirtualBox the capacity in MiB (VIR_DIV_UP(capacity, 1 MiB)) where
      // IMedium::createBaseStorage takes bytes: a 16 MiB volume comes out 16 bytes large.
      expect((await c.volumes.getInfo(vol)).capacity).toBe(16n);
      expect(virsh('vol-list', 'default-pool')).toContain(path);
      await c.volumes.delete(vol);
      expect(existsSync(path)).toBe(false);
      expect(medium(path)).toBeUndefined();
    }
  });

  it('registers images made elsewhere by their path, with the virtual size their header declares', async () => {
    for (const [format, qemuFormat, opts] of [['vmdk', 'vmdk', 'subformat=streamOptimized'], ['vdi', 'vdi', ''], ['vhd', 'vpc', '']] as const) {
      const path = join(dir, `${PREFIX}made-${process.pid}.${format}`);
      execFileSync('qemu-img', ['create', '-q', '-f', qemuFormat, ...(opts ? ['-o', opts] : []), path, '1G']);
      const vol = await c.volumes.lookupByPath(path); // VirtualBox's OpenMedium registers it
      expect(medium(path)).toMatchObject({ format: format.toUpperCase(), deviceType: 'HardDisk' });
      // (qemu-img rounds a VHD to its CHS geometry: the header's size, not 1 GiB, is what counts)
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path], { encoding: 'utf8' })) as { 'virtual-size': number };
      expect(info['virtual-size']).toBeGreaterThanOrEqual(1024 * 1024 * 1024);
      expect((await c.volumes.getInfo(vol)).capacity).toBe(BigInt(info['virtual-size']));
      await c.volumes.delete(vol);
      expect(existsSync(path)).toBe(false);
    }
  });

  it('defines a domain as a CPI writes it, starts, stops and undefines it', async () => {
    const root = await c.volumes.createXML(pool, `<volume><name>${names.root}</name>` +
      `<capacity unit='MiB'>64</capacity><target><path>${rootPath}</path><format type='vmdk'/></target></volume>`);
    expect(await c.volumes.getInfo(root)).toMatchObject({ capacity: 64n });
    const xml = `<domain type='vbox'>
  <name>${names.dom}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'><source file='${rootPath}'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='cdrom'><source file='${isoPath}'/><target dev='sdb' bus='sata'/><readonly/></disk>
    <interface type='network'><source network='vboxnet0'/><mac address='${macs[0]}'/></interface>
    <interface type='network'><source network='vboxnet0'/><mac address='${macs[1]}'/></interface>
    <graphics type='rdp' autoport='yes'/>
  </devices>
</domain>`;
    const dom = await c.domains.defineXML(xml);

    // what the simulated VirtualBox holds
    const m = machine(names.dom);
    expect(m).toMatchObject({ uuid: dom.uuid.toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-'), state: 'PoweredOff', memoryMB: 512, cpus: 2 });
    expect(m?.storageControllers).toEqual([{
      name: 'SATA Controller', bus: 'SATA', controllerType: 'IntelAhci', attachments: [
        expect.objectContaining({ port: 0, device: 0, type: 'HardDisk', medium: rootPath }),
        expect.objectContaining({ port: 1, device: 0, type: 'DVD', medium: isoPath }),
      ],
    }]);
    expect(m?.networkAdapters).toEqual(macs.map((mac, slot) => expect.objectContaining({
      slot, attachment: 'HostOnly', hostOnlyInterface: 'vboxnet0', mac: mac.replaceAll(':', '').toUpperCase(),
    })));
    expect(medium(rootPath)?.machines).toEqual([m?.uuid]);
    expect(medium(isoPath)).toMatchObject({ deviceType: 'DVD', machines: [m?.uuid] });

    // what libvirt reads back
    const back = await c.domains.getXMLDesc(dom);
    expect(back).toMatch(new RegExp(`<source file='${rootPath}'/>\\s*<target dev='sda' bus='sata'/>`));
    expect(back).toMatch(new RegExp(`<disk type='file' device='cdrom'>\\s*<source file='${isoPath}'/>\\s*<target dev='sdb' bus='sata'/>\\s*<readonly/>`));
    for (const mac of macs) expect(back).toMatch(new RegExp(`<mac address='${mac}'/>\\s*<source network='vboxnet0'/>`));
    expect(back).toMatch(/<graphics type='rdp' port='0' autoport='yes'>/);
    expect(back).toMatch(/<memory unit='KiB'>524288<\/memory>[\s\S]*<vcpu placement='static'>2<\/vcpu>/);

    // an <graphics type='rdp'/> only domain starts without a GUI: the driver asks for the
    // "vrdp" session type, which VirtualBox runs as headless
    await c.domains.create(dom);
    expect((await c.domains.getState(dom)).state).toBe(DomainState.RUNNING);
    expect(machine(names.dom)).toMatchObject({ state: 'Running', frontend: 'headless', requestedFrontend: 'vrdp' });

    await c.domains.suspend(dom);
    expect(machine(names.dom)?.state).toBe('Paused');
    await c.domains.resume(dom);
    expect(machine(names.dom)?.state).toBe('Running');

    await c.domains.shutdown(dom); // the ACPI power button; the simulated guest obeys at once
    expect(machine(names.dom)?.state).toBe('PoweredOff');
    expect((await c.domains.getState(dom)).state).toBe(DomainState.SHUTOFF);

    await c.domains.create(dom);
    expect(machine(names.dom)?.state).toBe('Running');
    await c.domains.destroy(dom);
    expect(machine(names.dom)?.state).toBe('PoweredOff');

    // undefine unregisters the machine and closes its hard disks: the root disk leaves the
    // media registry (and so default-pool) but its file stays; opening it by path brings it back
    await c.domains.undefine(dom);
    expect(machine(names.dom)).toBeUndefined();
    expect(medium(rootPath)).toBeUndefined();
    expect(existsSync(rootPath)).toBe(true);
    const reopened = await c.volumes.lookupByPath(rootPath);
    expect(medium(rootPath)).toMatchObject({ format: 'VMDK', machines: [] });
    await c.volumes.delete(reopened);
    expect(existsSync(rootPath)).toBe(false);
    expect(medium(rootPath)).toBeUndefined();
  });
});

describe('a restart of the daemon', () => {
  it('keeps machines and media, as VBoxSVC keeps its registry', async () => {
    const name = `${PREFIX}restart-${process.pid}`;
    const path = join(dir, `${name}.vdi`);
    await c.volumes.createXML(pool, `<volume><name>${name}.vdi</name><capacity unit='MiB'>8</capacity>` +
      `<target><path>${path}</path><format type='vdi'/></target></volume>`);
    const dom = await c.domains.defineXML(`<domain type='vbox'><name>${name}</name><memory unit='MiB'>256</memory>` +
      `<vcpu>1</vcpu><os><type>hvm</type></os><devices>` +
      `<disk type='file' device='disk'><source file='${path}'/><target dev='sda' bus='sata'/></disk>` +
      `<interface type='network'><source network='vboxnet0'/><mac address='08:00:27:5a:00:03'/></interface>` +
      `<graphics type='rdp' autoport='yes'/></devices></domain>`);
    const before = await c.domains.getXMLDesc(dom);
    const held = machine(name);

    await c.close();
    execFileSync(SCRIPT, ['stop'], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync(SCRIPT, ['start'], { stdio: ['ignore', 'ignore', 'pipe'] });
    c = await connect(uri);
    pool = await c.pools.lookupByName('default-pool');

    const again = await c.domains.lookupByName(name);
    expect(again.uuid.equals(dom.uuid)).toBe(true);
    expect(await c.domains.getXMLDesc(again)).toBe(before);
    expect(machine(name)).toEqual(held);
    expect(medium(path)).toMatchObject({ format: 'VDI', machines: [held?.uuid] });
    await c.domains.undefine(again);
    await c.volumes.delete(await c.volumes.lookupByPath(path));
    expect(existsSync(path)).toBe(false);
  });
});

describe('what libvirt 9.0 vbox driver refuses (its own errors)', () => {
  let vol: VolRef;
  let dom: DomainRef;
  const volPath = join(dir, `${PREFIX}refusals-${process.pid}.vdi`);

  beforeAll(async () => {
    vol = await c.volumes.createXML(pool, `<volume><name>${PREFIX}refusals.vdi</name><capacity unit='MiB'>1</capacity>` +
      `<target><path>${volPath}</path><format type='vdi'/></target></volume>`);
    dom = await c.domains.defineXML(`<domain type='vbox'><name>${PREFIX}refusals-${process.pid}</name>` +
      `<memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices><graphics type='rdp' autoport='yes'/></devices></domain>`);
  });

  it('has no volume upload, download or resize', async () => {
    expect(await refusal(c.volumes.upload(vol, Readable.from([Buffer.alloc(512)]))))
      .toMatchObject({ code: ErrorCode.NO_SUPPORT, message: expect.stringMatching(/virStorageVolUpload/) });
    expect(await refusal(c.volumes.resize(vol, 2n * MiB)))
      .toMatchObject({ code: ErrorCode.NO_SUPPORT, message: expect.stringMatching(/virStorageVolResize/) });
    expect(statSync(volPath).size).toBe(1);
  });

  it('has one pool without info, XML, refresh or volume listing, and no network listing or leases', async () => {
    const net = await c.networks.lookupByName('vboxnet0');
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['virConnectListAllStoragePools', () => c.pools.listAll()],
      ['virStoragePoolGetInfo', () => c.pools.getInfo(pool)],
      ['virStoragePoolGetXMLDesc', () => c.pools.getXMLDesc(pool)],
      ['virStoragePoolRefresh', () => c.pools.refresh(pool)],
      ['virStoragePoolListAllVolumes', () => c.pools.listAllVolumes(pool)],
      ['virConnectListAllNetworks', () => c.networks.listAll()],
      ['virNetworkIsActive', () => c.networks.isActive(net)],
      ['virNetworkGetDHCPLeases', () => c.networks.getDHCPLeases(net, null)],
    ];
    for (const [api, call] of calls) {
      expect(await refusal(call())).toMatchObject({ code: ErrorCode.NO_SUPPORT, message: expect.stringContaining(api) });
    }
    expect(await c.domains.listAll()).toEqual(expect.arrayContaining([expect.objectContaining({ name: dom.name })]));
  });

  it('has no domain metadata', async () => {
    expect(await refusal(c.domains.setMetadata(dom, MetadataType.ELEMENT, '<x/>', 'x', 'urn:t-vbox-sim')))
      .toMatchObject({ code: ErrorCode.NO_SUPPORT, message: expect.stringMatching(/virDomainSetMetadata/) });
  });

  it('attaches only shared folders, no disk', async () => {
    const disk = `<disk type='file' device='disk'><source file='${volPath}'/><target dev='sdc' bus='sata'/></disk>`;
    const r = await refusal(c.domains.attachDevice(dom, disk));
    expect(r.message).toMatch(/Unsupported device type/);
    expect(machine(`${PREFIX}refusals-${process.pid}`)?.storageControllers).toEqual([]);
  });

  it('wants an explicit model for an IDE controller', async () => {
    const xml = (controller: string) => `<domain type='vbox'><name>${PREFIX}ide-${process.pid}</name><memory unit='MiB'>128</memory>` +
      `<vcpu>1</vcpu><os><type>hvm</type></os><devices><disk type='file' device='cdrom'><source file='${isoPath}'/>` +
      `<target dev='hdc' bus='ide'/></disk>${controller}<graphics type='rdp' autoport='yes'/></devices></domain>`;
    expect((await refusal(c.domains.defineXML(xml('')))).message).toMatch(/Unexpected IDE controller model/);
    expect(machine(`${PREFIX}ide-${process.pid}`)).toBeUndefined();
    const dom = await c.domains.defineXML(xml(`<controller type='ide' index='0' model='piix4'/>`));
    expect(machine(dom.name)?.storageControllers).toEqual([expect.objectContaining({
      bus: 'IDE', controllerType: 'PIIX4', attachments: [expect.objectContaining({ port: 1, device: 0, type: 'DVD', medium: isoPath })],
    })]);
    await c.domains.undefine(dom);
  });

  it('has no network update (no DHCP host entries)', async () => {
    const net = await c.networks.lookupByName('vboxnet0');
    const host = `<host mac='08:00:27:5a:00:09' ip='198.18.240.9'/>`;
    expect(await refusal(c.networks.update(net, NetworkUpdateCommand.ADD_LAST, NetworkUpdateSection.IP_DHCP_HOST, -1, host)))
      .toMatchObject({ code: ErrorCode.NO_SUPPORT, message: expect.stringMatching(/virNetworkUpdate/) });
  });
});
