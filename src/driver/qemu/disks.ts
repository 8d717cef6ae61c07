// qemu's persistent disks: qcow2 volumes (created, deleted and tagged by the shared
// layer, src/driver/shared/disks.ts) attached as virtio disks with the CID's serial.
// Which VM holds a disk is read from the domains themselves (their XML), and
// attach/detach keep the VM's metadata in step.
import type { Host } from '../shared/host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from '../shared/host.js';
import { requireDomain } from '../shared/vms.js';
import { requireDisk } from '../shared/disks.js';
import { readVmMetadata, writeVmMetadata } from '../shared/vm-metadata.js';
import { liveDevices } from '../shared/devices.js';
import { persistentDiskSerial } from './serials.js';
import { domainsUsing, volumePath } from '../shared/volume-users.js';
import { rewriteSettingsDisks } from './settings-volume.js';
import { withVolumeLock } from '../shared/lock.js';
import { newCid, isCid, type DiskCID, type VMCID } from '../cids.js';
import type { DiskHint } from '../driver.js';
import { DOMAIN_DEFAULTS, parseDomain, renderDiskDevice, type DiskDevice } from '../../xml/index.js';
import { AffectFlags, CallTimeoutError, ConnectionClosedError, DomainState, DomainXMLFlags, ErrorCode, isLibvirtError, type VolRef, type DomainRef } from '../../libvirt/index.js';
import { CloudError, DiskNotAttached, DiskNotFound, NoDiskSpace, NotSupported, VMNotFound } from '../../errors.js';

const MiB = 1024n * 1024n;

interface Attachment {
  vm: string;
  dom: DomainRef;
  disk: DiskDevice & { target: string };
}

/** Where a disk is attached, read from the domains' XML (the truth), not from metadata. */
export async function findAttachment(host: Host, diskPath: string, only?: DomainRef, xmlFlags = 0): Promise<Attachment | null> {
  // Every domain on the host, whatever its name: a disk another director's VM or a
  // hand-made domain uses is in use all the same.
  const doms = only ? [only] : await host.conn.domains.listAll(0);
  for (const dom of doms) {
    let xml: string;
    try {
      xml = await host.conn.domains.getXMLDesc(dom, xmlFlags);
    } catch (e) {
      // Deleted by a concurrent delete_vm between the listing and this read.
      if (!only && isLibvirtError(e, ErrorCode.NO_DOMAIN)) continue;
      throw e;
    }
    const parsed = parseDomain(xml);
    const d = parsed.disks.find((x) => x.file === diskPath);
    if (d) {
      return { vm: dom.name, dom, disk: { device: 'disk', file: diskPath, format: 'qcow2', bus: (d.bus as DiskDevice['bus']) ?? 'virtio', target: d.target, ...(d.serial ? { serial: d.serial } : {}) } };
    }
  }
  return null;
}

function nextTarget(used: Set<string>): string {
  for (let i = 2; i < 26 * 27; i++) {
    const name = i < 26 ? `vd${String.fromCharCode(97 + i)}` : `vd${String.fromCharCode(96 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`;
    if (!used.has(name)) return name;
  }
  throw new CloudError('No free virtio disk target left on this VM');
}

export async function attachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<DiskHint> {
  const dom = await requireDomain(host, vmCid);
  const vol = await requireDisk(host, diskCid);
  const path = await host.conn.volumes.getPath(vol);
  const serial = persistentDiskSerial(diskCid);
  // Choosing a free target, attaching there and recording it in the metadata is one
  // read-modify-write of the VM: without the VM's lock, concurrent attach_disk calls
  // pick the same target, and their metadata writes overwrite each other.
  return withVolumeLock(host, vmCid, async () => {
    // One scan of every domain (live and saved definitions, backing files): a disk another
    // domain uses is refused; one this VM already has is answered as it is (idempotent).
    const users = await domainsUsing(host, [path]);
    const others = users.filter((d) => d !== vmCid);
    if (others.length) throw new CloudError(`Disk ${diskCid} is attached to VM ${others.join(', ')} (or used by it as a backing file); detach it before attaching it to ${vmCid}`);
    const existing = users.length ? await findAttachment(host, path, dom) : null;
    const before = await domainDisks(host, dom);
    if (existing) {
      const hint = { id: existing.disk.serial ?? serial, path: `/dev/${existing.disk.target}` };
      // An attach_disk that died (or lost its connection) after attaching may not have recorded it.
      await recordAttachment(host, dom, vmCid, diskCid, hint, existing.disk.target, before);
      return hint;
    }
    // Attaching with CONFIG|LIVE needs a target free in both definitions, and they
    // differ, e.g. while the guest has not yet released a disk being detached (still
    // live, no longer saved).
    const target = nextTarget(new Set(before.map((d) => d.target)));
    const device: DiskDevice = { device: 'disk', file: path, format: 'qcow2', bus: 'virtio', target, serial };
    await liveDevices.add(host, dom, renderDiskDevice(device)).catch((e: unknown) => {
      if (!/No more available PCI slots/i.test(String((e as Error).message))) throw e;
      throw new CloudError(`Cannot attach disk ${diskCid} to the running VM ${vmCid}: it has no free PCI hot-plug slot left (a q35 VM gets ${DOMAIN_DEFAULTS.q35HotplugPorts} beyond its own devices); detach a disk first, or attach while the VM is stopped`, { cause: e });
    });
    const hint = { id: serial, path: `/dev/${target}` };
    await recordAttachment(host, dom, vmCid, diskCid, hint, target, before);
    return hint;
  });
}

/** The disks of the domain's live and saved definitions. */
async function domainDisks(host: Host, dom: DomainRef): Promise<ReturnType<typeof parseDomain>['disks']> {
  const live = parseDomain(await host.conn.domains.getXMLDesc(dom, 0)).disks;
  return [...live, ...parseDomain(await host.conn.domains.getXMLDesc(dom, DomainXMLFlags.INACTIVE)).disks];
}

/**
 * The VM's metadata (and an old stemcell's settings) name the disk; a no-op when they
 * already do. Entries for disks no longer in `disks` (the domain, live and saved) go with it: a
 * detach_disk that failed or died between the device change and its metadata update
 * left one behind, and the domain XML is the truth.
 */
async function recordAttachment(host: Host, dom: DomainRef, vmCid: VMCID, diskCid: DiskCID, hint: { id: string; path: string }, target: string, disks: Awaited<ReturnType<typeof domainDisks>>): Promise<void> {
  const metadata = await readVmMetadata(host, dom);
  if (!metadata) return;
  const present = new Set(disks.map((d) => d.file?.split('/').pop()));
  const kept = metadata.disks.filter((d) => d.cid !== diskCid && present.has(d.cid));
  if (kept.length === metadata.disks.length - 1 && metadata.disks.some((d) => d.cid === diskCid && d.serial === hint.id && d.target === target)) return;
  metadata.disks = [...kept, { cid: diskCid, serial: hint.id, target }];
  await writeVmMetadata(host, dom, metadata);
  if ((metadata.stemcellApiVersion ?? 2) < 2) await rewriteSettingsDisks(host, vmCid, (p) => ({ ...p, [diskCid]: hint }));
}

/** The metadata (and an old stemcell's settings) no longer name the disk; a no-op when they do not. */
async function forgetAttachment(host: Host, dom: DomainRef, vmCid: VMCID, diskCid: DiskCID): Promise<void> {
  const metadata = await readVmMetadata(host, dom);
  if (!metadata || !metadata.disks.some((d) => d.cid === diskCid)) return;
  metadata.disks = metadata.disks.filter((d) => d.cid !== diskCid);
  await writeVmMetadata(host, dom, metadata);
  if ((metadata.stemcellApiVersion ?? 2) < 2) {
    await rewriteSettingsDisks(host, vmCid, (p) => Object.fromEntries(Object.entries(p).filter(([k]) => k !== diskCid)));
  }
}

export async function detachDisk(host: Host, vmCid: VMCID, diskCid: DiskCID): Promise<void> {
  const dom = await requireDomain(host, vmCid);
  const vol = isCid(diskCid, 'disk', host.config.name_prefix) ? await findVolume(host, diskCid) : null;
  if (!vol) throw new DiskNotAttached(`Disk ${diskCid} is not attached to VM ${vmCid} (the disk does not exist)`);
  const path = await host.conn.volumes.getPath(vol);
  // The VM's lock covers the device change and the metadata update. A live detach waits
  // for the guest between the two, outside the lock: that wait may last
  // vm.detach_timeout_seconds, longer than other calls wait for the lock (60 s) and
  // close to the age at which a lock counts as stale (120 s). While the guest has not
  // let go, the disk's target is still in the live XML, so no attach takes it meanwhile.
  const liveDisk = await withVolumeLock(host, vmCid, async () => {
    // Detach from wherever the disk still is: a retry after a guest that was slow to
    // release it finds the disk gone from the persistent config but still live.
    const running = (await host.conn.domains.getState(dom, 0)).state !== DomainState.SHUTOFF;
    const live = running ? await findAttachment(host, path, dom, 0) : null;
    const saved = await findAttachment(host, path, dom, DomainXMLFlags.INACTIVE);
    const att = live ?? saved;
    if (!att) {
      // A detach that failed or died after the device change left the metadata naming
      // the disk: the retry the director makes completes it.
      await forgetAttachment(host, dom, vmCid, diskCid);
      throw new DiskNotAttached(`Disk ${diskCid} is not attached to VM ${vmCid}`);
    }
    await liveDevices.remove(host, dom, renderDiskDevice(att.disk), { live: live !== null, saved: saved !== null });
    // Nothing to wait for (a stopped VM, or the guest let go before): done in one hold.
    if (!live) await forgetAttachment(host, dom, vmCid, diskCid);
    return live?.disk ?? null;
  });
  if (!liveDisk) return;
  await waitForLiveDetach(host, dom, liveDisk);
  await withVolumeLock(host, vmCid, () => forgetAttachment(host, dom, vmCid, diskCid));
}

/** How long to wait for the guest between unplug requests for the same disk. */
const DETACH_RESEND_MS = 3000;

/**
 * A live detach completes when the guest releases the device (ACPI hot-unplug). Wait
 * for it, bounded; a guest that never lets go leaves the disk attached and the caller
 * gets an error it may retry, rather than a disk silently still in use.
 *
 * A guest that is still booting (right after create_vm or reboot_vm: firmware, or a
 * kernel whose ACPI or PCIe hot-plug driver is not up yet) drops the unplug request:
 * Linux clears pending hot-plug events when it starts, and QEMU then waits for an
 * answer nobody will give. So the request is sent again while the disk is still there,
 * and the first one the running guest sees completes the detach.
 */
async function waitForLiveDetach(host: Host, dom: DomainRef, disk: DiskDevice): Promise<void> {
  const seconds = host.config.vm.detach_timeout_seconds;
  const deadline = Date.now() + seconds * 1000;
  let resendAt = Date.now() + DETACH_RESEND_MS;
  let requests = 1;
  for (;;) {
    const { state } = await host.conn.domains.getState(dom, 0);
    if (state === DomainState.SHUTOFF) return;
    const live = parseDomain(await host.conn.domains.getXMLDesc(dom, 0));
    if (!live.disks.some((d) => d.file === disk.file)) {
      if (requests > 1) host.log.info({ vm: dom.name, target: disk.target, unplug_requests: requests }, 'the guest released the disk after repeated unplug requests');
      return;
    }
    if (Date.now() > deadline) {
      host.log.warn({ vm: dom.name, target: disk.target, unplug_requests: requests }, 'the guest did not release the disk');
      throw new CloudError(`The guest of ${dom.name} did not release the disk within ${seconds} s (vm.detach_timeout_seconds); it stays attached until the guest lets go (retry detach_disk)`, { okToRetry: true });
    }
    if (Date.now() >= resendAt) {
      await resendDetach(host, dom, disk);
      requests++;
      resendAt = Date.now() + DETACH_RESEND_MS;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function resendDetach(host: Host, dom: DomainRef, disk: DiskDevice): Promise<void> {
  try {
    await host.conn.domains.detachDevice(dom, renderDiskDevice(disk), AffectFlags.LIVE);
  } catch (e) {
    // The daemon refusing a repeat (the disk went meanwhile, or QEMU still counts the
    // previous request as pending) is no failure: the next look at the live XML tells.
    // A lost connection or a timeout is.
    if (!isLibvirtError(e) || e instanceof ConnectionClosedError || e instanceof CallTimeoutError) throw e;
    host.log.debug({ vm: dom.name, err: e.message }, 'repeated unplug request refused; still waiting for the guest');
  }
}

export async function getDisks(host: Host, vmCid: VMCID): Promise<DiskCID[]> {
  const dom = await requireDomain(host, vmCid);
  const parsed = parseDomain(await host.conn.domains.getXMLDesc(dom, 0));
  const out: DiskCID[] = [];
  for (const d of parsed.disks) {
    const name = d.file?.split('/').pop();
    if (d.device === 'disk' && name && isCid(name, 'disk', host.config.name_prefix) && d.file === `${host.poolPath}/${name}`) out.push(name as DiskCID);
  }
  return out;
}

export async function resizeDisk(host: Host, cid: DiskCID, newSizeMiB: number): Promise<void> {
  const vol = await requireDisk(host, cid);
  const current = (await volumeDetails(host, vol)).capacityBytes;
  const wanted = BigInt(newSizeMiB) * MiB;
  if (wanted < current) throw new NotSupported(`Disk ${cid} is ${current / MiB} MiB; shrinking it to ${newSizeMiB} MiB would lose data and is not supported`);
  if (wanted === current) return;
  const attached = await findAttachment(host, await host.conn.volumes.getPath(vol));
  if (attached) throw new CloudError(`Disk ${cid} is attached to VM ${attached.vm}; resize_disk grows detached disks only`);
  const info = await host.conn.pools.getInfo(host.pool);
  if (wanted > info.capacity) throw new NoDiskSpace(`Cannot grow disk ${cid} to ${newSizeMiB} MiB: pool ${host.config.storage.pool} holds ${info.capacity / MiB} MiB in all`);
  await host.conn.volumes.resize(vol, wanted, 0);
}

