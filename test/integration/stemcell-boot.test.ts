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
  unpackRootImage,
  type GuestReport,
} from '../helpers/stemcell.js';

const run = promisify(execFile);
const URI = 'qemu:///system';
const NET = 't-sc-net';
const BRIDGE = 't-sc-br0';
const DOMAIN = 't-sc-vm';
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

const domainXml = (dir: string) => `<domain type='qemu'>
  <name>${DOMAIN}</name>
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
    <interface type='network'>
      <source network='${NET}'/><mac address='${MAC}'/><model type='virtio'/>
    </interface>
    <serial type='file'><source path='${dir}/console.log'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;

async function cleanup(): Promise<void> {
  await quietly(virsh('destroy', DOMAIN));
  await quietly(virsh('undefine', DOMAIN));
  await quietly(virsh('net-destroy', NET));
  await quietly(virsh('net-undefine', NET));
}

describe('test stemcell boots and its agent reports', () => {
  let dir = '';
  let report: GuestReport;
  let bootMs = 0;

  const printConsole = async () => {
    const log = await readFile(join(dir, 'console.log'), 'latin1').catch(() => '(no console log)');
    console.error(`--- ${DOMAIN} console log ---\n${log}\n--- end of console log ---`);
  };

  beforeAll(async () => {
    await virsh('version').catch((e: unknown) => {
      throw new Error(`libvirtd is not reachable at ${URI} (run scripts/setup-host.sh): ${String(e)}`);
    });
    await cleanup(); // leftovers of an aborted run
    const tarball = await buildTestStemcell();
    dir = await mkdtemp(join(tmpdir(), 't-sc-'));
    await chmod(dir, 0o755); // QEMU runs as libvirt-qemu and must reach the files
    const rootImg = await unpackRootImage(tarball, dir);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', rootImg, join(dir, 'root.qcow2')]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'ephemeral.qcow2'), '32M']);
    const cd = join(dir, 'config-drive', 'ec2', 'latest');
    await mkdir(cd, { recursive: true });
    await writeFile(join(cd, 'user-data'), JSON.stringify(settings));
    await writeFile(join(cd, 'meta-data.json'), JSON.stringify(metaData));
    await run('genisoimage', ['-quiet', '-J', '-r', '-V', 'config-2', '-o', join(dir, 'config.iso'), join(dir, 'config-drive')]);
    await writeFile(join(dir, 'network.xml'), networkXml);
    await writeFile(join(dir, 'domain.xml'), domainXml(dir));
    await virsh('net-define', join(dir, 'network.xml'));
    await virsh('net-start', NET);
    await virsh('define', join(dir, 'domain.xml'));
    const started = Date.now();
    await virsh('start', DOMAIN);
    try {
      report = await readGuestReport(join(dir, 'console.log'), BOOT_TIMEOUT_MS);
    } catch (e) {
      await printConsole();
      throw e;
    }
    bootMs = Date.now() - started;
    console.info(`${DOMAIN}: agent report ${bootMs} ms after start (guest uptime ${report.uptime_seconds} s)`);
  }, 300_000);

  afterAll(async () => {
    await cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
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
    const { stdout: qinfo } = await run('qemu-img', ['info', '--output=json', join(dir, 'root.img')]);
    const q = JSON.parse(qinfo) as { format: string; 'format-specific': { data: { compat: string } } };
    expect(q.format).toBe('qcow2');
    expect(q['format-specific'].data.compat).toBe('0.10');
  });

  it('boots under TCG and reports without errors', () => {
    onTestFailed(printConsole);
    expect(report.errors).toEqual([]);
    expect(report.agent_id).toBe(settings.agent_id);
    expect(report['instance-id']).toBe(metaData['instance-id']);
    expect(report.config_drive).toMatch(/^\/dev\/sr\d$/);
    expect(bootMs).toBeLessThan(BOOT_TIMEOUT_MS);
  });

  it('maps both networks to the NIC with their MAC and configures IPv4 and IPv6', () => {
    onTestFailed(printConsole);
    for (const name of ['v4', 'v6'] as const) {
      expect(report.networks[name]).toMatchObject({ mode: 'static', mac: MAC, iface: 'eth0' });
    }
    expect(report.nics).toEqual([{ name: 'eth0', mac: MAC, addresses: [`${IPV4}/24`, `${IPV6}/64`] }]);
    expect(report.routes.ipv4).toContain('default via 198.18.30.1 dev eth0');
    expect(report.routes.ipv6.some((r) => r.startsWith('default via fd00:30::1 dev eth0'))).toBe(true);
    expect(report.dns).toEqual(['198.18.30.1']);
    expect(report.prefix_addresses).toEqual([]);
  });

  it('resolves the ephemeral disk by its serial, like the agent', () => {
    onTestFailed(printConsole);
    expect(report.disks.system).toMatchObject({ device: '/dev/vda', resolved_by: 'path' });
    expect(report.disks.ephemeral).toEqual({ hint: settings.disks.ephemeral, device: '/dev/vdb', resolved_by: 'id' });
    expect(report.block_devices).toContainEqual({ name: 'vdb', serial: EPHEMERAL_SERIAL, size_bytes: 32 * 1024 * 1024 });
  });

  it('answers over HTTP from the host on IPv4 and IPv6', async () => {
    onTestFailed(printConsole);
    for (const address of [IPV4, IPV6]) {
      const live = await fetchGuestReport(agentUrl(address));
      expect(live.boot_id).toBe(report.boot_id);
      expect(live.settings_source).toBe('config-drive');
      expect(live.errors).toEqual([]);
    }
    await expect(resolveGuestDisk(agentUrl(IPV6), { id: EPHEMERAL_SERIAL })).resolves.toEqual({
      device: '/dev/vdb', size_bytes: 32 * 1024 * 1024, resolved_by: 'id',
    });
    // mapped resolver: /dev/sdb is tried as /dev/xvdb, /dev/vdb, /dev/sdb
    await expect(resolveGuestDisk(agentUrl(IPV4), { path: '/dev/sdb' })).resolves.toMatchObject({
      device: '/dev/vdb', resolved_by: 'path',
    });
    await expect(resolveGuestDisk(agentUrl(IPV4), { id: 'no-such-disk-serial-00', path: '/dev/sdz' })).resolves.toBeNull();
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
