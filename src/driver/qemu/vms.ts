// The qemu/kvm VM: a qcow2 overlay on the stemcell as its root disk, an empty qcow2
// ephemeral disk, the agent's settings on a config drive, virtio everywhere. The
// sequence around these steps (define, start, undo on failure) is shared: see
// src/driver/shared/vms.ts.
import type { Host } from '../shared/host.js';
import { createVolume, writeBufferVolume } from '../shared/host.js';
import { withStemcellLock } from '../shared/lock.js';
import { undoVolume } from '../shared/fence.js';
import type { VmShape } from '../shared/cloud-properties.js';
import { plannedReservations, interfaceDevices, routedPrefixes } from '../shared/networking.js';
import { vmMetadata } from '../shared/vms.js';
import { findStemcell } from './stemcells.js';
import { resolveDomainType } from './domain-type.js';
import { ownedDiskSerial } from './serials.js';
import { buildVmSettings, configDriveDevice, configDriveImage, configDriveName } from './config-drive.js';
import { settingsVolumeName, writeSettingsVolume } from './settings-volume.js';
import type { VmBuild, VmPreviewInput } from '../shared/profile.js';
import type { NetworkPlan } from '../../network/index.js';
import type { DiskDevice, DomainSpec, VmMetadata } from '../../xml/index.js';
import { CloudError } from '../../errors.js';
import { maybeFail } from '../../util/faults.js';
import { Suffix, suffixed } from '../shared/names.js';

const MiB = 1024n * 1024n;

export function ownedVolumeNames(vm: string): { root: string; ephemeral: string; config: string } {
  return { root: suffixed(vm, Suffix.root), ephemeral: suffixed(vm, Suffix.ephemeral), config: configDriveName(vm) };
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
  const metadata = vmMetadata({
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
    plan: i.plan,
    volumes,
    reservations: i.reservations,
    prefixes: i.prefixes,
  });
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

/**
 * create_vm's qemu steps: a qcow2 overlay on the stemcell, an empty ephemeral disk, the
 * config drive (and, for old agents, the settings document attach_disk rewrites), and
 * the domain that boots from them.
 */
export async function prepare(b: VmBuild): Promise<DomainSpec> {
  const { host, undo, vm, req, shape, plan, nets, step } = b;
  const { config } = host;
  const names = ownedVolumeNames(vm);
  step('looking up the stemcell');
  // From the look-up until the overlay exists the stemcell must not go: delete_stemcell
  // takes the same lock and then sees the overlay as a user of the stemcell.
  const rootVol = await withStemcellLock(host, req.stemcellCid, async () => {
    const stemcell = await findStemcell(host, req.stemcellCid);
    if (!stemcell) throw new CloudError(`Stemcell ${req.stemcellCid} does not exist in pool ${config.storage.pool}`);
    maybeFail('create_vm:after-plan');

    step('creating the root disk');
    const rootBytes = shape.rootMiB !== undefined ? BigInt(shape.rootMiB) * MiB : 0n;
    const madeRoot = undo.begin(`volume ${names.root}`, undoVolume(host, names.root));
    const vol = await createVolume(host, {
      name: names.root,
      capacityBytes: rootBytes > stemcell.virtualSize ? rootBytes : stemcell.virtualSize,
      format: 'qcow2',
      backing: { path: stemcell.path, format: stemcell.format },
    });
    madeRoot();
    return vol;
  });
  maybeFail('create_vm:after-root');
  let made: () => void;

  const rootPath = await host.conn.volumes.getPath(rootVol);
  let ephemeralPath: string | undefined;
  let ephemeral: { id: string; path: string } | undefined;
  if (shape.ephemeralMiB > 0) {
    step('creating the ephemeral disk');
    made = undo.begin(`volume ${names.ephemeral}`, undoVolume(host, names.ephemeral));
    const eph = await createVolume(host, { name: names.ephemeral, capacityBytes: BigInt(shape.ephemeralMiB) * MiB, allocationBytes: 0n, format: 'qcow2' });
    made();
    ephemeralPath = await host.conn.volumes.getPath(eph);
    ephemeral = ephemeralDiskHint(vm);
  }
  maybeFail('create_vm:after-ephemeral');

  step('writing the config drive');
  const settings = buildVmSettings(host, { vm, agentId: req.agentId, networks: plan.agentNetworks, env: req.env, ephemeral, persistent: {} });
  made = undo.begin(`volume ${names.config}`, undoVolume(host, names.config));
  const cfgVol = await writeBufferVolume(host, names.config, configDriveImage(vm, settings));
  made();
  const configPath = await host.conn.volumes.getPath(cfgVol);
  if (keepsSettingsVolume(req.stemcellApiVersion)) {
    // Old agents re-read disk settings from the drive: keep the document to rewrite it.
    made = undo.begin(`volume ${settingsVolumeName(vm)}`, undoVolume(host, settingsVolumeName(vm)));
    await writeSettingsVolume(host, vm, settings);
    made();
  }
  maybeFail('create_vm:after-config-drive');

  step('choosing the domain type');
  return buildDomainSpec({
    vm,
    agentId: req.agentId,
    stemcellCid: req.stemcellCid,
    ...(req.stemcellApiVersion !== undefined ? { stemcellApiVersion: req.stemcellApiVersion } : {}),
    shape,
    type: await resolveDomainType(host, shape.machine),
    plan,
    paths: { root: rootPath, ...(ephemeralPath !== undefined ? { ephemeral: ephemeralPath } : {}), config: configPath },
    reservations: plannedReservations(plan, nets, vm),
    prefixes: routedPrefixes(plan, nets),
    serialLogDir: config.vm.serial_log_dir,
  });
}

/** `render vm`: buildDomainSpec with placeholder paths where create_vm would ask libvirt. */
export function preview(i: VmPreviewInput): { spec: DomainSpec; notes: string[] } {
  const { config, vm, shape, plan } = i;
  const notes: string[] = [];
  let type: 'kvm' | 'qemu';
  if (i.domainType) type = i.domainType;
  else if (config.domain_type !== 'auto') type = config.domain_type;
  else {
    type = 'qemu';
    notes.push("domain_type is auto: rendered type 'qemu'; create_vm asks libvirt's domain capabilities (use --domain-type kvm to preview a KVM host)");
  }
  const names = ownedVolumeNames(vm);
  const dir = config.storage.path;
  const spec = buildDomainSpec({
    vm,
    agentId: i.agentId,
    stemcellCid: i.stemcellCid,
    ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}),
    shape,
    type,
    plan,
    paths: { root: `${dir}/${names.root}`, ...(shape.ephemeralMiB > 0 ? { ephemeral: `${dir}/${names.ephemeral}` } : {}), config: `${dir}/${names.config}` },
    // Offline there is no network XML: no DHCP reservations, and every delegated prefix
    // counts as routed (create_vm drops those that lie in a bridge subnet).
    reservations: [],
    prefixes: routedPrefixes(plan, new Map()),
    serialLogDir: config.vm.serial_log_dir,
  });
  notes.push(`VM CID ${vm} and volume paths under ${dir} (storage.path) are placeholders; create_vm uses a new CID and the pool's paths`);
  if (plan.nics.some((n) => n.source.kind === 'network' && !n.dhcp)) notes.push('DHCP reservations for static addresses are not shown: they depend on the live libvirt network');
  if (keepsSettingsVolume(i.stemcellApiVersion)) notes.push(`stemcell api_version ${i.stemcellApiVersion}: a ${settingsVolumeName(vm)} volume is kept for agent re-reads`);
  return { spec, notes };
}
