// The VM lifecycle every backend shares. create_vm validates its input, plans the
// networks and checks them against the host before anything exists; then the backend
// profile makes the VM's storage (root filesystem, ephemeral disk, agent settings) and
// returns the domain; this module defines it (its record marked as being created),
// settles races for static addresses, adds DHCP reservations (where the profile has
// them), starts it, and last clears the mark. The record, locks, claims and
// reservations are the profile's stores (profile.ts).
// Each step records an undo, and any failure undoes everything before raising
// VMCreationFailed. The domain comes before the reservations so that a reservation
// never exists without a domain that names it: what a kill leaves is a marked domain
// (`orphans` removes it with its reservations) or volumes named after a VM that does
// not exist.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../config/schema.js';
import type { Host } from './host.js';
import { deleteVolumeIfExists, findDomain, listVolumeNames } from './host.js';
import { decodeVmCloudProperties, describeIgnored, ignoredCloudPropertyKeys } from './cloud-properties.js';
import { checkNetworks } from './networking.js';
import { volumePath, volumeUsers } from './volume-users.js';
import { defineHoldingAddresses, releaseClaims, staticAddresses } from './address-holders.js';
import { creatorMarker } from './creator.js';
import { UndoLog, type UndoContext } from './undo.js';
import { fenceName, isFence, uuidString, vmUuid } from './fence.js';
import { newCid, isCid, type VMCID } from '../cids.js';
import type { CreateVMRequest, Networks } from '../driver.js';
import type { BackendProfile, StateStores, VmStorage } from './profile.js';
import { planNetworks, type NetworkPlan } from '../../network/index.js';
import { renderDomain, type VmMetadata } from '../../xml/index.js';
import { DomainState, UndefineFlags, isLibvirtError, ErrorCode, ConnectionClosedError, CallTimeoutError, type DomainRef } from '../../libvirt/index.js';
import { CloudError, CpiError, VMCreationFailed, VMNotFound } from '../../errors.js';
import { maybeDelay, maybeFail } from '../../util/faults.js';

/** What every backend records in a VM's <bosh:vm> metadata at create_vm. */
export interface VmMetadataInput {
  agentId: string;
  stemcellCid: string;
  stemcellApiVersion?: number;
  plan: NetworkPlan;
  /** every volume that belongs to the VM (delete_vm removes them) */
  volumes: string[];
  reservations: VmMetadata['reservations'];
  prefixes: VmMetadata['prefixes'];
}

export function vmMetadata(i: VmMetadataInput): VmMetadata {
  const addresses = staticAddresses(i.plan);
  return {
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    volumes: i.volumes,
    disks: [],
    macs: i.plan.nics.map((n) => n.mac),
    prefixes: i.prefixes,
    reservations: i.reservations,
    ...(addresses.length ? { addresses } : {}),
    tags: {},
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
  };
}

/** create_vm's networks as NICs: a VM needs at least one (vip networks get none). */
export function planVmNetworks(networks: unknown, config: Config): NetworkPlan {
  const plan = planNetworks(networks, config.network);
  if (plan.nics.length === 0) throw new CloudError('Invalid networks of create_vm: at least one manual or dynamic network is needed (vip networks get no NIC)');
  return plan;
}

export async function createVM(host: Host, profile: BackendProfile, req: CreateVMRequest): Promise<[VMCID, Networks]> {
  const { config } = host;
  // Input problems are the caller's to fix: plain CloudErrors, raised before anything exists.
  const shape = decodeVmCloudProperties(req.cloudProperties, config);
  const ignored = ignoredCloudPropertyKeys(req.cloudProperties, req.networks);
  const warning = describeIgnored(ignored, profile.name);
  if (warning) host.log.warn({ ignored }, `create_vm: ${warning}`);
  const plan = planVmNetworks(req.networks, config);

  // Networks are checked against the host before anything exists: a missing libvirt
  // network is NetworkNotFound and an address outside its subnets a CloudError, both
  // for the operator to fix, not creation failures a retry could help.
  const nets = await checkNetworks(host, profile, plan).catch((e: unknown) => {
    if (e instanceof CpiError) throw e;
    throw new VMCreationFailed(`create_vm failed while checking networks: ${(e as Error).message}; nothing had been created`, { okToRetry: isTransient(e), cause: e });
  });
  const vm = newCid(config.name_prefix, 'vm') as VMCID;
  const undo = new UndoLog();
  let step = 'preparing the VM';
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const mark = (next: string) => {
    timings[step] = Math.round(performance.now() - t0);
    t0 = performance.now();
    step = next;
  };
  try {
    const spec = await profile.vms.prepare({ host, undo, vm, req, shape, plan, nets, step: mark });
    let made: () => void;

    mark('defining the domain');
    // The mark tells `orphans` this domain is not finished yet, and by whom it is made.
    // A record kept in the domain goes with the define; one kept apart is written right
    // after it (and removed by this define's undo).
    const { records } = profile;
    const finished = spec.metadata!;
    const marked = { ...finished, creating: creatorMarker() };
    spec.metadata = marked;
    // Checked and defined under the pool's address lock: of two calls for one static
    // address, the second sees the first one's domain and gives way.
    // The domain's uuid is chosen here: the undo then removes only this define's domain
    // (never a fence or anything else of that name), and a fence tells it apart.
    const uuid = vmUuid();
    spec.uuid = uuid;
    const dom = await defineHoldingAddresses(host, profile, plan, nets, vm, async () => {
      await maybeDelay('create_vm:before-define');
      // A define without an answer may still run in the daemon, later: its undo settles
      // that with a fence before anything else is undone, and when it cannot, keeps the
      // volumes too (a domain that appears later then finds its disks, and `orphans`
      // removes both together).
      const defined = undo.begin(`domain ${vm}`, (ctx) => undoDefine(host, vm, uuid, spec.type, ctx), { keepOlderIfUnsettled: true });
      const ref = await host.conn.domains.defineXML(renderDomain(spec), 0);
      defined();
      if (records.keeps === 'apart') {
        undo.begin(`the record of VM ${vm}`, () => records.remove(host, vm).then(() => true))();
        await records.write(host, ref, marked);
      }
      maybeFail('create_vm:after-define');
      return ref;
    });
    await maybeDelay('create_vm:after-define'); // after the last address check

    mark('reserving addresses in DHCP');
    const { reservations } = profile;
    if (reservations) {
      for (const r of finished.reservations) {
        made = undo.begin(`DHCP reservation ${r.ip} on ${r.network}`, () => reservations.remove(host, r));
        await reservations.add(host, r);
        made();
      }
    } else if (finished.reservations.length) {
      throw new Error(`the ${profile.name} profile recorded DHCP reservations, but its networks take none (reservations: null)`);
    }
    maybeFail('create_vm:after-reservations');

    mark('starting the domain');
    await host.conn.domains.create(dom, 0);
    maybeFail('create_vm:after-start');

    mark('clearing the creation mark');
    await records.write(host, dom, finished);
    maybeFail('create_vm:after-mark');
    mark('done');
    // Per-step wall times in ms: bench/create-vm.mjs reads them from this line.
    host.log.info({ vm, type: spec.type, nics: plan.nics.length, disks: 'disks' in spec ? spec.disks.length : spec.filesystems.length, step_ms: timings }, 'VM created');
    return [vm, plan.agentNetworks];
  } catch (e) {
    const { removed, settled, left } = await undo.run(host, e);
    // With nothing left, the addresses are free again at once (with something left, the
    // claims go when this process is gone).
    if (left.length === 0) await releaseClaims(host, profile, plan, vm).catch((err: unknown) => host.log.warn({ err: String(err) }, 'could not drop the address claims; they count until this process is gone'));
    const cause = explainCause(e);
    let outcome = removed.length ? `; removed ${removed.join(', ')}` : '';
    if (settled.length) outcome += `; made sure these never appear: ${settled.join(', ')}`;
    if (left.length) {
      outcome += `; LEFT BEHIND (could not be removed): ${left.join(', ')}; \`bosh-libvirt-cpi orphans --delete\` removes them once this process is gone`;
    } else if (removed.length === 0 && settled.length === 0) {
      outcome = '; nothing had been created';
    }
    // With something left, no retry: the director would retry at once with the same
    // networks, and a leftover domain (perhaps running) still holds the static addresses
    // and their DHCP reservations, so the retry would fail on them or, worse, bring up a
    // second VM with the same IP. The operator cleans up first (orphans lists it all).
    throw new VMCreationFailed(`create_vm failed while ${step}: ${cause}${outcome}`, { okToRetry: isTransient(e) && left.length === 0, cause: e });
  }
}

/** libvirt's own words, and the remedy where they do not say it. */
function explainCause(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // A fresh host: libvirt makes its dnsmasq state directory only when a network with
  // DHCP or DNS first starts, yet writes every network's MAC map there (doctor checks it).
  const dir = /'(\/[^']*\/dnsmasq)\/[^'/]*\.macs\.new'/.exec(msg)?.[1];
  if (dir) return `${msg} (the libvirt host lacks the directory ${dir}, which libvirt creates only when a network with DHCP or DNS first starts: create it, e.g. mkdir -p ${dir}; \`bosh-libvirt-cpi doctor\` checks for it)`;
  return msg;
}

/** A failure a retry can fix: the connection or the daemon, not the request. */
export function isTransient(e: unknown): boolean {
  if (e instanceof ConnectionClosedError || e instanceof CallTimeoutError) return true;
  if (e instanceof CpiError) return e.okToRetry;
  return isLibvirtError(e, ErrorCode.OPERATION_TIMEOUT, ErrorCode.RESOURCE_BUSY, ErrorCode.RPC);
}

/**
 * create_vm's undo of its define. When the define got no answer it may still run in the
 * daemon: a fence of the name settles that first (fence.ts). Then only the domain with
 * this define's uuid is removed: undefined first, then stopped, so that a start the daemon
 * runs late finds no persistent domain to start (a transient one it started before the
 * undefine is destroyed right after).
 */
async function undoDefine(host: Host, vm: string, uuid: string, type: string, ctx: UndoContext): Promise<boolean | { settled: string }> {
  if (ctx.answerLost) {
    const why = ctx.timedOut ? `no answer within libvirt.call_timeout_seconds (${host.config.libvirt.call_timeout_seconds} s)` : 'the connection was lost before its answer';
    const out = await fenceName(host, vm, { type, reason: `create_vm's define of ${vm} (uuid ${uuid}) got no answer: ${why}`, fresh: ctx.timedOut });
    if (out.state === 'fenced') {
      return { settled: `domain ${vm} (its define got no answer; the fence domain ${vm}, uuid ${out.uuid}, now keeps it from ever being defined; the fence holds no address or volume, and \`bosh-libvirt-cpi orphans\` removes it once older than --min-age)` };
    }
    if (out.uuid !== uuid) throw new Error(`domain ${vm} exists with uuid ${out.uuid}, not this create_vm's ${uuid}; left alone`);
  }
  return removeDomainByUuid(host, vm, uuid);
}

/** Removes the domain `name` if it is the one with `uuid`: false when there is none (or another). */
export async function removeDomainByUuid(host: Host, name: string, uuid: string): Promise<boolean> {
  const dom = await findDomain(host, name);
  if (!dom || uuidString(dom) !== uuid) return false;
  await undefineDomain(host, dom).catch(async (e: unknown) => {
    // A driver that cannot undefine a running domain (vbox: VirtualBox unregisters no
    // running machine) gets it stopped first.
    const running = await host.conn.domains.getState(dom, 0).then((s) => s.state !== DomainState.SHUTOFF, () => false);
    if (!running) throw e;
    await stopDomain(host, dom);
    await undefineDomain(host, dom);
  });
  await stopDomain(host, dom);
  return true;
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
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return;
    // LXC has no saved state, snapshots, NVRAM or checkpoints and refuses those flags
    // ("unsupported flags (0x17) in function lxcDomainUndefineFlags"): nothing to drop.
    if (!isLibvirtError(e, ErrorCode.INVALID_ARG)) throw e;
    await host.conn.domains.undefine(dom, 0).catch((e2: unknown) => {
      if (!isLibvirtError(e2, ErrorCode.NO_DOMAIN)) throw e2;
    });
  }
}

/** The VM's domain: null for a name that is no VM CID of this CPI, and for a fence (fence.ts), which is no VM. */
export async function findVmDomain(host: Host, cid: string): Promise<DomainRef | null> {
  const dom = isCid(cid, 'vm', host.config.name_prefix) ? await findDomain(host, cid) : null;
  return dom && !(await isFence(host, dom)) ? dom : null;
}

export async function requireDomain(host: Host, cid: string): Promise<DomainRef> {
  const dom = await findVmDomain(host, cid);
  if (!dom) throw new VMNotFound(`VM ${cid} does not exist on ${host.config.libvirt.uri}`);
  return dom;
}

/** What delete_vm uses of a backend's profile (`orphans --delete` passes the same). */
export interface DeleteVmSteps extends Pick<StateStores, 'records' | 'reservations'> {
  vms: Pick<VmStorage, 'beforeDelete' | 'removeVolume' | 'listVolumes'>;
}

/**
 * The domain is undefined last (a record kept apart after it): the record says what to remove, so a
 * delete_vm that fails halfway (a dropped connection, a busy volume) can be retried by
 * the director and finish the job, instead of answering VMNotFound with volumes and
 * DHCP reservations left behind.
 */
export async function deleteVM(host: Host, cid: VMCID, profile: DeleteVmSteps): Promise<void> {
  const dom = await findVmDomain(host, cid);
  if (!dom) {
    // Volumes named after a VM that is gone are still its own: sweep them, then report.
    if (isCid(cid, 'vm', host.config.name_prefix)) {
      await profile.vms.beforeDelete?.(host, cid, null);
      await deleteOwnedVolumes(host, cid, [], profile);
      await profile.records.remove(host, cid);
    }
    throw new VMNotFound(`VM ${cid} does not exist on ${host.config.libvirt.uri}`);
  }
  const metadata = await profile.records.read(host, dom);
  await stopDomain(host, dom);
  await profile.vms.beforeDelete?.(host, cid, metadata);
  for (const r of metadata?.reservations ?? []) await profile.reservations?.remove(host, r);
  await deleteOwnedVolumes(host, cid, metadata?.volumes ?? [], profile);
  maybeFail('delete_vm:before-undefine');
  await undefineDomain(host, dom);
  await profile.records.remove(host, cid);
}

/** What the metadata lists plus anything named `<vm>.…`; never persistent disks (disk-…). */
async function deleteOwnedVolumes(host: Host, vm: string, listed: string[], profile: Pick<DeleteVmSteps, 'vms'>): Promise<void> {
  const owned = new Set(listed);
  for (const name of await (profile.vms.listVolumes?.(host) ?? listVolumeNames(host))) if (name.startsWith(`${vm}.`)) owned.add(name);
  // The VM's own domain does not count; another domain using one of them keeps it (the
  // VM still goes: its director asked for that, and the volume is no longer its).
  const inUse = await volumeUsers(host, [...owned].map((name) => volumePath(host, name)), { except: vm });
  for (const name of owned) {
    const users = inUse.get(volumePath(host, name));
    if (users) host.log.warn({ volume: name, users }, 'delete_vm keeps a volume another domain uses');
    else if (profile.vms.removeVolume) await profile.vms.removeVolume(host, name);
    else await deleteVolumeIfExists(host, name);
  }
}

export async function hasVM(host: Host, cid: VMCID): Promise<boolean> {
  return (await findVmDomain(host, cid)) !== null;
}

/**
 * Graceful first: ACPI shutdown and a bounded wait for the guest to power off, then a
 * fresh start. A guest that ignores ACPI is destroyed (a hard reset) after
 * vm.reboot_timeout_seconds. Starting anew (rather than DOMAIN_REBOOT) makes the
 * outcome observable: when this returns, the domain was off and runs again.
 */
export async function rebootVM(host: Host, cid: VMCID, profile: Pick<BackendProfile, 'vms'>): Promise<void> {
  const dom = await requireDomain(host, cid);
  const state = async () => (await host.conn.domains.getState(dom, 0)).state;
  if ((await state()) !== DomainState.SHUTOFF) {
    await host.conn.domains.shutdown(dom, profile.vms.shutdownFlags ?? 0).catch((e: unknown) => host.log.warn({ err: String(e) }, 'ACPI shutdown request failed; resetting'));
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

export async function setVMMetadata(host: Host, cid: VMCID, tags: Record<string, string>, profile: Pick<StateStores, 'records' | 'locks'>): Promise<void> {
  const dom = await requireDomain(host, cid);
  // A read-modify-write of the whole record: under the VM's lock, as attach_disk and
  // detach_disk update it, or one call's change is lost.
  await profile.locks.with(host, cid, async () => {
    const metadata = await profile.records.read(host, dom);
    if (!metadata) throw new CloudError(`VM ${cid} has no bosh-libvirt-cpi metadata; it was not created by this CPI`);
    metadata.tags = { ...metadata.tags, ...tags };
    await profile.records.write(host, dom, metadata);
  });
  const title = vmTitle(tags);
  if (title) await profile.records.setTitle(host, dom, title);
}

/** `deployment/instance_group/index` (or the director's `name`), as `virsh list --title` shows it. */
export function vmTitle(tags: Record<string, string>): string | undefined {
  const group = tags.instance_group ?? tags.job;
  if (tags.deployment && group) return [tags.deployment, group, tags.index ?? tags.id].filter(Boolean).join('/');
  return tags.name ?? tags.deployment;
}
