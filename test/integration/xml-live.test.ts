// The XML renderers against a real libvirtd (qemu:///system): every rendered document is
// defined, read back with dumpxml and parsed with this module's parsers. Tests may use
// virsh; product code talks RPC. Everything is named t-xml-… and removed in afterAll,
// including after a failure. Networks are only defined, never started.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as specs from '../../fixtures/xml/specs.js';
import {
  parseDomain,
  parseNetwork,
  parsePool,
  parseVmMetadata,
  parseVolume,
  renderDhcpHost,
  renderDiskDevice,
  renderDirPool,
  renderDomain,
  renderNetwork,
  renderVmMetadata,
  renderVolume,
  BOSH_METADATA_NS,
  BOSH_METADATA_PREFIX,
} from '../../src/xml/index.js';
import type { DhcpHostSpec, DomainSpec, VmMetadata } from '../../src/xml/index.js';
import { scratchDir } from '../helpers/scratch.js';

const URI = 'qemu:///system';
const SOCKET = '/var/run/libvirt/libvirt-sock';
const work = scratchDir('xml-live-');

function virsh(...args: string[]): string {
  try {
    return execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: string };
    throw new Error(`virsh ${args.join(' ')}: ${err.stderr ?? String(e)}`);
  }
}
const quietly = (...args: string[]): void => {
  try {
    virsh(...args);
  } catch {
    // cleanup of something that may not exist
  }
};
function file(name: string, xml: string): string {
  const path = join(work, name);
  writeFileSync(path, xml);
  return path;
}
const volumePath = (name: string): string => `${specs.POOL_PATH}/${name}`;

// A guest that really starts: UEFI on q35 under TCG, booting nothing, so that the
// firmware choice, the serial log and hot-plug are exercised, not just accepted.
const bootDomain: DomainSpec = {
  ...specs.q35EfiDomain,
  name: 't-xml-vm-boot',
  uuid: '9c4d5e6f-7a8b-4c2d-9e3f-4a5b6c7d8e9f',
  disks: [
    { device: 'disk', file: volumePath(specs.overlayVolume.name), format: 'qcow2', bus: 'virtio', target: 'vda', serial: 'root' },
    { device: 'cdrom', file: volumePath(specs.rawVolume.name), format: 'raw', bus: 'sata', target: 'sda' },
  ],
  interfaces: [],
  serialLogFile: `/var/log/libvirt/qemu/t-xml-vm-boot-serial.log`,
};
const DOMAINS = [specs.qemuDomain, specs.q35EfiDomain, specs.kvmDomain, bootDomain].map((d) => d.name);
const NETWORKS = [specs.dualStackNetwork.name, specs.quietNetwork.name];
const VOLUMES = [specs.overlayVolume, specs.rawVolume, specs.baseVolume, { name: 't-xml-vm-extra' }].map((v) => v.name);

function cleanup(): void {
  for (const d of DOMAINS) {
    quietly('destroy', d);
    quietly('undefine', '--nvram', d);
  }
  for (const n of NETWORKS) {
    quietly('net-destroy', n);
    quietly('net-undefine', n);
  }
  for (const v of VOLUMES) quietly('vol-delete', '--pool', specs.dirPool.name, v);
  quietly('pool-destroy', specs.dirPool.name);
  quietly('pool-delete', specs.dirPool.name);
  quietly('pool-undefine', specs.dirPool.name);
  rmSync(bootDomain.serialLogFile!, { force: true });
}

async function ensureLibvirtd(): Promise<void> {
  if (existsSync(SOCKET)) return;
  for (const daemon of ['virtlogd', 'libvirtd']) {
    try {
      execFileSync(daemon, ['-d'], { stdio: 'ignore' });
    } catch {
      // already running, or absent: the wait below tells
    }
  }
  for (let i = 0; i < 50 && !existsSync(SOCKET); i++) await new Promise((r) => setTimeout(r, 200));
}

function kvmDefinable(): boolean {
  try {
    return /<domain>kvm<\/domain>/.test(virsh('domcapabilities', '--virttype', 'kvm', '--arch', 'x86_64', '--machine', 'q35'));
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await ensureLibvirtd();
  cleanup();
});
afterAll(() => {
  cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('storage pool', () => {
  it('defines, builds and starts the rendered dir pool and parses it back', () => {
    virsh('pool-define', file('pool.xml', renderDirPool(specs.dirPool)));
    virsh('pool-build', specs.dirPool.name);
    virsh('pool-start', specs.dirPool.name);
    expect(parsePool(virsh('pool-dumpxml', specs.dirPool.name))).toEqual({ name: specs.dirPool.name, type: 'dir', path: specs.POOL_PATH });
  });
});

describe('volumes', () => {
  it('creates a base, a copy-on-write overlay on it and a sparse raw volume', () => {
    for (const v of [specs.baseVolume, specs.overlayVolume, specs.rawVolume]) {
      virsh('vol-create', specs.dirPool.name, file(`${v.name}.xml`, renderVolume(v)));
      const parsed = parseVolume(virsh('vol-dumpxml', '--pool', specs.dirPool.name, v.name));
      expect(parsed).toMatchObject({ name: v.name, capacityBytes: v.capacityBytes, format: v.format, path: volumePath(v.name) });
      expect(typeof parsed.allocationBytes).toBe('bigint');
      expect(parsed.backing).toEqual(v.backing);
    }
  });
});

describe('networks', () => {
  it('defines the dual-stack isolated network and parses it back without a <forward>', () => {
    virsh('net-define', file('net.xml', renderNetwork(specs.dualStackNetwork)));
    const parsed = parseNetwork(virsh('net-dumpxml', specs.dualStackNetwork.name));
    expect(parsed.name).toBe(specs.dualStackNetwork.name);
    expect(parsed.bridge).toBe('t-xml-br0');
    expect(parsed.forwardMode).toBeUndefined();
    expect(parsed.ips).toEqual(
      specs.dualStackNetwork.ips.map((ip) => ({
        family: ip.family,
        address: ip.address,
        prefix: ip.prefix,
        hasDhcp: true,
        hosts: ip.dhcp?.hosts,
      })),
    );
    expect(virsh('net-info', specs.dualStackNetwork.name)).toMatch(/Active:\s+no/);
  });

  it('adds and removes rendered DHCP hosts with NETWORK_UPDATE on both families', () => {
    const net = specs.dualStackNetwork.name;
    const v4 = specs.dhcpHosts['dhcp-host-ipv4'] as Extract<DhcpHostSpec, { family: 'ipv4' }>;
    const v6 = specs.dhcpHosts['dhcp-host-ipv6-name']!;
    virsh('net-update', net, 'add-last', 'ip-dhcp-host', renderDhcpHost(v4), '--config', '--parent-index', '0');
    virsh('net-update', net, 'add-last', 'ip-dhcp-host', renderDhcpHost(v6), '--config', '--parent-index', '1');
    let ips = parseNetwork(virsh('net-dumpxml', net)).ips;
    expect(ips[0]?.hosts).toContainEqual({ mac: v4.mac, name: v4.name, ip: v4.ip });
    expect(ips[1]?.hosts).toContainEqual({ name: v6.name, ip: v6.ip });
    virsh('net-update', net, 'delete', 'ip-dhcp-host', renderDhcpHost(v4), '--config', '--parent-index', '0');
    virsh('net-update', net, 'delete', 'ip-dhcp-host', renderDhcpHost(v6), '--config', '--parent-index', '1');
    ips = parseNetwork(virsh('net-dumpxml', net)).ips;
    expect(ips[0]?.hosts).not.toContainEqual(expect.objectContaining({ ip: v4.ip }));
    expect(ips[1]?.hosts).not.toContainEqual(expect.objectContaining({ ip: v6.ip }));
  });

  it('defines the quiet network (no DHCP, DNS off) that keeps dnsmasq and its RAs away', () => {
    virsh('net-define', file('quiet.xml', renderNetwork(specs.quietNetwork)));
    const xml = virsh('net-dumpxml', specs.quietNetwork.name);
    expect(xml).toMatch(/<dns enable='no'\/>/);
    expect(parseNetwork(xml).ips.map((ip) => ip.hasDhcp)).toEqual([false, false]);
  });
});

describe('domains', () => {
  const variants = [specs.qemuDomain, specs.q35EfiDomain, specs.kvmDomain];
  for (const spec of variants) {
    it(`defines ${spec.name} (${spec.type}, ${spec.machine}, ${spec.firmware}) and parses it back`, (ctx) => {
      if (spec.type === 'kvm' && !kvmDefinable()) ctx.skip();
      virsh('define', file(`${spec.name}.xml`, renderDomain(spec)));
      const xml = virsh('dumpxml', '--inactive', spec.name);
      const parsed = parseDomain(xml);
      expect(parsed.name).toBe(spec.name);
      expect(parsed.uuid).toBe(spec.uuid);
      expect(parsed.title).toBe(spec.title);
      expect(parsed.serialLogFile).toBe(spec.serialLogFile);
      expect(parsed.disks).toEqual(
        spec.disks.map((d) => ({ device: d.device, file: d.file, target: d.target, bus: d.bus, format: d.format, ...(d.serial ? { serial: d.serial } : {}) })),
      );
      expect(parsed.interfaces).toEqual(
        spec.interfaces.map((n) => ({ kind: n.kind, source: n.kind === 'network' ? n.network : n.bridge, mac: n.mac, model: n.model })),
      );
      if (spec.metadata) expect(parseVmMetadata(xml)).toEqual(spec.metadata);
    });
  }

  it('round-trips metadata through DOMAIN_SET_METADATA / GET_METADATA, hostile tags included', () => {
    const hostile: VmMetadata = {
      ...specs.metadata,
      tags: {
        '': '',
        'line\nbreak': 'tab\there\r\nand CRLF',
        '<script>&amp;': ']]> "quoted" \'single\'',
        control: 'bell\u0007 null\u0000',
        unicode: 'ü ✓ 𝄞 日本語',
        ['__proto__']: 'not a prototype',
        ' padded ': '  spaces  ',
      },
    };
    const name = specs.qemuDomain.name;
    virsh('metadata', name, BOSH_METADATA_NS, '--key', BOSH_METADATA_PREFIX, '--config', '--set', renderVmMetadata(hostile));
    expect(parseVmMetadata(virsh('metadata', name, BOSH_METADATA_NS, '--config'))).toEqual(hostile);
    expect(parseVmMetadata(virsh('dumpxml', '--inactive', name))).toEqual(hostile);
  });

  it('starts a UEFI q35 guest under TCG, logs its serial console and hot-plugs a rendered disk', async () => {
    virsh('vol-create', specs.dirPool.name, file('extra.xml', renderVolume({ name: 't-xml-vm-extra', capacityBytes: 1n << 20n, format: 'raw' })));
    virsh('define', file('boot.xml', renderDomain(bootDomain)));
    virsh('start', bootDomain.name);
    try {
      expect(virsh('domstate', bootDomain.name).trim()).toBe('running');
      const live = virsh('dumpxml', bootDomain.name);
      expect(live).toMatch(/<loader [^>]*type='pflash'[^>]*>[^<]*OVMF/);
      expect(parseDomain(live).serialLogFile).toBe(bootDomain.serialLogFile);
      expect(existsSync(bootDomain.serialLogFile!)).toBe(true);

      const disk = renderDiskDevice({ device: 'disk', file: volumePath('t-xml-vm-extra'), format: 'raw', bus: 'virtio', target: 'vdb', serial: 'disk-extra' });
      const diskFile = file('disk.xml', disk);
      virsh('attach-device', bootDomain.name, diskFile, '--live');
      expect(parseDomain(virsh('dumpxml', bootDomain.name)).disks).toContainEqual(
        expect.objectContaining({ target: 'vdb', serial: 'disk-extra', file: volumePath('t-xml-vm-extra') }),
      );
      virsh('detach-device', bootDomain.name, diskFile, '--live');
      // detach completes when the guest acknowledges; UEFI without an OS may not, so poll.
      for (let i = 0; i < 20; i++) {
        if (!parseDomain(virsh('dumpxml', bootDomain.name)).disks.some((d) => d.target === 'vdb')) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      quietly('destroy', bootDomain.name);
    }
  });
});
