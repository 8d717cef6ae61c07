// The LXC VM: a system container whose root filesystem is an overlay on the stemcell's
// directory (nothing is copied: create_vm's time does not grow with the stemcell), with
// its ephemeral and persistent-disk directories mounted in, the agent's settings in a
// file inside it, and NICs libvirt configures itself. The sequence around these steps
// (define, start, undo on failure) is shared: src/driver/shared/vms.ts.
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import { findDomain } from '../shared/host.js';
import { withStemcellLock, withVolumeLock } from '../shared/lock.js';
import { readVmMetadata } from '../shared/vm-metadata.js';
import { plannedReservations, routedPrefixes } from '../shared/networking.js';
import { vmMetadata } from '../shared/vms.js';
import type { VmBuild, VmPreviewInput } from '../shared/profile.js';
import type { VMCID } from '../cids.js';
import type { NetworkPlan } from '../../network/index.js';
import type { LxcDomainSpec, VmMetadata } from '../../xml/index.js';
import { CloudError } from '../../errors.js';
import { maybeFail } from '../../util/faults.js';
import { findRootfsStemcell } from './stemcells.js';
import { createDirVolume, deleteDirVolume } from './dir-volume.js';
import { containerInterfaces, preconfiguredNetworks } from './networking.js';
import { buildContainerSettings, writeSettingsFile } from './settings.js';
import { DISKS_MOUNT, EPHEMERAL_MOUNT, INIT, rootPaths, vmVolumeNames } from './layout.js';
import { moveDisksOut } from './disks.js';
import { Suffix, hasSuffix, withoutSuffix } from '../shared/names.js';

export interface LxcDomainInput {
  vm: string;
  agentId: string;
  stemcellCid: string;
  stemcellApiVersion?: number;
  memoryMiB: number;
  cpu: number;
  plan: NetworkPlan;
  poolPath: string;
  prefixes: VmMetadata['prefixes'];
  reservations: VmMetadata['reservations'];
}

/** The domain create_vm defines, as a pure function of its decisions (create_vm and `render vm`). */
export function buildLxcDomainSpec(i: LxcDomainInput): LxcDomainSpec {
  const names = vmVolumeNames(i.vm);
  const metadata = vmMetadata({
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
    plan: i.plan,
    volumes: [names.root, names.ephemeral, names.disks],
    // static addresses on a network with DHCP are reserved there, as for qemu, so
    // dnsmasq never leases them to anyone else
    reservations: i.reservations,
    prefixes: i.prefixes,
  });
  return {
    name: i.vm,
    title: i.vm,
    description: `BOSH VM for agent ${i.agentId}, created by bosh-libvirt-cpi`,
    type: 'lxc',
    memoryMiB: i.memoryMiB,
    vcpus: i.cpu,
    init: INIT,
    filesystems: [
      { source: rootPaths(i.poolPath, i.vm).rootfs, target: '/' },
      { source: join(i.poolPath, names.ephemeral), target: EPHEMERAL_MOUNT },
      { source: join(i.poolPath, names.disks), target: DISKS_MOUNT },
    ],
    interfaces: containerInterfaces(i.plan),
    metadata,
  };
}

/**
 * create_vm's LXC steps: the root (overlay layers on the stemcell, made under the
 * stemcell's lock), the agent's settings file in the upper layer, the ephemeral and
 * disk directories. The libvirt hook mounts the overlay when libvirt starts the domain.
 */
export async function prepare(b: VmBuild): Promise<LxcDomainSpec> {
  const { host, undo, vm, req, shape, plan, nets, step } = b;
  const names = vmVolumeNames(vm);
  const root = rootPaths(host.poolPath, vm);
  let made: () => void;

  step('looking up the stemcell');
  // From the look-up until the root names the stemcell, delete_stemcell (same lock)
  // must wait: afterwards it sees this VM as a user of the stemcell.
  await withStemcellLock(host, req.stemcellCid, async () => {
    const stemcell = await findRootfsStemcell(host, req.stemcellCid);
    if (!stemcell) throw new CloudError(`Stemcell ${req.stemcellCid} does not exist in pool ${host.config.storage.pool}`);
    maybeFail('create_vm:after-plan');

    step('creating the root filesystem');
    made = undo.begin(`volume ${names.root}`, () => deleteDirVolume(host, names.root));
    await createDirVolume(host, names.root);
    made();
    await writeFile(root.stemcellFile, `${req.stemcellCid}\n`);
    await mkdir(root.upper, { mode: 0o755 });
    await mkdir(root.work, { mode: 0o700 });
    await mkdir(root.rootfs, { mode: 0o755 });
    // The link goes in last, under its final name, so a half-made root never mounts.
    await symlink(stemcell.path, `${root.lower}.new`);
    await rename(`${root.lower}.new`, root.lower);
  });
  maybeFail('create_vm:after-root');

  step('writing the agent settings');
  const settings = buildContainerSettings(host, { vm, agentId: req.agentId, networks: plan.agentNetworks, preconfigured: preconfiguredNetworks(plan), env: req.env, persistent: {} });
  await writeSettingsFile(root.settings, settings);

  step('creating the ephemeral and disk directories');
  for (const name of [names.ephemeral, names.disks]) {
    made = undo.begin(`volume ${name}`, () => deleteDirVolume(host, name));
    await createDirVolume(host, name);
    made();
  }
  maybeFail('create_vm:after-ephemeral');

  return buildLxcDomainSpec({
    vm,
    agentId: req.agentId,
    stemcellCid: req.stemcellCid,
    ...(req.stemcellApiVersion !== undefined ? { stemcellApiVersion: req.stemcellApiVersion } : {}),
    memoryMiB: shape.ramMiB,
    cpu: shape.cpu,
    plan,
    poolPath: host.poolPath,
    prefixes: routedPrefixes(plan, nets),
    reservations: plannedReservations(plan, nets, vm),
  });
}

/**
 * Removes one of a VM's directory volumes (delete_vm, `orphans --delete`). The disks
 * directory holds attached persistent disks: under the VM's lock (so no attach_disk moves
 * one in meanwhile), the disks the VM's records name go back to the pool first, then
 * whatever else is in there (the container's own files, links, directories) is deleted
 * with it, links never followed.
 */
export async function removeVolume(host: Host, name: string): Promise<void> {
  if (!hasSuffix(name, Suffix.disks)) return deleteDirVolume(host, name);
  const vm = withoutSuffix(name, Suffix.disks) as VMCID;
  await withVolumeLock(host, vm, async () => {
    const dom = await findDomain(host, vm);
    const metadata = dom ? await readVmMetadata(host, dom) : null;
    await moveDisksOut(host, vm, metadata);
    await deleteDirVolume(host, name);
  });
}

/** delete_vm (the container is stopped): persistent disks still inside go back first. */
export async function beforeDelete(host: Host, vm: VMCID, metadata: VmMetadata | null): Promise<void> {
  await withVolumeLock(host, vm, () => moveDisksOut(host, vm, metadata));
}

/** `render vm`: buildLxcDomainSpec with placeholder paths under storage.path. */
export function preview(i: VmPreviewInput): { spec: LxcDomainSpec; notes: string[] } {
  const spec = buildLxcDomainSpec({
    vm: i.vm,
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
    memoryMiB: i.shape.ramMiB,
    cpu: i.shape.cpu,
    plan: i.plan,
    poolPath: i.config.storage.path,
    prefixes: routedPrefixes(i.plan, new Map()),
    reservations: [],
  });
  return {
    spec,
    notes: [
      `VM CID ${i.vm} and directories under ${i.config.storage.path} (storage.path) are placeholders; create_vm uses a new CID and the pool's path`,
      `the root filesystem is an overlay (lower: the stemcell's directory) that the libvirt lxc hook mounts on ${spec.filesystems[0]!.source} when the domain starts`,
    ],
  };
}
