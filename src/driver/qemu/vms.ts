// VMs are domains named after their CID. create_vm builds, in order: root overlay,
// ephemeral disk, config drive, DHCP reservations, domain definition, start; each step
// records an undo, and any failure undoes everything before raising VMCreationFailed.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../config/schema.js';
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findDomain, listVolumeNames, writeBufferVolume } from './host.js';
import { findStemcell } from './stemcells.js';
import { decodeVmCloudProperties, type VmShape } from './cloud-properties.js';
import { resolveDomainType } from './domain-type.js';
import { ownedDiskSerial } from './serials.js';
import { readVmMetadata, writeVmMetadata, affectFlags } from './vm-metadata.js';
import { addReservation, checkNetworks, interfaceDevices, plannedReservations, removeReservation, routedPrefixes } from './networking.js';
import { buildVmSettings, configDriveDevice, configDriveImage, configDriveName } from './config-drive.js';
import { settingsVolumeName, writeSettingsVolume } from './settings-volume.js';
import { newCid, isCid, type VMCID } from '../cids.js';
import type { CreateVMRequest, Networks } from '../driver.js';
import { planNetworks, type NetworkPlan } from '../../network/index.js';
import { renderDomain, type DiskDevice, type DomainSpec, type VmMetadata } from '../../xml/index.js';
import { MetadataType, DomainState, UndefineFlags, isLibvirtError, ErrorCode, ConnectionClosedError, CallTimeoutError, type DomainRef } from '../../libvirt/index.js';
import { CloudError, CpiError, VMCreationFailed, VMNotFound } from '../../rpc/errors.js';
import { maybeFail } from '../../util/faults.js';

const MiB = 1024n * 1024n;

export function ownedVolumeNames(vm: string): { root: string; ephemeral: string; config: string } {
  return { root: `${vm}.root`, ephemeral: `${vm}.ephemeral`, config: configDriveName(vm) };
}

/** The ephemeral disk as the agent finds it: by its virtio serial, /dev/vdb as a fallback. */
export function ephemeralDiskHint(vm: string): { id: string; path: string } {
  return { id: ownedDiskSerial(vm, 'ephemeral'), path: '/dev/vdb' };
}

/** Stemcells older than API v2 re-read disk settings from the config drive, so their settings document is kept. */
export function keepsSettingsVolume(stemcellApiVersion: number | undefined): boolean {
  return (stemcellApiVersion ?? 2) < 2;
}

/** Everything create_vm has decided by the time it defines the domain. */
export interface VmDomainInput {
  vm: string;
  agentId: string;
  stemcellCid: string;
  stemcellApiVersion?: number;
  shape: VmShape;
  type: 'kvm' | 'qemu';
  plan: NetworkPlan;
  /** volume paths as libvirt reports them; `ephemeral` only when the VM has one */
  paths: { root: string; ephemeral?: string; config: string };
  reservations: VmMetadata['reservations'];
  prefixes: VmMetadata['prefixes'];
  serialLogDir: string;
}

/**
 * The domain create_vm defines, as a pure function of its decisions: create_vm calls it
 * with libvirt's volume paths, `bosh-libvirt-cpi render vm` with placeholders, so what
 * the operator previews is what the CPI would define.
 */
export function buildDomainSpec(i: VmDomainInput): DomainSpec {
  const names = ownedVolumeNames(i.vm);
  const disks: DiskDevice[] = [{ device: 'disk', file: i.paths.root, format: 'qcow2', bus: 'virtio', target: 'vda', serial: ownedDiskSerial(i.vm, 'root') }];
  const volumes = [names.root];
  if (i.paths.ephemeral !== undefined) {
    disks.push({ device: 'disk', file: i.paths.ephemeral, format: 'qcow2', bus: 'virtio', target: 'vdb', serial: ephemeralDiskHint(i.vm).id });
    volumes.push(names.ephemeral);
  }
  disks.push(configDriveDevice(i.shape.machine, i.paths.config, disks.length));
  volumes.push(names.config);
  if (keepsSettingsVolume(i.stemcellApiVersion)) volumes.push(settingsVolumeName(i.vm));
  const metadata: VmMetadata = {
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    volumes,
    disks: [],
    macs: i.plan.nics.map((n) => n.mac),
    prefixes: i.prefixes,
    reservations: i.reservations,
    tags: {},
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
  };
  return {
    name: i.vm,
    title: i.vm,
    description: `BOSH VM for agent ${i.agentId}, created by bosh-libvirt-cpi`,
    type: i.type,
    memoryMiB: i.shape.ramMiB,
    vcpus: i.shape.cpu,
    arch: 'x86_64',
    machine: i.shape.machine,
    firmware: i.shape.firmware,
    disks,
    interfaces: interfaceDevices(i.plan),
    serialLogFile: `${i.serialLogDir}/${i.vm}-console.log`,
    metadata,
  };
}

/** create_vm's networks as NICs: a VM needs at least one (vip networks get none). */
export function planVmNetworks(networks: unknown, config: Config): NetworkPlan {
  const plan = planNetworks(networks, config.network);
  if (plan.nics.length === 0) throw new CloudError('Invalid networks of create_vm: at least one manual or dynamic network is needed (vip networks get no NIC)');
  return plan;
}

export async function createVM(host: Host, req: CreateVMRequest): Promise<[VMCID, Networks]> {
  const { config } = host;
  // Input problems are the caller's to fix: plain CloudErrors, raised before anything exists.
  const shape = decodeVmCloudProperties(req.cloudProperties, config);
  const plan = planVmNetworks(req.networks, config);

  // Networks are checked against the host before anything exists: a missing libvirt
  // network is NetworkNotFound and an address outside its subnets a CloudError, both
  // for the operator to fix, not creation failures a retry could help.
  const nets = await checkNetworks(host, plan).catch((e: unknown) => {
    if (e instanceof CpiError) throw e;
    throw new VMCreationFailed(`create_vm failed while checking networks: ${(e as Error).message}; nothing had been created`, { okToRetry: isTransient(e), cause: e });
  });
  const vm = newCid(config.name_prefix, 'vm');
  const names = ownedVolumeNames(vm);
  const undo: Array<{ what: string; run: () => Promise<unknown> }> = [];
  let step = 'looking up the stemcell';
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const mark = (next: string) => {
    timings[step] = Math.round(performance.now() - t0);
    t0 = performance.now();
    step = next;
  };
  try {
    const stemcell = await findStemcell(host, req.stemcellCid);
    if (!stemcell) throw new CloudError(`Stemcell ${req.stemcellCid} does not exist in pool ${config.storage.pool}`);
    maybeFail('create_vm:after-plan');

    mark('creating the root disk');
    const rootBytes = shape.rootMiB !== undefined ? BigInt(shape.rootMiB) * MiB : 0n;
    const rootVol = await createVolume(host, {
      name: names.root,
      capacityBytes: rootBytes > stemcell.virtualSize ? rootBytes : stemcell.virtualSize,
      format: 'qcow2',
      backing: { path: stemcell.path, format: stemcell.format },
    });
    undo.push({ what: `volume ${names.root}`, run: () => deleteVolumeIfExists(host, names.root) });
    maybeFail('create_vm:after-root');

    const rootPath = await host.conn.volumes.getPath(rootVol);
    let ephemeralPath: string | undefined;
    let ephemeral: { id: string; path: string } | undefined;
    if (shape.ephemeralMiB > 0) {
      mark('creating the ephemeral disk');
      const eph = await createVolume(host, { name: names.ephemeral, capacityBytes: BigInt(shape.ephemeralMiB) * MiB, allocationBytes: 0n, format: 'qcow2' });
      undo.push({ what: `volume ${names.ephemeral}`, run: () => deleteVolumeIfExists(host, names.ephemeral) });
      ephemeralPath = await host.conn.volumes.getPath(eph);
      ephemeral = ephemeralDiskHint(vm);
    }
    maybeFail('create_vm:after-ephemeral');

    mark('writing the config drive');
    const settings = buildVmSettings(host, { vm, agentId: req.agentId, networks: plan.agentNetworks, env: req.env, ephemeral, persistent: {} });
    const cfgVol = await writeBufferVolume(host, names.config, configDriveImage(vm, settings));
    undo.push({ what: `volume ${names.config}`, run: () => deleteVolumeIfExists(host, names.config) });
    const configPath = await host.conn.volumes.getPath(cfgVol);
    if (keepsSettingsVolume(req.stemcellApiVersion)) {
      // Old agents re-read disk settings from the drive: keep the document to rewrite it.
      await writeSettingsVolume(host, vm, settings);
      undo.push({ what: `volume ${settingsVolumeName(vm)}`, run: () => deleteVolumeIfExists(host, settingsVolumeName(vm)) });
    }
    maybeFail('create_vm:after-config-drive');

    mark('reserving addresses in DHCP');
    const reservations = plannedReservations(plan, nets, vm);
    for (const r of reservations) {
      await addReservation(host, r);
      undo.push({ what: `DHCP reservation ${r.ip} on ${r.network}`, run: () => removeReservation(host, r) });
    }
    maybeFail('create_vm:after-reservations');

    mark('defining the domain');
    const spec = buildDomainSpec({
      vm,
      agentId: req.agentId,
      stemcellCid: req.stemcellCid,
      ...(req.stemcellApiVersion !== undefined ? { stemcellApiVersion: req.stemcellApiVersion } : {}),
      shape,
      type: await resolveDomainType(host, shape.machine),
      plan,
      paths: { root: rootPath, ...(ephemeralPath !== undefined ? { ephemeral: ephemeralPath } : {}), config: configPath },
      reservations,
      prefixes: routedPrefixes(plan, nets),
      serialLogDir: config.vm.serial_log_dir,
    });
    const dom = await host.conn.domains.defineXML(renderDomain(spec), 0);
    undo.push({ what: `domain ${vm}`, run: () => removeDomain(host, dom) });
    maybeFail('create_vm:after-define');

    mark('starting the domain');
    await host.conn.domains.create(dom, 0);
    maybeFail('create_vm:after-start');
    mark('done');
    // Per-step wall times in ms: bench/create-vm.mjs reads them from this line.
    host.log.info({ vm, type: spec.type, nics: plan.nics.length, disks: spec.disks.length, step_ms: timings }, 'VM created');
    return [vm, plan.agentNetworks];
  } catch (e) {
    const undone: string[] = [];
    for (const u of undo.reverse()) {
      try {
        await u.run();
        undone.push(u.what);
      } catch (cleanupErr) {
        host.log.error({ err: String(cleanupErr), what: u.what }, 'cleanup after a failed create_vm failed');
      }
    }
    const cause = e instanceof Error ? e.message : String(e);
    const removed = undone.length ? `; removed ${undone.join(', ')}` : '; nothing had been created';
    throw new VMCreationFailed(`create_vm failed while ${step}: ${cause}${removed}`, { okToRetry: isTransient(e), cause: e });
  }
}

/** A failure a retry can fix: the connection or the daemon, not the request. */
export function isTransient(e: unknown): boolean {
  if (e instanceof ConnectionClosedError || e instanceof CallTimeoutError) return true;
  if (e instanceof CpiError) return e.okToRetry;
  return isLibvirtError(e, ErrorCode.OPERATION_TIMEOUT, ErrorCode.RESOURCE_BUSY, ErrorCode.RPC);
}

async function removeDomain(host: Host, dom: DomainRef): Promise<void> {
  await stopDomain(host, dom);
  await undefineDomain(host, dom);
}

async function stopDomain(host: Host, dom: DomainRef): Promise<void> {
  try {
    const { state } = await host.conn.domains.getState(dom, 0);
    if (state !== DomainState.SHUTOFF) await host.conn.domains.destroy(dom, 0);
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return;
    if (!isLibvirtError(e, ErrorCode.OPERATION_INVALID)) throw e; // not running: fine
  }
}

async function undefineDomain(host: Host, dom: DomainRef): Promise<void> {
  try {
    await host.conn.domains.undefine(dom, UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA | UndefineFlags.NVRAM | UndefineFlags.CHECKPOINTS_METADATA);
  } catch (e) {
    if (!isLibvirtError(e, ErrorCode.NO_DOMAIN)) throw e;
  }
}

export async function requireDomain(host: Host, cid: string): Promise<DomainRef> {
  const dom = isCid(cid, 'vm') ? await findDomain(host, cid) : null;
  if (!dom) throw new VMNotFound(`VM ${cid} does not exist on ${host.config.libvirt.uri}`);
  return dom;
}

/**
 * The domain is undefined last: it holds the metadata that says what to remove, so a
 * delete_vm that fails halfway (a dropped connection, a busy volume) can be retried by
 * the director and finish the job, instead of answering VMNotFound with volumes and
 * DHCP reservations left behind.
 */
export async function deleteVM(host: Host, cid: VMCID): Promise<void> {
  const dom = isCid(cid, 'vm') ? await findDomain(host, cid) : null;
  if (!dom) {
    // Volumes named after a VM that is gone are still its own: sweep them, then report.
    if (isCid(cid, 'vm')) await deleteOwnedVolumes(host, cid, []);
    throw new VMNotFound(`VM ${cid} does not exist on ${host.config.libvirt.uri}`);
  }
  const metadata = await readVmMetadata(host, dom);
  await stopDomain(host, dom);
  for (const r of metadata?.reservations ?? []) await removeReservation(host, r);
  await deleteOwnedVolumes(host, cid, metadata?.volumes ?? []);
  maybeFail('delete_vm:before-undefine');
  await undefineDomain(host, dom);
}

/** What the metadata lists plus anything named `<vm>.…`; never persistent disks (disk-…). */
async function deleteOwnedVolumes(host: Host, vm: string, listed: string[]): Promise<void> {
  const owned = new Set(listed);
  for (const name of await listVolumeNames(host)) if (name.startsWith(`${vm}.`)) owned.add(name);
  for (const name of owned) await deleteVolumeIfExists(host, name);
}

export async function hasVM(host: Host, cid: VMCID): Promise<boolean> {
  return isCid(cid, 'vm') && (await findDomain(host, cid)) !== null;
}

/**
 * Graceful first: ACPI shutdown and a bounded wait for the guest to power off, then a
 * fresh start. A guest that ignores ACPI is destroyed (a hard reset) after
 * vm.reboot_timeout_seconds. Starting anew (rather than DOMAIN_REBOOT) makes the
 * outcome observable: when this returns, the domain was off and runs again.
 */
export async function rebootVM(host: Host, cid: VMCID): Promise<void> {
  const dom = await requireDomain(host, cid);
  const state = async () => (await host.conn.domains.getState(dom, 0)).state;
  if ((await state()) !== DomainState.SHUTOFF) {
    await host.conn.domains.shutdown(dom, 0).catch((e: unknown) => host.log.warn({ err: String(e) }, 'ACPI shutdown request failed; resetting'));
    const deadline = Date.now() + host.config.vm.reboot_timeout_seconds * 1000;
    while (Date.now() < deadline && (await state()) !== DomainState.SHUTOFF) await sleep(500);
    if ((await state()) !== DomainState.SHUTOFF) {
      host.log.warn({ vm: cid }, `guest did not power off within ${host.config.vm.reboot_timeout_seconds}s; forcing it off`);
      await host.conn.domains.destroy(dom, 0).catch((e: unknown) => {
        if (!isLibvirtError(e, ErrorCode.OPERATION_INVALID)) throw e;
      });
    }
  }
  await host.conn.domains.create(dom, 0);
}

export async function setVMMetadata(host: Host, cid: VMCID, tags: Record<string, string>): Promise<void> {
  const dom = await requireDomain(host, cid);
  const metadata = await readVmMetadata(host, dom);
  if (!metadata) throw new CloudError(`VM ${cid} has no bosh-libvirt-cpi metadata; it was not created by this CPI`);
  metadata.tags = { ...metadata.tags, ...tags };
  await writeVmMetadata(host, dom, metadata);
  const title = vmTitle(tags);
  if (title) await host.conn.domains.setMetadata(dom, MetadataType.TITLE, title, null, null, await affectFlags(host, dom));
}

/** `deployment/instance_group/index` (or the director's `name`), as `virsh list --title` shows it. */
export function vmTitle(tags: Record<string, string>): string | undefined {
  const group = tags.instance_group ?? tags.job;
  if (tags.deployment && group) return [tags.deployment, group, tags.index ?? tags.id].filter(Boolean).join('/');
  return tags.name ?? tags.deployment;
}

export function calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): Record<string, unknown> {
  return { cpu: req.cpu, ram: req.ram, ephemeral_disk: { size: req.ephemeral_disk_size } };
}

