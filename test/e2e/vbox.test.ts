// The vbox backend end to end over the SIMULATED VirtualBox: bin/cpi with
// fixtures/config/vbox.json (its own name prefix and storage directory) against libvirt's
// REAL vbox driver in the libvirtd of scripts/vbox-host.sh, which loads the simulated
// VirtualBox 6.1 of fixtures/vbox-sim — never a real VirtualBox. After each call the test
// reads what the simulated VirtualBox holds (its state file, state.json) and the files
// in the storage directory: disks on SATA ports, the settings ISO, NICs on the host-only
// network, the restart of a cold attach, nothing left after the deletes.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, request, runCpi, writeConfig } from '../helpers/cpi.js';
import { scratchDir } from '../helpers/scratch.js';
import { attachments, filesUnder, machine, ours, removeOurs, sim, VBOX_DAEMON_DIR, type SimMachine } from '../helpers/vbox-sim.js';
import { tinyStemcell } from '../helpers/driver-fixtures.js';
import { vdiUuid } from '../../src/driver/vbox/stemcell-image.js';
import { vboxDiskByIdPath } from '../../src/driver/vbox/disk-hints.js';

const SCRIPT = join(ROOT, 'scripts', 'vbox-host.sh');
const DIR = VBOX_DAEMON_DIR;
const PREFIX = 't-e2evb-';
const STORE = join(DIR, `${PREFIX}store`);


let uri = '';
let config = '';
const scratch = scratchDir(PREFIX);

async function call(method: string, args: unknown[], cfg = config, env: NodeJS.ProcessEnv = {}) {
  const run = await runCpi(request(method, args), { config: cfg, env });
  return run.response;
}
async function ok(method: string, args: unknown[]): Promise<{ result: unknown; log: string }> {
  const r = await call(method, args);
  if (r.error) throw new Error(`${method} failed: ${r.error.type}: ${r.error.message}`);
  return { result: r.result, log: r.log };
}

function cleanup(): void {
  if (uri) removeOurs(uri, PREFIX, STORE);
}

/** A general-ovf image whose OVF asks for EFI (as vSphere stemcells do) or for BIOS. */
function ovfImage(firmware: 'efi' | 'bios'): string {
  const dir = scratchDir(`${PREFIX}ovf-`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', join(dir, 'image-disk1.vmdk'), '16M']);
  writeFileSync(join(dir, 'image.ovf'), `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="image-disk1.vmdk" ovf:id="file1"/></References>
  <DiskSection><Info>disks</Info><Disk ovf:capacity="16" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>vm</Info><VirtualHardwareSection><Info>hw</Info>
    <Item><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>6</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="${firmware}"/>
  </VirtualHardwareSection></VirtualSystem>
</Envelope>
`);
  execFileSync('tar', ['czf', 'image', 'image.ovf', 'image-disk1.vmdk'], { cwd: dir });
  return join(dir, 'image');
}

beforeAll(() => {
  execFileSync(SCRIPT, ['start'], { stdio: ['ignore', 'ignore', 'pipe'] });
  uri = execFileSync(SCRIPT, ['uri'], { encoding: 'utf8' }).trim();
  cleanup();
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/vbox.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  // The fixture reaches this daemon as it is; only the prefix and directory are the test's.
  expect(base.libvirt!.uri).toBe(uri);
  config = writeConfig({ ...base, name_prefix: PREFIX, storage: { ...base.storage, path: STORE }, vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64, reboot_timeout_seconds: 2 } });
}, 120_000);

afterAll(() => {
  cleanup();
  rmSync(scratch, { recursive: true, force: true });
}, 120_000);

describe('the vbox backend over the simulated VirtualBox (bin/cpi, fixtures/config/vbox.json)', () => {
  let stemcell = '';
  let vm = '';
  let disk = '';
  const macs = ['52:54:00:e2:00:01', '52:54:00:e2:00:02', '52:54:00:e2:00:03'];
  const adapters = [['HostOnly', 'vboxnet0', null], ['HostOnly', 'vboxnet0', null], ['Bridged', null, 'eth0']].map(([a, h, b], i) => [a, h, b, macs[i]!.replace(/:/g, '').toUpperCase()]);
  const adaptersOf = (m: SimMachine) => m.networkAdapters.map((n) => [n.attachment, n.hostOnlyInterface, n.bridgedInterface, n.mac]);

  it('create_stemcell writes the stemcell as a VDI into the storage directory (VirtualBox does not see it yet)', async () => {
    stemcell = String((await ok('create_stemcell', [tinyStemcell(), { name: 'e2e', version: '1', disk_format: 'qcow2' }])).result);
    const vdi = join(STORE, 'stemcells', `${stemcell}.vdi`);
    expect(existsSync(vdi)).toBe(true);
    expect(await vdiUuid(vdi)).toMatch(/^[0-9a-f-]{36}$/);
    expect(ours(sim(), PREFIX, STORE)).toEqual({ machines: [], hardDisks: [] });
  }, 120_000);

  it('create_vm defines a headless machine: root and ephemeral VDIs on SATA 0/1, the settings ISO on port 2, NICs on vboxnet0 (and one bridged) with the planned MACs', async () => {
    const networks = {
      a: { type: 'manual', ip: '198.18.240.20', netmask: '255.255.255.0', gateway: '198.18.240.1', default: ['dns', 'gateway'], mac: macs[0], cloud_properties: { name: 'vboxnet0' } },
      b: { type: 'manual', ip: '198.18.240.21', netmask: '255.255.255.0', gateway: '198.18.240.1', mac: macs[1], cloud_properties: { name: 'vboxnet0' } },
      c: { type: 'dynamic', mac: macs[2], cloud_properties: { bridge: 'eth0' } },
    };
    const { result, log } = await ok('create_vm', ['agent-e2e', stemcell, { cpu: 2, ram: 256 }, networks, null, {}]);
    vm = (result as [string])[0];
    expect(log).toMatch(/the root disk is a full copy of the stemcell \([\d.]+ [KM]iB written in \d+ ms\)/);
    expect(log).toMatch(/static addresses reach a vbox VM through the agent's settings only/);
    const m = machine(vm)!;
    expect(m).toBeDefined();
    expect(m).toMatchObject({ state: 'Running', frontend: 'headless', memoryMB: 256, cpus: 2, firmware: 'BIOS' });
    const att = attachments(m);
    const vms = join(STORE, 'vms');
    expect(att.filter((a) => a.type === 'HardDisk').map((a) => [a.bus, a.port, a.medium])).toEqual([
      ['SATA', 0, join(vms, `${vm}.root.vdi`)],
      ['SATA', 1, join(vms, `${vm}.ephemeral.vdi`)],
    ]);
    expect(att.filter((a) => a.type === 'DVD').map((a) => [a.bus, a.port, a.medium])).toEqual([['SATA', 2, join(vms, `${vm}.settings.iso`)]]);
    // The root disk is its own full copy (its own VDI UUID), not the stemcell's file.
    expect(await vdiUuid(join(vms, `${vm}.root.vdi`))).not.toBe(await vdiUuid(join(STORE, 'stemcells', `${stemcell}.vdi`)));
    expect(adaptersOf(m)).toEqual(adapters);
    // The settings ISO (label config-2) carries the agent's settings: the static addresses
    // with their MACs, the system disk and the ephemeral disk by VirtualBox's by-id name.
    const iso = join(vms, `${vm}.settings.iso`);
    expect(execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' })).toMatch(/Volume id: config-2/);
    const settings = JSON.parse(execFileSync('isoinfo', ['-R', '-i', iso, '-x', '/openstack/latest/user_data'], { encoding: 'utf8' })) as {
      agent_id: string; disks: { system: string; ephemeral: { path: string } }; networks: Record<string, { ip: string; mac: string }>;
    };
    expect(settings.agent_id).toBe('agent-e2e');
    expect(settings.disks.system).toBe('/dev/sda');
    expect(settings.disks.ephemeral).toEqual({ path: vboxDiskByIdPath(await vdiUuid(join(vms, `${vm}.ephemeral.vdi`))) });
    expect(Object.fromEntries(Object.entries(settings.networks).map(([k, n]) => [k, [n.ip, n.mac]]))).toEqual({ a: ['198.18.240.20', macs[0]], b: ['198.18.240.21', macs[1]], c: [undefined, macs[2]] });
    // The VM's record is a file (the driver stores no metadata).
    const record = JSON.parse(readFileSync(join(STORE, 'state', 'records', `${vm}.json`), 'utf8')) as { agentId: string; macs: string[]; creating?: unknown };
    expect(record).toMatchObject({ agentId: 'agent-e2e', macs });
    expect(record.creating).toBeUndefined();
  }, 120_000);

  it('attach_disk redefines the stopped machine with the disk on SATA port 3, starts it again, says so, and answers the by-id hint', async () => {
    disk = String((await ok('create_disk', [128, {}, vm])).result);
    const path = join(STORE, 'disks', `${disk}.vdi`);
    expect(existsSync(path)).toBe(true);
    const uuidBefore = machine(vm)!.uuid;
    const { result, log } = await ok('attach_disk', [vm, disk]);
    expect(result).toEqual({ path: vboxDiskByIdPath(await vdiUuid(path)) });
    expect(log).toMatch(new RegExp(`VM ${vm} was stopped and started again to attach .*SATA port 3.*cannot hot-plug disks`));
    const m = machine(vm)!;
    expect(m.uuid).toBe(uuidBefore);
    expect(m.state).toBe('Running');
    expect(m.frontend).toBe('headless');
    expect(attachments(m).map((a) => [a.port, a.type, a.medium])).toEqual([
      [0, 'HardDisk', join(STORE, 'vms', `${vm}.root.vdi`)],
      [1, 'HardDisk', join(STORE, 'vms', `${vm}.ephemeral.vdi`)],
      [2, 'DVD', join(STORE, 'vms', `${vm}.settings.iso`)],
      [3, 'HardDisk', path],
    ]);
    expect(adaptersOf(m)).toEqual(adapters);
    expect((await ok('get_disks', [vm])).result).toEqual([disk]);
    // delete_disk is refused while the machine has it.
    const refused = await call('delete_disk', [disk]);
    expect(refused.error).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining(`attached to VM ${vm}`) });
    expect(existsSync(path)).toBe(true);
  }, 120_000);

  it('detach_disk redefines it without the disk and starts it again', async () => {
    const { log } = await ok('detach_disk', [vm, disk]);
    expect(log).toMatch(/stopped and started again to detach/);
    const m = machine(vm)!;
    expect(m.state).toBe('Running');
    expect(attachments(m).map((a) => a.port)).toEqual([0, 1, 2]);
    expect((await ok('get_disks', [vm])).result).toEqual([]);
    expect((await call('detach_disk', [vm, disk])).error?.type).toBe('Bosh::Clouds::DiskNotAttached');
  }, 120_000);

  it('a cold attach interrupted between the undefine and the define is finished by the next call on the VM', async () => {
    // The fault stops attach_disk right after the undefine, as a kill there would: the
    // machine exists nowhere but in state/redefining/<vm>.json.
    const failed = await call('attach_disk', [vm, disk], config, { BOSH_LIBVIRT_CPI_FAULTS: 'vbox-redefine:after-undefine' });
    expect(failed.error?.message).toMatch(/injected fault at vbox-redefine:after-undefine/);
    expect(machine(vm)).toBeUndefined();
    expect(existsSync(join(STORE, 'state', 'redefining', `${vm}.json`))).toBe(true);
    // Any call that looks the VM up defines it again as it was, and starts it (it ran).
    expect((await ok('has_vm', [vm])).result).toBe(true);
    const m = machine(vm)!;
    expect(m.state).toBe('Running');
    expect(attachments(m).map((a) => a.port)).toEqual([0, 1, 2]);
    expect(adaptersOf(m)).toEqual(adapters);
    expect(existsSync(join(STORE, 'state', 'redefining', `${vm}.json`))).toBe(false);
    expect((await ok('get_disks', [vm])).result).toEqual([]);
  }, 120_000);

  it('snapshot_disk and resize_disk are NotSupported naming the backend', async () => {
    for (const [method, args] of [['snapshot_disk', [disk, {}]], ['resize_disk', [disk, 256]]] as const) {
      const r = await call(method, [...args]);
      expect(r.error).toMatchObject({ type: 'Bosh::Clouds::NotSupported', message: expect.stringContaining(`${method} is not supported by the vbox backend`) });
    }
  }, 120_000);

  it('delete_vm, delete_disk and delete_stemcell leave no machine, no hard disk and no file behind', async () => {
    await ok('delete_vm', [vm]);
    await ok('delete_disk', [disk]);
    await ok('delete_stemcell', [stemcell]);
    expect(ours(sim(), PREFIX, STORE)).toEqual({ machines: [], hardDisks: [] });
    expect(filesUnder(STORE)).toEqual([]);
    // libvirt cannot close DVD images (its volume delete takes hard disks only): the
    // settings ISO's registry entry stays, its file gone, until the daemon restarts
    // (VirtualBox would list it as inaccessible). It is the only trace, and it is told apart.
    const dvds = sim().media.filter((m) => m.location.startsWith(STORE));
    expect(dvds.every((m) => m.deviceType === 'DVD' && m.machines.length === 0 && !existsSync(m.location))).toBe(true);
    expect((await call('has_vm', [vm])).result).toBe(false);
    expect((await call('delete_vm', [vm])).error?.type).toBe('Bosh::Clouds::VMNotFound');
  }, 120_000);

  it('serialises parallel calls on the host: four create_vm at once all make their own machine', async () => {
    // libvirt's vbox driver shares one VirtualBox session across threads: parallel
    // defines collided without the host lock (fixtures/vbox-sim README: 4 of 6 failed).
    const sc = String((await ok('create_stemcell', [tinyStemcell(), { name: 'e2e-par', version: '1' }])).result);
    const answers = await Promise.all([0, 1, 2, 3].map((i) => call('create_vm', [`agent-par-${i}`, sc, {}, { d: { type: 'dynamic', cloud_properties: { name: 'vboxnet0' } } }, null, {}])));
    const errors = answers.filter((a) => a.error).map((a) => `${a.error!.type}: ${a.error!.message}`);
    const made = answers.filter((a) => !a.error).map((a) => (a.result as [string])[0]);
    try {
      expect(errors).toEqual([]);
      expect(new Set(made).size).toBe(4);
      for (const name of made) {
        const m = machine(name)!;
        expect(m.state).toBe('Running');
        expect(attachments(m).map((a) => a.medium)).toEqual([`${name}.root.vdi`, `${name}.ephemeral.vdi`, `${name}.settings.iso`].map((f) => join(STORE, 'vms', f)));
      }
    } finally {
      for (const name of made) await call('delete_vm', [name]);
      await call('delete_stemcell', [sc]);
    }
    expect(ours(sim(), PREFIX, STORE)).toEqual({ machines: [], hardDisks: [] });
  }, 300_000);

  it('imports a BIOS OVF, and refuses an EFI OVF stemcell at create_stemcell, saying the driver cannot select EFI, leaving no file', async () => {
    // A BIOS OVF imports (general-ovf), and goes again.
    const bios = String((await ok('create_stemcell', [ovfImage('bios'), { name: 'general', version: '1', disk_format: 'ovf' }])).result);
    expect(existsSync(join(STORE, 'stemcells', `${bios}.vdi`))).toBe(true);
    await ok('delete_stemcell', [bios]);
    const r = await call('create_stemcell', [ovfImage('efi'), { name: 'vsphere', version: '1' }]);
    expect(r.error).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringMatching(/EFI firmware.*libvirt's VirtualBox driver cannot select EFI/) });
    expect(filesUnder(join(STORE, 'stemcells'))).toEqual([]);
    expect(filesUnder(join(STORE, 'state', 'tags'))).toEqual([]);
  }, 120_000);

  it('refuses a vbox+tls URI before connecting, naming it (it reaches libvirt, not the files; vbox+ssh: test/e2e/vbox-ssh.test.ts)', async () => {
    const base = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    const remote = writeConfig({ ...base, libvirt: { uri: 'vbox+tls://vbox-host.invalid/session' } });
    const r = await call('create_disk', [64, {}, null], remote);
    expect(r.error).toMatchObject({ type: 'Bosh::Clouds::NotSupported', message: expect.stringContaining('libvirt.uri "vbox+tls://vbox-host.invalid/session" is not local and not ssh') });
  }, 120_000);
});
