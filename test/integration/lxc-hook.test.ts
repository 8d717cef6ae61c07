// The libvirt lxc hook (scripts/libvirt-hook-lxc, installed as /etc/libvirt/hooks/lxc by
// scripts/setup-host.sh): it mounts a container's root overlay (stemcell directory as the
// lower layer, the VM's own upper/work) on `prepare` and unmounts it on `release`, and
// hands prefix routes to the qemu hook. First in dry-run mode on hand-made domain XML,
// then on the real daemon (lxc:///) with the container test stemcell: the container
// starts from an overlay that copies nothing, stops and starts again, and a directory
// renamed into its disk directory appears inside it while it runs.
// Tests may use virsh; product code talks RPC. Everything is named lxcr-hook-….
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { renderLxcDomain, type LxcDomainSpec } from '../../src/xml/index.js';
import { ROOT } from '../helpers/cpi.js';
import { defineIsolatedNetwork, removeNetwork, type IsolatedNetwork } from '../helpers/driver-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';
import { buildContainerStemcell, CONTAINER_REPORT_FILE, CONTAINER_SETTINGS_FILE, readContainerReport } from '../helpers/stemcell.js';

const HOOK = join(ROOT, 'scripts/libvirt-hook-lxc');
const QEMU_HOOK = join(ROOT, 'scripts/libvirt-hook-qemu');
const INSTALLED = '/etc/libvirt/hooks/lxc';
const NS = 'urn:bosh-libvirt-cpi:vm:1';
const URI = 'lxc:///';

/**
 * The system libvirtd that serves lxc:/// (its pid file, as scripts/setup-host.sh reads
 * it). Not "the oldest libvirtd": the second daemon (multi-host tests) and the vbox one
 * run beside it, and which of them started first depends on the host's history.
 */
function primaryLibvirtdPid(): string {
  const pid = readFileSync('/run/libvirtd.pid', 'utf8').trim();
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm !== 'libvirtd') throw new Error(`/run/libvirtd.pid names ${pid}, which is ${comm}, not libvirtd: run scripts/setup-host.sh`);
  return pid;
}

const virsh = (...args: string[]): string => execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8', stdio: 'pipe' });
const quietly = (...args: string[]): void => {
  try {
    virsh(...args);
  } catch {
    // cleanup of something that may not exist
  }
};

/** A VM's root layout as the LXC backend makes it, in `dir`, over `lower`. */
function rootLayout(dir: string, vm: string, lower: string): { base: string; merged: string } {
  const base = join(dir, `${vm}.root`);
  for (const d of ['upper', 'work']) mkdirSync(join(base, d), { recursive: true });
  symlinkSync(lower, join(base, 'lower'));
  return { base, merged: join(base, 'rootfs') };
}

function domainXml(merged: string, extra = '', metadata = `<bosh:vm xmlns:bosh="${NS}"><bosh:prefixes/></bosh:vm>`): string {
  return `<domain type='lxc'><name>lxcr-hook-x</name><metadata>${metadata}</metadata>
  <devices><filesystem type='mount'><source dir='${merged}'/><target dir='/'/></filesystem>${extra}</devices></domain>`;
}

function dryRun(xml: string, op: string, env: Record<string, string> = {}, domain = 'lxcr-hook-x') {
  const r = spawnSync('sh', [HOOK, domain, op, 'begin', '-'], {
    input: xml,
    encoding: 'utf8',
    env: { ...process.env, BOSH_LIBVIRT_HOOK_DRY_RUN: '1', BOSH_LIBVIRT_HOOK_ROUTER: QEMU_HOOK, BOSH_LIBVIRT_HOOK_NETWORK_DIRS: '/nonexistent', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('libvirt-hook-lxc (dry run)', () => {
  const dir = scratchDir('lxcr-hook-dry-');
  const lower = join(dir, 'lxcr-sc-1');
  mkdirSync(lower);
  const { base, merged } = rootLayout(dir, 'lxcr-vm-1', lower);

  test('prepare mounts the overlay: the stemcell directory below, the VM upper and work dirs', () => {
    const r = dryRun(domainXml(merged), 'prepare');
    expect(r).toEqual({
      status: 0,
      stdout: `mount -t overlay overlay -o lowerdir=${lower},upperdir=${base}/upper,workdir=${base}/work ${merged}\nname lxcr-hook-x in ${merged}/etc/hosts\n`,
      stderr: '',
    });
    expect(existsSync(merged)).toBe(true); // the mount point is made when missing
  });

  test('the name added to /etc/hosts is the host name libvirt derives from the domain name', () => {
    // lxcContainerSetHostname keeps [A-Za-z0-9-] and drops one leading '-'
    const r = dryRun(domainXml(merged), 'prepare', {}, '-Lxcr_vm.1');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[1]).toBe(`name Lxcrvm1 in ${merged}/etc/hosts`);
  });

  test('a root layer that is gone fails the start with the reason instead of starting an empty root', () => {
    const gone = rootLayout(dir, 'lxcr-vm-2', join(dir, 'lxcr-sc-deleted'));
    const r = dryRun(domainXml(gone.merged), 'prepare');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/root filesystem layer .*lxcr-sc-deleted is missing/);
  });

  test('paths overlayfs options cannot carry are refused, not passed to mount', () => {
    const r = dryRun(domainXml('/var/lib/x,upperdir=/etc/a.root/rootfs'), 'prepare');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('characters overlayfs options cannot carry');
  });

  test('domains that are not the CPI\'s, and roots not laid out as <vm>.root/rootfs, are left alone', () => {
    const foreign = `<domain type='lxc'><name>other</name><devices><filesystem type='mount'><source dir='${merged}'/><target dir='/'/></filesystem></devices></domain>`;
    expect(dryRun(foreign, 'prepare')).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(dryRun(domainXml('/srv/containers/web'), 'prepare')).toEqual({ status: 0, stdout: '', stderr: '' });
  });

  test('release of a root that is not mounted does nothing; other operations mount nothing', () => {
    for (const op of ['release', 'start', 'started', 'stopped', 'reconnect', '']) {
      expect({ op, ...dryRun(domainXml(merged), op) }).toEqual({ op, status: 0, stdout: '', stderr: '' });
    }
  });

  test('delegated prefixes are routed by the qemu hook\'s logic, for the same operations', () => {
    const md = `<bosh:vm xmlns:bosh="${NS}"><bosh:prefixes><bosh:prefix prefix="fd00:211::/64" via="fd00:210::10" network="lxcr-net"/></bosh:prefixes></bosh:vm>`;
    const nic = `<interface type='network'><source network='lxcr-net' bridge='lxcr0'/><mac address='52:54:00:6e:00:10'/></interface>`;
    expect(dryRun(domainXml(merged, nic, md), 'started').stdout).toBe('ip -6 route replace fd00:211::/64 via fd00:210::10 dev lxcr0\n');
    expect(dryRun(domainXml(merged, nic, md), 'stopped').stdout).toBe('ip -6 route del fd00:211::/64 via fd00:210::10\n');
    // release unmounts (nothing mounted here) and deletes the routes too
    expect(dryRun(domainXml(merged, nic, md), 'release').stdout).toBe('ip -6 route del fd00:211::/64 via fd00:210::10\n');
  });
});

describe('containers on the real daemon (lxc:///, hook installed)', () => {
  const NAME = 'lxcr-hook-vm';
  let dir = '';
  let net: IsolatedNetwork;
  let root: { base: string; merged: string };
  let disks = '';
  let domainFile = '';

  const libvirtdMounts = (): string[] => {
    const pid = primaryLibvirtdPid();
    return readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .filter((l) => l.split(' ')[4] === root.merged);
  };
  const reportPath = (): string => join(root.base, 'upper', CONTAINER_REPORT_FILE);

  beforeAll(async () => {
    if (!existsSync(INSTALLED) || !readFileSync(INSTALLED).equals(readFileSync(HOOK))) {
      throw new Error(`${INSTALLED} is missing or differs from scripts/libvirt-hook-lxc: run scripts/setup-host.sh (as root); libvirtd looks for hooks only when it starts`);
    }
    const stemcell = await buildContainerStemcell();
    dir = scratchDir('lxcr-hook-');
    const lower = join(dir, 'lxcr-sc');
    execFileSync('cp', ['-a', stemcell.rootfs, lower]);
    root = rootLayout(dir, NAME, lower);
    disks = join(dir, `${NAME}.disks`);
    mkdirSync(disks);
    mkdirSync(join(root.base, 'upper/var/vcap/bosh'), { recursive: true });
    writeFileSync(
      join(root.base, 'upper', CONTAINER_SETTINGS_FILE),
      JSON.stringify({
        agent_id: 'agent-lxcr-hook',
        disks: { system: '', persistent: {} },
        networks: {
          v4: { type: 'manual', ip: '198.18.210.20', netmask: '255.255.255.0', gateway: '198.18.210.1', default: ['gateway', 'dns'], mac: '52:54:00:6e:00:20', preconfigured: true },
          v6: { type: 'manual', ip: 'fd00:210::20', netmask: 'ffff:ffff:ffff:ffff::', gateway: 'fd00:210::1', default: ['gateway'], mac: '52:54:00:6e:00:20', preconfigured: true },
        },
      }),
    );
    net = defineIsolatedNetwork('lxcr-net', 'lxcr0', 210);
    const spec: LxcDomainSpec = {
      name: NAME,
      type: 'lxc',
      memoryMiB: 128,
      vcpus: 1,
      init: stemcell.init,
      filesystems: [
        { source: root.merged, target: '/' },
        { source: disks, target: '/warden-cpi-dev' },
      ],
      interfaces: [
        {
          kind: 'network',
          network: net.name,
          mac: '52:54:00:6e:00:20',
          ips: [
            { family: 'ipv4', address: '198.18.210.20', prefix: 24 },
            { family: 'ipv6', address: 'fd00:210::20', prefix: 64 },
          ],
          routes: [
            { family: 'ipv4', address: '0.0.0.0', prefix: 0, gateway: net.v4.gateway },
            { family: 'ipv6', address: '::', prefix: 0, gateway: net.v6.gateway },
          ],
        },
      ],
      metadata: { agentId: 'agent-lxcr-hook', stemcellCid: 'lxcr-sc', volumes: [], disks: [], macs: [], prefixes: [], reservations: [], tags: {} },
    };
    domainFile = join(dir, 'domain.xml');
    writeFileSync(domainFile, renderLxcDomain(spec));
    quietly('destroy', NAME);
    quietly('undefine', NAME);
    virsh('define', domainFile);
  });

  afterAll(() => {
    quietly('destroy', NAME);
    quietly('undefine', NAME);
    removeNetwork('lxcr-net');
  });

  test('starts from the overlay: libvirt sets both addresses and default routes, the agent reads its settings file', async () => {
    virsh('start', NAME);
    expect(libvirtdMounts()).toHaveLength(1);
    expect(libvirtdMounts()[0]).toMatch(/ - overlay overlay .*lowerdir=.*lxcr-sc,upperdir=.*lxcr-hook-vm\.root\/upper/);
    const r = await readContainerReport(reportPath(), 30_000);
    expect(r.agent_id).toBe('agent-lxcr-hook');
    expect(r.settings_source).toBe('settings-file');
    expect(r.errors).toEqual([]);
    expect(r.nics).toEqual([{ name: 'eth0', mac: '52:54:00:6e:00:20', addresses: expect.arrayContaining(['198.18.210.20/24', 'fd00:210::20/64']) }]);
    expect(r.routes.ipv4).toContain('default via 198.18.210.1 dev eth0 metric 1');
    expect(r.routes.ipv6).toContain('default via fd00:210::1 dev eth0 metric 1');
    expect(r.networks.v4!.mode).toBe('preconfigured');
    // the stemcell directory was not written: the container's files live in upper
    expect(existsSync(join(dir, 'lxcr-sc', CONTAINER_REPORT_FILE))).toBe(false);
  });

  test('the host name libvirt gives the container (its domain name) resolves inside it: prepare named it in /etc/hosts', () => {
    const hosts = readFileSync(join(root.base, 'upper/etc/hosts'), 'utf8');
    expect(hosts.split('\n').filter((l) => /^127\.0\.0\.1\s+lxcr-hook-vm(\s|$)/.test(l))).toHaveLength(1);
    // written through the overlay: the stemcell's directory (which has no /etc/hosts) is unchanged
    expect(existsSync(join(dir, 'lxcr-sc/etc/hosts'))).toBe(false);
  });

  test('prepare again while mounted (as after a libvirtd restart) leaves the mount as it is', () => {
    const pid = primaryLibvirtdPid();
    const r = spawnSync('nsenter', ['-t', pid, '-m', 'sh', INSTALLED, NAME, 'prepare', 'begin', '-'], { input: virsh('dumpxml', NAME), encoding: 'utf8' });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(libvirtdMounts()).toHaveLength(1);
  });

  test('a directory renamed into the disk directory appears in the running container (live attach)', async () => {
    const disk = join(dir, 'lxcr-disk-1');
    mkdirSync(disk);
    writeFileSync(join(disk, 'data'), 'kept\n');
    renameSync(disk, join(disks, 'lxcr-disk-1'));
    // the settings file is rewritten in place: a replaced file would stay hidden behind
    // the overlay's cached entry
    const settings = join(root.base, 'upper', CONTAINER_SETTINGS_FILE);
    const s = JSON.parse(readFileSync(settings, 'utf8'));
    s.disks.persistent = { 'lxcr-disk-1': '/warden-cpi-dev/lxcr-disk-1' };
    writeFileSync(settings, JSON.stringify(s));
    const r = await readContainerReport(reportPath(), 30_000, (x) => Object.keys(x.disks.persistent).length > 0);
    expect(r.disks.persistent['lxcr-disk-1']).toEqual({ hint: '/warden-cpi-dev/lxcr-disk-1', device: '/warden-cpi-dev/lxcr-disk-1', resolved_by: 'directory' });
    expect(r.disk_files['lxcr-disk-1']).toEqual({ data: 'kept', 'written-by': 'agent-lxcr-hook' });
    expect(readFileSync(join(disks, 'lxcr-disk-1/written-by'), 'utf8')).toBe('agent-lxcr-hook\n');
  });

  test('stop unmounts the root (release); start mounts it again and the container runs on its old upper layer', async () => {
    virsh('destroy', NAME);
    expect(libvirtdMounts()).toEqual([]);
    rmSync(reportPath());
    virsh('start', NAME);
    expect(libvirtdMounts()).toHaveLength(1);
    const r = await readContainerReport(reportPath(), 30_000);
    expect(r.agent_id).toBe('agent-lxcr-hook');
    // the settings rewritten while it ran are what it boots with now
    expect(Object.keys(r.disks.persistent)).toEqual(['lxcr-disk-1']);
    // a second start does not name the host twice
    const hosts = readFileSync(join(root.base, 'upper/etc/hosts'), 'utf8');
    expect(hosts.split('\n').filter((l) => /\slxcr-hook-vm(\s|$)/.test(l))).toHaveLength(1);
  });

  // What a container can leave in its own tree for the next prepare (it runs as root
  // inside): each case is planted while the container is stopped, then it is started.
  // The hook must neither write outside the tree, nor block or read without bound.
  const hostileHosts: { name: string; plant: (etc: string, hostDir: string) => void; check: (etc: string, hostDir: string) => void }[] = [
    {
      name: '/etc/hosts a link to a host file',
      plant: (etc, hostDir) => symlinkSync(join(hostDir, 'file'), join(etc, 'hosts')),
      check: (_etc, hostDir) => expect(readFileSync(join(hostDir, 'file'), 'utf8')).toBe('host data\n'),
    },
    {
      name: '/etc/hosts a second name (hard link) of a host file',
      plant: (etc, hostDir) => linkSync(join(hostDir, 'file'), join(etc, 'hosts')),
      check: (_etc, hostDir) => expect(readFileSync(join(hostDir, 'file'), 'utf8')).toBe('host data\n'),
    },
    {
      name: '/etc/hosts a FIFO (opening it would block the start)',
      plant: (etc) => execFileSync('mkfifo', [join(etc, 'hosts')]),
      check: (etc) => expect(lstatSync(join(etc, 'hosts')).isFIFO()).toBe(true),
    },
    {
      name: '/etc/hosts a sparse 2 GiB file without a newline (reading it would stall the start)',
      plant: (etc) => {
        writeFileSync(join(etc, 'hosts'), '');
        truncateSync(join(etc, 'hosts'), 2 * 1024 ** 3);
      },
      check: (etc) => expect(statSync(join(etc, 'hosts')).size).toBe(2 * 1024 ** 3),
    },
    {
      name: '/etc a link to a host directory',
      plant: (etc, hostDir) => {
        renameSync(etc, `${etc}.away`);
        symlinkSync(hostDir, etc);
      },
      check: (_etc, hostDir) => expect(readdirSync(hostDir)).toEqual(['file']),
    },
  ];

  test.each(hostileHosts)('prepare leaves a planted file alone and the container starts: $name', async ({ plant, check }) => {
    quietly('destroy', NAME);
    const etc = join(root.base, 'upper/etc');
    const hostDir = join(dir, 'lxcr-host-dir');
    rmSync(hostDir, { recursive: true, force: true });
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, 'file'), 'host data\n');
    rmSync(join(etc, 'hosts'), { force: true });
    plant(etc, hostDir);
    try {
      virsh('start', NAME);
      check(etc, hostDir);
      expect(virsh('domstate', NAME).trim()).toBe('running');
    } finally {
      quietly('destroy', NAME);
      if (lstatSync(etc).isSymbolicLink()) {
        rmSync(etc);
        renameSync(`${etc}.away`, etc);
      }
      rmSync(join(etc, 'hosts'), { force: true });
    }
  });

  test('a last line without its newline keeps its own line; a name in a comment does not count', async () => {
    quietly('destroy', NAME);
    const hosts = join(root.base, 'upper/etc/hosts');
    writeFileSync(hosts, '127.0.0.1 localhost # lxcr-hook-vm');
    rmSync(reportPath(), { force: true });
    try {
      virsh('start', NAME);
      await readContainerReport(reportPath(), 30_000);
      expect(readFileSync(hosts, 'utf8')).toMatch(/^127\.0\.0\.1 localhost # lxcr-hook-vm\n127\.0\.0\.1 lxcr-hook-vm # [^\n]*\n$/);
    } finally {
      quietly('destroy', NAME);
    }
  });

  test('a start whose stemcell layer is gone fails and says why', () => {
    quietly('destroy', NAME);
    renameSync(join(dir, 'lxcr-sc'), join(dir, 'lxcr-sc-away'));
    try {
      expect(() => virsh('start', NAME)).toThrow(/root filesystem layer .* is missing/);
      expect(libvirtdMounts()).toEqual([]);
    } finally {
      renameSync(join(dir, 'lxcr-sc-away'), join(dir, 'lxcr-sc'));
    }
  });
});
