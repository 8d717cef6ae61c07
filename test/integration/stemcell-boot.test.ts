// Smoke test of the test stemcell, without the CPI: the image boots under TCG, the
// agent reads a config-2 ISO, configures a dual-stack static network on the NIC with the
// settings' MAC, resolves the ephemeral disk by its serial, reports on the serial
// console, and answers over HTTP on both address families.
//
// Everything it creates is named t-sc-… and lives on an isolated libvirt network (no
// <forward>): traffic goes only between this host's bridge t-sc-br0 and the guest.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import {
  agentUrl,
  buildTestStemcell,
  fetchGuestReport,
  parseGuestReports,
  readGuestReport,
  readStemcellInfo,
  resolveGuestDisk,
  AGENT_ID_RULES,
  unpackRootImage,
  type GuestReport,
} from '../helpers/stemcell.js';

const run = promisify(execFile);
const URI = 'qemu:///system';
const NET = 't-sc-net';
const BRIDGE = 't-sc-br0';
const DOMAIN = 't-sc-vm';
const EDGE_DOMAIN = 't-sc-edge';
const MAC = '52:54:00:5c:30:0a';
const IPV4 = '198.18.30.10';
const IPV6 = 'fd00:30::10';
const EPHEMERAL_SERIAL = 't-sc-ephemeral-00001'; // 20 chars: the virtio serial limit and the agent's id length
const BOOT_TIMEOUT_MS = 120_000;

const virsh = (...args: string[]) => run('virsh', ['-q', '-c', URI, ...args]);
const quietly = (p: Promise<unknown>) => p.then(() => undefined, () => undefined);

const settings = {
  agent_id: 't-sc-agent-0001',
  vm: { name: 'vm-t-sc' },
  mbus: 'nats://nats:nats@198.18.30.1:4222',
  ntp: [],
  blobstore: { provider: 'local', options: { blobstore_path: '/var/vcap/micro_bosh/data/cache' } },
  disks: {
    system: '/dev/vda',
    ephemeral: { id: EPHEMERAL_SERIAL, path: '/dev/vdb' },
    persistent: {},
  },
  networks: {
    v4: {
      type: 'manual', ip: IPV4, netmask: '255.255.255.0', gateway: '198.18.30.1',
      default: ['dns', 'gateway'], dns: ['198.18.30.1'], mac: MAC, prefix: '32',
    },
    v6: {
      type: 'manual', ip: IPV6, netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000',
      gateway: 'fd00:30::1', default: ['gateway'], dns: [], mac: MAC, prefix: '128',
    },
  },
  env: { bosh: {} },
};
const metaData = { 'instance-id': 'vm-t-sc', 'public-keys': { '0': { 'openssh-key': 'ssh-ed25519 AAAA t-sc' } } };

const networkXml = `<network>
  <name>${NET}</name>
  <bridge name='${BRIDGE}' stp='off' delay='0'/>
  <dns enable='no'/>
  <ip address='198.18.30.1' netmask='255.255.255.0'/>
  <ip family='ipv6' address='fd00:30::1' prefix='64'/>
</network>`;

const domainXml = (name: string, dir: string, macs: string[]) => `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_reboot>restart</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='${dir}/root.qcow2'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='${dir}/ephemeral.qcow2'/><target dev='vdb' bus='virtio'/>
      <serial>${EPHEMERAL_SERIAL}</serial>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='${dir}/config.iso'/><target dev='sda' bus='sata'/><readonly/>
    </disk>
    ${macs.map((mac) => `<interface type='network'>
      <source network='${NET}'/><mac address='${mac}'/><model type='virtio'/>
    </interface>`).join('\n    ')}
    <serial type='file'><source path='${dir}/console.log'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;

/**
 * Writes a guest's files into dir (overlay of root.img, an ephemeral disk with a
 * serial, a config-2 ISO with the given files), defines and starts it, and waits for
 * its first report. Returns the report and the milliseconds from start to report.
 */
async function bootGuest(
  name: string, dir: string, rootImg: string, files: Record<string, unknown>, macs: string[],
): Promise<{ report: GuestReport; ms: number }> {
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', rootImg, join(dir, 'root.qcow2')]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'ephemeral.qcow2'), '32M']);
  const cd = join(dir, 'config-drive', 'ec2', 'latest');
  await mkdir(cd, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    await writeFile(join(cd, file), typeof content === 'string' ? content : JSON.stringify(content));
  }
  await run('genisoimage', ['-quiet', '-J', '-r', '-V', 'config-2', '-o', join(dir, 'config.iso'), join(dir, 'config-drive')]);
  await writeFile(join(dir, 'domain.xml'), domainXml(name, dir, macs));
  await virsh('define', join(dir, 'domain.xml'));
  const started = Date.now();
  await virsh('start', name);
  try {
    const report = await readGuestReport(join(dir, 'console.log'), BOOT_TIMEOUT_MS);
    return { report, ms: Date.now() - started };
  } catch (e) {
    await printConsole(name, dir);
    throw e;
  }
}

async function printConsole(name: string, dir: string): Promise<void> {
  const log = await readFile(join(dir, 'console.log'), 'latin1').catch(() => '(no console log)');
  console.error(`--- ${name} console log ---\n${log}\n--- end of console log ---`);
}

async function cleanup(): Promise<void> {
  for (const name of [DOMAIN, EDGE_DOMAIN]) {
    await quietly(virsh('destroy', name));
    await quietly(virsh('undefine', name));
  }
  await quietly(virsh('net-destroy', NET));
  await quietly(virsh('net-undefine', NET));
}

describe('test stemcell', () => {
  let base = '';
  let rootImg = '';

  beforeAll(async () => {
    await virsh('version').catch((e: unknown) => {
      throw new Error(`libvirtd is not reachable at ${URI} (run scripts/setup-host.sh): ${String(e)}`);
    });
    await cleanup(); // leftovers of an aborted run
    const tarball = await buildTestStemcell();
    base = await mkdtemp(join(tmpdir(), 't-sc-'));
    await chmod(base, 0o755); // QEMU runs as libvirt-qemu and must reach the files
    rootImg = await unpackRootImage(tarball, base);
    await writeFile(join(base, 'network.xml'), networkXml);
    await virsh('net-define', join(base, 'network.xml'));
    await virsh('net-start', NET);
  }, 300_000);

  afterAll(async () => {
    await cleanup();
    if (base) await rm(base, { recursive: true, force: true });
  }, 60_000);

  it('builds a stemcell whose manifest and image are what an OpenStack-format CPI expects', async () => {
    const tarball = await buildTestStemcell();
    const info = await readStemcellInfo(tarball);
    expect(info.name).toBe('bosh-libvirt-test-stemcell');
    expect(info.root_img.virtual_size_bytes).toBe(info.disk_mib * 1024 * 1024);
    const { stdout: listing } = await run('tar', ['-tzf', tarball]);
    expect(listing.split('\n').filter(Boolean).sort()).toEqual(['image', 'stemcell.MF']);
    const { stdout: mf } = await run('tar', ['-xzOf', tarball, 'stemcell.MF']);
    expect(mf).toMatch(/^api_version: 3$/m);
    expect(mf).toMatch(/^- openstack-qcow2$/m);
    expect(mf).toMatch(/^ {2}disk_format: qcow2$/m);
    const { stdout: qinfo } = await run('qemu-img', ['info', '--output=json', rootImg]);
    const q = JSON.parse(qinfo) as { format: string; 'format-specific': { data: { compat: string } } };
    expect(q.format).toBe('qcow2');
    expect(q['format-specific'].data.compat).toBe('0.10');
  });

  describe('booted with a dual-stack static network and an ephemeral disk', () => {
    let dir = '';
    let report: GuestReport;
    let bootMs = 0;

    beforeAll(async () => {
      dir = join(base, DOMAIN);
      await mkdir(dir);
      ({ report, ms: bootMs } = await bootGuest(DOMAIN, dir, rootImg,
        { 'user-data': settings, 'meta-data.json': metaData }, [MAC]));
      console.info(`${DOMAIN}: agent report ${bootMs} ms after start (guest uptime ${report.uptime_seconds} s)`);
    }, 180_000);

    it('boots under TCG and reports without errors', () => {
      onTestFailed(() => printConsole(DOMAIN, dir));
      expect(report.errors).toEqual([]);
      expect(report.agent_id).toBe(settings.agent_id);
      expect(report['instance-id']).toBe(metaData['instance-id']);
      expect(report.config_drive).toMatch(/^\/dev\/sr\d$/);
      expect(bootMs).toBeLessThan(BOOT_TIMEOUT_MS);
    });

    it('maps both networks to the NIC with their MAC and configures IPv4 and IPv6', () => {
      onTestFailed(() => printConsole(DOMAIN, dir));
      for (const name of ['v4', 'v6'] as const) {
        expect(report.networks[name]).toMatchObject({ mode: 'static', mac: MAC, iface: 'eth0' });
      }
      expect(report.nics).toEqual([{ name: 'eth0', mac: MAC, addresses: [`${IPV4}/24`, `${IPV6}/64`] }]);
      expect(report.routes.ipv4).toContain('default via 198.18.30.1 dev eth0');
      expect(report.routes.ipv6.some((r) => r.startsWith('default via fd00:30::1 dev eth0'))).toBe(true);
      expect(report.dns).toEqual(['198.18.30.1']);
      expect(report.prefix_addresses).toEqual([]);
    });

    it('resolves the ephemeral disk by its path, like the agent (it has no CID to look up)', () => {
      onTestFailed(() => printConsole(DOMAIN, dir));
      expect(report.disks.system).toMatchObject({ device: '/dev/vda', resolved_by: 'path' });
      expect(report.disks.ephemeral).toEqual({ hint: settings.disks.ephemeral, device: '/dev/vdb', resolved_by: 'path' });
      expect(report.block_devices).toContainEqual({ name: 'vdb', serial: EPHEMERAL_SERIAL, size_bytes: 32 * 1024 * 1024 });
    });

    it('answers over HTTP from the host on IPv4 and IPv6', async () => {
      onTestFailed(() => printConsole(DOMAIN, dir));
      for (const address of [IPV4, IPV6]) {
        const live = await fetchGuestReport(agentUrl(address));
        expect(live.boot_id).toBe(report.boot_id);
        expect(live.settings_source).toBe('config-drive');
        expect(live.errors).toEqual([]);
      }
      // by ID: a 20-character CID that is the disk's serial, under both agents' rules
      for (const rule of AGENT_ID_RULES) {
        await expect(resolveGuestDisk(agentUrl(IPV6), { cid: EPHEMERAL_SERIAL, rule })).resolves.toEqual({
          device: '/dev/vdb', size_bytes: 32 * 1024 * 1024, resolved_by: 'id',
        });
      }
      // a longer CID (e.g. `<cid>@<host>`): agents before April 2023 match its first 20
      // characters, later ones the whole CID, which no serial can end with
      await expect(resolveGuestDisk(agentUrl(IPV6), { cid: `${EPHEMERAL_SERIAL}@host-a`, path: '/dev/vdb', rule: 'first20' })).resolves.toMatchObject({ resolved_by: 'id' });
      await expect(resolveGuestDisk(agentUrl(IPV6), { cid: `${EPHEMERAL_SERIAL}@host-a`, path: '/dev/vdb', rule: 'whole' })).resolves.toMatchObject({ resolved_by: 'path' });
      // the hint's id is not what the agent looks up: a CID shorter than 20 characters is not looked up at all
      await expect(resolveGuestDisk(agentUrl(IPV6), { cid: 'disk-t-sc' })).resolves.toBeNull();
      // mapped resolver: /dev/sdb is tried as /dev/xvdb, /dev/vdb, /dev/sdb
      await expect(resolveGuestDisk(agentUrl(IPV4), { path: '/dev/sdb' })).resolves.toMatchObject({
        device: '/dev/vdb', resolved_by: 'path',
      });
      await expect(resolveGuestDisk(agentUrl(IPV4), { cid: 'no-such-disk-serial-00', path: '/dev/sdz' })).resolves.toBeNull();
    });

    // the later tests rely on the agent surviving a reboot with the same settings
    it('reports the same configuration again after a reset', async () => {
      onTestFailed(() => printConsole(DOMAIN, dir));
      await virsh('reset', DOMAIN);
      const again = await readGuestReport(join(dir, 'console.log'), BOOT_TIMEOUT_MS, 2);
      expect(again.boot_id).not.toBe(report.boot_id);
      expect(again.errors).toEqual([]);
      expect(again.nics).toEqual(report.nics);
      expect(again.disks).toEqual(report.disks);
    });
  });

  // A test agent that never complains would prove nothing: it must flag what the real
  // agent would fail on, and handle the network kinds the CPI plans for.
  describe('booted with edge-case settings', () => {
    const PREFIX_MAC = '52:54:00:5c:30:1a';
    const DHCP_MAC = '52:54:00:5c:30:1b';
    const edgeSettings = {
      agent_id: 't-sc-agent-edge',
      disks: { system: '/dev/vda', ephemeral: '/dev/sdb', persistent: { 'disk-t-sc': { id: 'too-short', path: '/dev/vdz' } } },
      networks: {
        v6: { type: 'manual', ip: 'fd00:30::20', netmask: 'ffff:ffff:ffff:ffff::', gateway: 'fd00:30::1',
              default: ['gateway', 'dns'], dns: ['fd00:30::1'], mac: PREFIX_MAC, prefix: '128' },
        // a delegated /80: not configured, one address from it added
        pd: { type: 'manual', ip: 'fd00:30:0:0:7::', netmask: 'ffff:ffff:ffff:ffff:ffff::', prefix: '80', mac: PREFIX_MAC },
        // no DHCP server on the isolated network: must not hold up the boot for long
        dyn: { type: 'dynamic', mac: DHCP_MAC },
        // MACs are compared as strings: an uppercase one matches no NIC
        upper: { type: 'manual', ip: '198.18.30.21', netmask: '255.255.255.0', mac: PREFIX_MAC.toUpperCase() },
      },
    };
    let dir = '';
    let report: GuestReport;

    beforeAll(async () => {
      dir = join(base, EDGE_DOMAIN);
      await mkdir(dir);
      // meta-data.json is not valid JSON: the real agent fails bootstrap on that
      ({ report } = await bootGuest(EDGE_DOMAIN, dir, rootImg,
        { 'user-data': edgeSettings, 'meta-data.json': '{"instance-id": ' }, [PREFIX_MAC, DHCP_MAC]));
    }, 180_000);

    it('fails loudly on an invalid meta-data.json and configures no network', async () => {
      onTestFailed(() => printConsole(EDGE_DOMAIN, dir));
      expect(report.errors).toContain('config drive /dev/sr0: ec2/latest/meta-data.json is not a valid JSON object');
      expect(report.nics.every((n) => n.addresses.length === 0)).toBe(true);
      const console = await readFile(join(dir, 'console.log'), 'latin1');
      expect(console).toContain('test-agent: ERROR: config drive /dev/sr0: ec2/latest/meta-data.json is not a valid JSON object');
    });

    it('with valid settings: delegated prefix, DHCP, MAC case and short disk ids like the agent', async () => {
      onTestFailed(() => printConsole(EDGE_DOMAIN, dir));
      await writeFile(join(dir, 'config-drive/ec2/latest/meta-data.json'), JSON.stringify({ 'instance-id': 'vm-t-sc-edge' }));
      await run('genisoimage', ['-quiet', '-J', '-r', '-V', 'config-2', '-o', join(dir, 'config.iso'), join(dir, 'config-drive')]);
      await virsh('reset', EDGE_DOMAIN);
      const r = await readGuestReport(join(dir, 'console.log'), BOOT_TIMEOUT_MS, 2);
      expect(r['instance-id']).toBe('vm-t-sc-edge');
      expect(r.networks.pd).toMatchObject({ mode: 'prefix', iface: 'eth0' });
      expect(r.prefix_addresses).toEqual([
        { network: 'pd', iface: 'eth0', prefix: 'fd00:30:0:0:7::/80', address: 'fd00:30::7:0:0:1/128' },
      ]);
      expect(r.nics.find((n) => n.name === 'eth0')?.addresses.sort()).toEqual(['fd00:30::20/64', 'fd00:30::7:0:0:1/128']);
      expect(r.routes.ipv6.some((l) => l.startsWith('fd00:30::7:0:0/80'))).toBe(false);
      expect(r.networks.dyn).toMatchObject({ mode: 'dhcp', iface: 'eth1', addresses: [] });
      expect(r.uptime_seconds).toBeLessThan(60);
      expect(r.networks.upper).toMatchObject({ mode: 'unmapped', iface: null });
      expect(r.dns).toEqual(['fd00:30::1']);
      expect(r.disks.ephemeral).toMatchObject({ hint: '/dev/sdb', device: '/dev/vdb', resolved_by: 'path' });
      expect(r.disks.persistent['disk-t-sc']).toMatchObject({ device: null });
      expect(r.errors).toEqual([
        `No device found for network 'upper' with MAC address '${PREFIX_MAC.toUpperCase()}'`,
        'persistent disk-t-sc disk (hint id too-short, path /dev/vdz) not found',
      ]);
      // the one address from the prefix is reachable on the bridge (on-link /64)
      await expect(fetchGuestReport(agentUrl('fd00:30::7:0:0:1'))).resolves.toMatchObject({ agent_id: 't-sc-agent-edge' });
    });
  });
});

describe('parseGuestReports', () => {
  it('reads one report per boot and ignores a report still being written', () => {
    const r = (id: string) => JSON.stringify({ boot_id: id });
    const log = [
      '[    1.0] kernel noise', 'BOSH-TEST-AGENT-REPORT-BEGIN\r', `${r('a')}\r`, 'BOSH-TEST-AGENT-REPORT-END\r',
      'BOSH-TEST-AGENT-REPORT-BEGIN', r('b'), 'BOSH-TEST-AGENT-REPORT-END',
      'BOSH-TEST-AGENT-REPORT-BEGIN', '{"boot_id":"c"',
    ].join('\n');
    expect(parseGuestReports(log).map((x) => x.boot_id)).toEqual(['a', 'b']);
  });
});
