// vbox persistent disks: VDI files in <storage.path>/disks made by qemu-img (libvirt
// 9.0's vbox volume create passes the size in MiB where VirtualBox wants bytes), attached
// COLD. The driver takes no disk hot-plug (attach/detach device accept only shared
// folders) and its define never updates an existing machine, so attach_disk and
// detach_disk stop the VM (a graceful ACPI shutdown, bounded by
// vm.reboot_timeout_seconds, then a power-off), undefine it (VirtualBox keeps the media
// files), define it again from its own XML with the disk added on the next free SATA
// port (3 … 29) or removed, and start it again if it ran: the guest reboots, which the
// answer's log says. If the new define fails, the old definition is defined again.
//
// The hint is the path the agent of an OpenStack stemcell opens:
// /dev/disk/by-id/ata-VBOX_HARDDISK_<serial of the VDI's UUID> (disk-hints.ts).
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Host } from '../shared/host.js';
import type { DiskHint } from '../driver.js';
import type { DeviceChanges } from '../shared/profile.js';
import { requireDomain } from '../shared/vms.js';
import { domainsUsing } from '../shared/volume-users.js';
import { isCid, type DiskCID, type VMCID } from '../cids.js';
import { CloudError, DiskNotAttached, DiskNotFound, NoDiskSpace } from '../../errors.js';
import { DomainState, ErrorCode, isLibvirtError, type DomainRef } from '../../libvirt/index.js';
import { parseVboxDomain, renderVboxDomain, VBOX_LIMITS, VBOX_SATA_PORTS, type ParsedVboxDomain, type VboxDomainSpec, type VboxInterface, type VboxNicModel, VBOX_NIC_MODELS } from '../../xml/index.js';
import { vboxAtaSerial, vboxDiskByIdPath } from './disk-hints.js';
import { fileRecords, withFileLock } from './state.js';
import { diskPath, hostFiles, hostLayout, readJson } from './files.js';
import { maybeFail } from '../../util/faults.js';
import { makeVdi, vdiUuidOn } from './vms.js';
import { tellCaller } from '../../log/logger.js';

export async function createDisk(host: Host, cid: DiskCID, bytes: bigint): Promise<'made' | 'exists'> {
  const l = hostLayout(host);
  const path = diskPath(l, cid);
  // VDIs are sparse, so the directory may be overcommitted; a disk larger than its whole
  // filesystem, though, could never be filled and is refused (as qemu's pool check does).
  const fh = hostFiles(host);
  const total = await fh.fsTotalBytes(l.disks);
  if (bytes > total) {
    throw new NoDiskSpace(`Cannot create a ${bytes / (1024n * 1024n)} MiB disk: the filesystem of ${l.disks} (storage.path) holds ${total / (1024n * 1024n)} MiB in all`, { okToRetry: false });
  }
  try {
    await makeVdi(fh, path, { bytes }, `create_disk of ${cid}`);
    return 'made';
  } catch (e) {
    if ((e as { code?: string }).code === 'EEXIST') return 'exists';
    throw e;
  }
}

/** Where the disk is: null when its file does not exist, {vm} when a domain uses it, else 'pool' (detached). */
export async function locateDisk(host: Host, cid: DiskCID): Promise<{ vm: VMCID } | 'pool' | null> {
  if (!isCid(cid, 'disk', host.config.name_prefix)) return null;
  const path = diskPath(hostLayout(host), cid);
  if (!(await hostFiles(host).exists(path))) return null;
  const users = await domainsUsing(host, [path]);
  return users[0] !== undefined ? { vm: users[0] as VMCID } : 'pool';
}

export async function deleteDisk(host: Host, cid: DiskCID): Promise<void> {
  const path = diskPath(hostLayout(host), cid);
  await withFileLock(host, cid, async () => {
    if (!(await hostFiles(host).exists(path))) throw new DiskNotFound(`Disk ${cid} does not exist in ${hostLayout(host).disks}`);
    const users = await domainsUsing(host, [path]);
    if (users.length) throw new CloudError(`Disk ${cid} is attached to VM ${users.join(', ')}; detach it before deleting it`);
    await hostFiles(host).remove(path);
  }, `delete_disk of ${cid}`);
}

function diskCidOf(host: Host, file: string | undefined): DiskCID | undefined {
  if (!file) return undefined;
  const dir = hostLayout(host).disks;
  if (!file.startsWith(`${dir}/`) || !file.endsWith('.vdi')) return undefined;
  const cid = basename(file, '.vdi');
  return isCid(cid, 'disk', host.config.name_prefix) ? (cid as DiskCID) : undefined;
}

async function readDomain(host: Host, dom: DomainRef): Promise<ParsedVboxDomain> {
  return parseVboxDomain(await host.conn.domains.getXMLDesc(dom, 0));
}

export async function getDisks(host: Host, vm: VMCID): Promise<DiskCID[]> {
  const dom = await requireDomain(host, vm);
  const parsed = await readDomain(host, dom);
  return parsed.disks.filter((d) => d.device === 'disk').map((d) => diskCidOf(host, d.file)).filter((c): c is DiskCID => c !== undefined);
}

/** The domain's definition as a spec renderVboxDomain takes again (what a redefine keeps). */
export function specOf(parsed: ParsedVboxDomain): VboxDomainSpec {
  const disks = parsed.disks.filter((d) => d.device === 'disk' && d.bus === 'sata' && d.file).map((d) => ({ file: d.file!, port: d.port }));
  const cd = parsed.disks.find((d) => d.device === 'cdrom' && d.file);
  const interfaces: VboxInterface[] = parsed.interfaces.map((n) => {
    const model = (VBOX_NIC_MODELS as readonly string[]).find((m) => m.toLowerCase() === (n.model ?? '').toLowerCase()) as VboxNicModel | undefined;
    if (n.kind === 'bridge') return { kind: 'bridge', bridge: n.source, mac: n.mac, ...(model ? { model } : {}) };
    if (n.kind === 'network') return { kind: 'network', network: n.source, mac: n.mac, ...(model ? { model } : {}) };
    throw new CloudError(`VM ${parsed.name} has a ${JSON.stringify(n.kind)} interface (MAC ${n.mac}), which the vbox backend cannot carry over a redefine; it makes host-only (network) and bridged interfaces only`);
  });
  return {
    name: parsed.name,
    uuid: parsed.uuid,
    memoryMiB: Math.round((parsed.memoryKiB ?? 0) / 1024),
    vcpus: parsed.vcpus ?? 1,
    firmware: 'bios',
    disks,
    ...(cd ? { settings: cd.bus === 'ide' ? { file: cd.file!, bus: 'ide' as const } : { file: cd.file!, bus: 'sata' as const, port: cd.port } } : {}),
    interfaces,
  };
}

/** Stops a running VM: ACPI power button, a bounded wait, then power-off. */
async function stopVm(host: Host, dom: DomainRef): Promise<void> {
  const state = async () => (await host.conn.domains.getState(dom, 0)).state;
  await host.conn.domains.shutdown(dom, 0).catch((e: unknown) => host.log.warn({ err: String(e) }, 'ACPI shutdown request failed; powering off'));
  const deadline = Date.now() + host.config.vm.reboot_timeout_seconds * 1000;
  while (Date.now() < deadline && (await state()) !== DomainState.SHUTOFF) await sleep(250);
  if ((await state()) !== DomainState.SHUTOFF) {
    host.log.warn({ vm: dom.name }, `guest did not power off within ${host.config.vm.reboot_timeout_seconds}s (vm.reboot_timeout_seconds); powering it off`);
    await host.conn.domains.destroy(dom, 0).catch((e: unknown) => {
      if (!isLibvirtError(e, ErrorCode.OPERATION_INVALID)) throw e;
    });
  }
}

interface PendingRedefine {
  /** the definition before the change: what the director knows until the call answers */
  xml: string;
  running: boolean;
  at: string;
}

function pendingPath(host: Host, vm: string): string {
  return join(hostLayout(host).redefining, `${vm}.json`);
}

/**
 * The cold change: stop (if running), undefine, define `next`, start again if it ran.
 * A failed define puts the old definition back (and starts it if it ran). Between the
 * undefine and the define the machine exists nowhere but in state/redefining/<vm>.json,
 * written first: a call killed there leaves that file, and the next lookup of the VM
 * defines the old definition again (recoverRedefine). Returns whether the VM was restarted.
 */
async function redefine(host: Host, dom: DomainRef, before: VboxDomainSpec, next: VboxDomainSpec): Promise<boolean> {
  const nextXml = renderVboxDomain(next); // refused here, before anything changes
  const beforeXml = renderVboxDomain(before);
  const running = (await host.conn.domains.getState(dom, 0)).state !== DomainState.SHUTOFF;
  const pending = pendingPath(host, dom.name);
  await hostFiles(host).writeAtomic(pending, JSON.stringify({ xml: beforeXml, running, at: new Date().toISOString() } satisfies PendingRedefine));
  if (running) await stopVm(host, dom);
  await host.conn.domains.undefine(dom, 0);
  maybeFail('vbox-redefine:after-undefine');
  let ref: DomainRef;
  try {
    ref = await host.conn.domains.defineXML(nextXml, 0);
  } catch (e) {
    host.log.error({ vm: dom.name, err: String(e) }, 'the new definition was refused; defining the old one again');
    const back = await host.conn.domains.defineXML(beforeXml, 0);
    if (running) await host.conn.domains.create(back, 0);
    await hostFiles(host).remove(pending);
    throw e;
  }
  if (running) await host.conn.domains.create(ref, 0);
  await hostFiles(host).remove(pending);
  return running;
}

/**
 * Finishes a cold change a killed call left (redefine): the VM `name` is defined again
 * from its old definition when it is missing, and started when it ran before. Returns
 * the domain, or null when nothing was pending. Runs under the host lock (every call holds it).
 */
export async function recoverRedefine(host: Host, name: string, found: DomainRef | null): Promise<DomainRef | null> {
  if (!isCid(name, 'vm', host.config.name_prefix)) return found;
  const path = pendingPath(host, name);
  const pending = await readJson<PendingRedefine>(hostFiles(host), path).catch(() => null);
  if (!pending) return found;
  let dom = found;
  if (!dom) {
    dom = await host.conn.domains.defineXML(pending.xml, 0);
    host.log.warn({ vm: name, since: pending.at }, 'a cold disk change was interrupted after the undefine: the VM was defined again from its previous definition');
  }
  if (pending.running && (await host.conn.domains.getState(dom, 0)).state === DomainState.SHUTOFF) await host.conn.domains.create(dom, 0);
  await hostFiles(host).remove(path);
  return dom;
}

/** A SATA hard disk as libvirt device XML (what DeviceChanges take). */
export function sataDiskXml(file: string, port: number): string {
  const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;');
  return `<disk type='file' device='disk'><source file='${esc(file)}'/><target dev='sd' bus='sata'/><address type='drive' controller='0' bus='0' target='0' unit='${port}'/></disk>`;
}

function diskOfXml(deviceXml: string): { file: string; port: number } {
  const parsed = parseVboxDomain(`<domain type='vbox'><name>device</name><devices>${deviceXml}</devices></domain>`);
  const d = parsed.disks[0];
  if (parsed.disks.length !== 1 || !d?.file || d.device !== 'disk' || d.bus !== 'sata') throw new CloudError(`the vbox backend changes SATA hard disks only, got ${deviceXml}`);
  return { file: d.file, port: d.port };
}

/**
 * Device changes as the vbox driver allows them: cold. The VM is stopped (ACPI, bounded,
 * then power-off), undefined, defined again from its own XML with the disk added or
 * removed, and started again if it ran; the log says the guest rebooted.
 */
export const coldDevices: DeviceChanges = {
  mode: 'cold',
  async add(host, dom, deviceXml) {
    const disk = diskOfXml(deviceXml);
    const before = specOf(await readDomain(host, dom));
    const taken = before.disks.find((d) => d.port === disk.port);
    if (taken) throw new CloudError(`SATA port ${disk.port} of VM ${dom.name} holds ${taken.file} already`);
    if (await redefine(host, dom, before, { ...before, disks: [...before.disks, disk] })) restarted(host, dom.name, `attach ${disk.file} on SATA port ${disk.port}`);
  },
  async remove(host, dom, deviceXml) {
    const disk = diskOfXml(deviceXml);
    const before = specOf(await readDomain(host, dom));
    if (!before.disks.some((d) => d.file === disk.file)) return;
    if (await redefine(host, dom, before, { ...before, disks: before.disks.filter((d) => d.file !== disk.file) })) restarted(host, dom.name, `detach ${disk.file}`);
  },
};

/** Says in the log and in the answer's log that the guest rebooted for the change. */
function restarted(host: Host, vm: string, what: string): void {
  const line = `VM ${vm} was stopped and started again to ${what}: libvirt's VirtualBox driver cannot hot-plug disks, so the vbox backend changes a stopped VM's definition (the guest rebooted)`;
  host.log.warn({ vm }, line);
  tellCaller(line);
}

export async function attachDisk(host: Host, vm: VMCID, disk: DiskCID): Promise<DiskHint> {
  return withFileLock(host, vm, async () => {
    const dom = await requireDomain(host, vm);
    const path = diskPath(hostLayout(host), disk);
    if (!isCid(disk, 'disk', host.config.name_prefix) || !(await hostFiles(host).exists(path))) throw new DiskNotFound(`Disk ${disk} does not exist in ${hostLayout(host).disks}`);
    const uuid = await vdiUuidOn(hostFiles(host), path);
    const hint = { path: vboxDiskByIdPath(uuid) };
    const before = specOf(await readDomain(host, dom));
    const present = before.disks.find((d) => d.file === path);
    if (present) {
      host.log.info({ vm, disk }, 'attach_disk: the disk is attached already');
      await recordDisk(host, dom, disk, uuid, present.port);
      return hint;
    }
    const others = (await domainsUsing(host, [path])).filter((n) => n !== vm);
    if (others.length) throw new CloudError(`Disk ${disk} is attached to VM ${others.join(', ')}; detach it there before attaching it to ${vm}`);
    const used = new Set([...before.disks.map((d) => d.port), ...(before.settings?.bus === 'sata' ? [before.settings.port ?? VBOX_SATA_PORTS.settings] : [])]);
    let port = VBOX_SATA_PORTS.firstPersistent;
    while (used.has(port)) port++;
    if (port >= VBOX_LIMITS.sataPorts) throw new CloudError(`Cannot attach disk ${disk} to VM ${vm}: all SATA ports ${VBOX_SATA_PORTS.firstPersistent}–${VBOX_LIMITS.sataPorts - 1} are taken`);
    await coldDevices.add(host, dom, sataDiskXml(path, port));
    await recordDisk(host, dom, disk, uuid, port);
    host.log.info({ vm, disk, port, hint }, `disk ${disk} attached on SATA port ${port}`);
    return hint;
  }, `attach_disk of ${disk} to ${vm}`);
}

export async function detachDisk(host: Host, vm: VMCID, disk: DiskCID): Promise<void> {
  await withFileLock(host, vm, async () => {
    const dom = await requireDomain(host, vm);
    const path = diskPath(hostLayout(host), disk);
    const before = specOf(await readDomain(host, dom));
    const present = before.disks.find((d) => d.file === path);
    if (!present) {
      await unrecordDisk(host, dom, disk);
      throw new DiskNotAttached(`Disk ${disk} is not attached to VM ${vm}`);
    }
    await coldDevices.remove(host, dom, sataDiskXml(path, present.port), { live: true, saved: true });
    await unrecordDisk(host, dom, disk);
  }, `detach_disk of ${disk} from ${vm}`);
}

async function recordDisk(host: Host, dom: DomainRef, disk: string, uuid: string, port: number): Promise<void> {
  const record = await fileRecords.read(host, dom);
  if (!record) return;
  record.disks = [...record.disks.filter((d) => d.cid !== disk), { cid: disk, serial: vboxAtaSerial(uuid), target: `sata port ${port}` }];
  await fileRecords.write(host, dom, record);
}

async function unrecordDisk(host: Host, dom: DomainRef, disk: string): Promise<void> {
  const record = await fileRecords.read(host, dom);
  if (!record || !record.disks.some((d) => d.cid === disk)) return;
  record.disks = record.disks.filter((d) => d.cid !== disk);
  await fileRecords.write(host, dom, record);
}

