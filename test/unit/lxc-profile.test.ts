// The LXC backend's pure decisions: which NIC gets which addresses and default routes
// from libvirt, which networks the settings mark preconfigured, the domain create_vm
// defines (also behind `render vm`), the settings file rewritten in place, and the
// refusal of URIs that are not local. The containers themselves are in
// test/e2e/lxc.test.ts and test/integration/lxc-hook.test.ts.
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { decodeVmCloudProperties } from '../../src/driver/shared/cloud-properties.js';
import { planVmNetworks } from '../../src/driver/shared/vms.js';
import { containerInterfaces, preconfiguredNetworks } from '../../src/driver/lxc/networking.js';
import { buildContainerSettings, openSettingsFile, rewriteSettings } from '../../src/driver/lxc/settings.js';
import { checkLocal, lxcProfile } from '../../src/driver/lxc/profile.js';
import { rootPaths } from '../../src/driver/lxc/layout.js';
import { renderDomain, parseDomain } from '../../src/xml/index.js';
import type { Host } from '../../src/driver/shared/host.js';
import type { AgentSettings } from '../../src/agent/index.js';
import { requireBundle, ROOT, runCpi, writeConfig } from '../helpers/cpi.js';

const config = ConfigSchema.parse(JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')));
const host = { config } as unknown as Host;
const v4 = (host: number, extra: Record<string, unknown> = {}) => ({ type: 'manual', ip: `198.18.210.${host}`, netmask: '255.255.255.0', gateway: '198.18.210.1', cloud_properties: {}, ...extra });
const v6 = (host: number, extra: Record<string, unknown> = {}) => ({ type: 'manual', ip: `fd00:210::${host}`, netmask: 'ffff:ffff:ffff:ffff::', gateway: 'fd00:210::1', cloud_properties: {}, ...extra });

describe('container NICs', () => {
  it('dual stack on one NIC: both addresses, and a default route per family from the default networks', () => {
    const plan = planVmNetworks({ a: v4(10, { nic_group: 'g', default: ['dns', 'gateway'] }), b: v6(10, { nic_group: 'g', default: ['gateway'] }) }, config);
    const [nic, ...rest] = containerInterfaces(plan);
    expect(rest).toEqual([]);
    expect(nic).toEqual({
      kind: 'network',
      network: 'bosh-cpi',
      mac: plan.nics[0]!.mac,
      ips: [
        { family: 'ipv4', address: '198.18.210.10', prefix: 24 },
        { family: 'ipv6', address: 'fd00:210::10', prefix: 64 },
      ],
      routes: [
        { family: 'ipv4', address: '0.0.0.0', prefix: 0, gateway: '198.18.210.1' },
        { family: 'ipv6', address: '::', prefix: 0, gateway: 'fd00:210::1' },
      ],
    });
  });

  it('two NICs: only the network the director made default for the gateway gets the default route', () => {
    const plan = planVmNetworks({ a: v4(10, { default: [] }), b: v4(11, { default: ['gateway', 'dns'], gateway: '198.18.210.2' }) }, config);
    expect(containerInterfaces(plan).map((n) => n.routes)).toEqual([[], [{ family: 'ipv4', address: '0.0.0.0', prefix: 0, gateway: '198.18.210.2' }]]);
  });

  it('a dynamic network: no addresses from libvirt, and the agent configures it (not preconfigured)', () => {
    const plan = planVmNetworks({ d: { type: 'dynamic', cloud_properties: {} }, s: v4(12, { default: ['gateway'] }) }, config);
    const nics = containerInterfaces(plan);
    const dyn = nics.find((n) => n.mac === plan.agentNetworks.d!.mac)!;
    expect(dyn.ips).toBeUndefined();
    expect(dyn.routes).toBeUndefined();
    expect([...preconfiguredNetworks(plan)]).toEqual(['s']);
    const settings = buildContainerSettings(host, { vm: 'vm-x', agentId: 'a', networks: plan.agentNetworks, preconfigured: preconfiguredNetworks(plan), env: {}, persistent: {} });
    expect(settings.networks.s).toMatchObject({ preconfigured: true, mac: plan.agentNetworks.s!.mac });
    expect(settings.networks.d).not.toHaveProperty('preconfigured');
    expect(settings.disks).toEqual({ system: '', persistent: {} });
  });
});

describe('the container create_vm defines (and render vm shows)', () => {
  it('mounts the overlay mount point at /, the ephemeral and disk directories, and runs /sbin/init', () => {
    const plan = planVmNetworks({ a: v4(10) }, config);
    const shape = decodeVmCloudProperties({ cpu: 2, ram: 300 }, config);
    const { spec, notes } = lxcProfile.vms.preview({ config, vm: 'vm-1', agentId: 'agent', stemcellCid: 'sc-1', shape, plan });
    const parsed = parseDomain(renderDomain(spec));
    expect(parsed.filesystems).toEqual([
      { source: '/var/lib/libvirt/bosh-cpi/vm-1.root/rootfs', target: '/' },
      { source: '/var/lib/libvirt/bosh-cpi/vm-1.ephemeral', target: '/var/vcap/data' },
      { source: '/var/lib/libvirt/bosh-cpi/vm-1.disks', target: '/warden-cpi-dev' },
    ]);
    expect(spec).toMatchObject({ type: 'lxc', init: '/sbin/init', memoryMiB: 300, vcpus: 2 });
    expect(spec.metadata?.volumes).toEqual(['vm-1.root', 'vm-1.ephemeral', 'vm-1.disks']);
    expect(notes.join('\n')).toContain('overlay');
    // the hook finds the layers next to the mount point
    expect(rootPaths('/p', 'vm-1')).toMatchObject({ rootfs: '/p/vm-1.root/rootfs', lower: '/p/vm-1.root/lower', upper: '/p/vm-1.root/upper', work: '/p/vm-1.root/work' });
  });
});

describe('the settings file', () => {
  const SETTINGS = 'var/vcap/bosh/warden-cpi-agent-env.json';
  const rewrite = async (upper: string, change: (s: AgentSettings) => void): Promise<void> => {
    const fh = await openSettingsFile(upper, 'attach_disk');
    try {
      await rewriteSettings(fh, 'attach_disk', change);
    } finally {
      await fh.close();
    }
  };
  const upperWith = (content: string): { upper: string; file: string } => {
    const upper = mkdtempSync(join(tmpdir(), 'lxcr-upper-'));
    mkdirSync(join(upper, 'var/vcap/bosh'), { recursive: true });
    writeFileSync(join(upper, SETTINGS), content);
    return { upper, file: join(upper, SETTINGS) };
  };

  it('is rewritten in place: same inode (a running container would not see a replaced file), shorter content truncated', async () => {
    const { upper, file } = upperWith(JSON.stringify({ agent_id: 'a', disks: { system: '', persistent: { 'disk-1': '/warden-cpi-dev/disk-1', 'disk-2': '/warden-cpi-dev/disk-2' } } }));
    const inode = statSync(file).ino;
    await rewrite(upper, (s) => {
      delete s.disks.persistent['disk-2'];
    });
    expect(statSync(file).ino).toBe(inode);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ agent_id: 'a', disks: { system: '', persistent: { 'disk-1': '/warden-cpi-dev/disk-1' } } });
    rmSync(upper, { recursive: true, force: true });
  });

  it('is not rewritten through a link the container made: the host file it points at stays as it was', async () => {
    const content = JSON.stringify({ disks: { persistent: {} }, host: 'file' });
    const { upper } = upperWith(content);
    const outside = mkdtempSync(join(tmpdir(), 'lxcr-host-'));
    const hostFile = join(outside, 'warden-cpi-agent-env.json');
    writeFileSync(hostFile, content);
    // the file itself a link
    rmSync(join(upper, SETTINGS));
    symlinkSync(hostFile, join(upper, SETTINGS));
    await expect(rewrite(upper, (s) => { s.disks.persistent = { x: 'y' }; })).rejects.toThrow(/\/var\/vcap\/bosh\/warden-cpi-agent-env.json is a symbolic link/);
    // a directory on the way a link
    rmSync(join(upper, 'var/vcap/bosh'), { recursive: true });
    symlinkSync(outside, join(upper, 'var/vcap/bosh'));
    await expect(rewrite(upper, (s) => { s.disks.persistent = { x: 'y' }; })).rejects.toThrow(/\/var\/vcap\/bosh is a symbolic link \(changed inside the container\); nothing was changed/);
    // a hard link to a file elsewhere (same file system)
    rmSync(join(upper, 'var/vcap/bosh'));
    mkdirSync(join(upper, 'var/vcap/bosh'));
    const sameFs = join(upper, 'elsewhere.json');
    writeFileSync(sameFs, content);
    linkSync(sameFs, join(upper, SETTINGS));
    await expect(rewrite(upper, (s) => { s.disks.persistent = { x: 'y' }; })).rejects.toThrow(/is a file with 2 names/);
    expect(readFileSync(hostFile, 'utf8')).toBe(content);
    expect(readFileSync(sameFs, 'utf8')).toBe(content);
    rmSync(upper, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('a FIFO, a directory, a whiteout or a device in the file\'s place is refused at once, never opened', async () => {
    const { upper } = upperWith('{}');
    rmSync(join(upper, SETTINGS));
    execFileSync('mkfifo', [join(upper, SETTINGS)]);
    await expect(rewrite(upper, () => undefined)).rejects.toThrow(/warden-cpi-agent-env.json is a FIFO/);
    rmSync(join(upper, SETTINGS));
    mkdirSync(join(upper, SETTINGS));
    await expect(rewrite(upper, () => undefined)).rejects.toThrow(/warden-cpi-agent-env.json is a directory/);
    rmSync(join(upper, SETTINGS), { recursive: true });
    // device nodes (the CPI runs as root, as the container does): a whiteout (0:0) and /dev/null's numbers
    execFileSync('mknod', [join(upper, SETTINGS), 'c', '0', '0']);
    await expect(rewrite(upper, () => undefined)).rejects.toThrow(/warden-cpi-agent-env.json is deleted \(an overlay whiteout\)/);
    rmSync(join(upper, SETTINGS));
    execFileSync('mknod', [join(upper, SETTINGS), 'c', '1', '3']);
    await expect(rewrite(upper, () => undefined)).rejects.toThrow(/warden-cpi-agent-env.json is a character device/);
    rmSync(upper, { recursive: true, force: true });
  });

  it('content that is not the settings JSON is refused naming the file', async () => {
    const { upper } = upperWith('not json');
    await expect(rewrite(upper, () => undefined)).rejects.toThrow(/settings file \/var\/vcap\/bosh\/warden-cpi-agent-env.json in the container is not the settings JSON/);
    rmSync(upper, { recursive: true, force: true });
  });
});

describe('local URIs only', () => {
  it.each(['lxc:///', 'lxc+unix:///', 'lxc+unix:///?socket=/run/libvirt/libvirt-sock'])('%s is local', (uri) => {
    expect(() => checkLocal(uri)).not.toThrow();
  });
  it.each(['lxc+ssh://root@host/', 'lxc+tcp://host/', 'lxc+tls://host/', 'lxc://host/'])('%s is refused, naming the field, the value and why', (uri) => {
    expect(() => checkLocal(uri)).toThrow(new RegExp(`libvirt\\.uri "${uri.replace(/[+?.]/g, '\\$&')}" is not local: the lxc backend writes .* into the storage pool's directory itself`));
  });
});

describe('bin/cpi with a remote lxc URI', () => {
  it('refuses every call before connecting, with the reason', async () => {
    requireBundle();
    const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')) as Record<string, unknown>;
    // an unreachable host: the answer must come from the check, not from a connection attempt
    const path = writeConfig({ ...base, libvirt: { uri: 'lxc+ssh://root@192.0.2.1/' } });
    const run = await runCpi({ method: 'has_vm', arguments: ['vm-1'], context: { director_uuid: 'x' } }, { config: path });
    expect(run.response.error).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining('is not local: the lxc backend writes') });
  });
});
