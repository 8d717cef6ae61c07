// The vbox VM: a full VDI copy of the stemcell as its root disk (SATA port 0), an empty
// VDI as its ephemeral disk (port 1), the agent's settings on a config-drive ISO
// (`config-2`) in a SATA CD-ROM (port 2), NICs on host-only networks (or bridged), and
// only RDP graphics, so VirtualBox starts it headless. The files live in
// <storage.path>/vms as `<vm>.…` (files.ts). The shared create_vm defines and starts
// the domain (src/driver/shared/vms.ts) and writes the VM's record file.
//
// What libvirt's vbox driver cannot do, and what the VM gets instead:
//   - no differencing images through libvirt: the root disk is a full copy, made by
//     `qemu-img convert` (which gives the copy a fresh VDI UUID: VirtualBox refuses two
//     media with one UUID, so never `cp`); its cost is logged;
//   - no DHCP host entries (no networkUpdate): static addresses reach the VM through the
//     agent's settings only;
//   - no firmware choice: BIOS (EFI stemcells are refused at create_stemcell).
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import type { VmBuild, VmPreviewInput } from '../shared/profile.js';
import { vmMetadata } from '../shared/vms.js';
import { buildAgentSettings, buildConfigDrive } from '../../agent/index.js';
import type { NetworkPlan } from '../../network/index.js';
import { VBOX_SATA_PORTS, type VboxInterface, type VboxVmDomain, type VmMetadata } from '../../xml/index.js';
import { CloudError, NotSupported } from '../../errors.js';
import { maybeFail } from '../../util/faults.js';
import { isCid } from '../cids.js';
import { tellCaller } from '../../log/logger.js';
import { VDI_HEAD_BYTES, vdiUuidOf } from './stemcell-image.js';
import { vboxDiskByIdPath } from './disk-hints.js';
import { findStemcellFile } from './stemcells.js';
import { withFileLock } from './state.js';
import { hostFiles, hostLayout, listDir, vmFileNames } from './files.js';
import type { FileHost } from './file-host.js';

const MiB = 1024n * 1024n;

/** `qemu-img` on the VirtualBox host, with its own words in the error. */
export async function qemuImg(fh: FileHost, args: string[], what: string): Promise<string> {
  return fh.run('qemu-img', args, what);
}

/** The image UUID of a VDI on the VirtualBox host. */
export async function vdiUuidOn(fh: FileHost, path: string): Promise<string> {
  return vdiUuidOf(await fh.readHead(path, VDI_HEAD_BYTES), path);
}

/**
 * A new VDI at `path` on the VirtualBox host (never replacing a file): made as
 * `.partial` beside it by qemu-img, then linked (one qemu-img and two small file
 * commands over ssh).
 */
export async function makeVdi(fh: FileHost, path: string, how: { copyOf: string } | { bytes: bigint }, what: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf('/'));
  const partial = join(dir, `.${path.slice(dir.length + 1)}.partial`);
  await fh.remove(partial);
  try {
    if ('copyOf' in how) await qemuImg(fh, ['convert', '-O', 'vdi', how.copyOf, partial], what);
    else await qemuImg(fh, ['create', '-q', '-f', 'vdi', partial, String(how.bytes)], what);
    await fh.linkNew(partial, path).catch((e: NodeJS.ErrnoException) => {
      throw e.code === 'EEXIST' ? Object.assign(new CloudError(`${what}: ${path} exists already; it is not replaced`), { code: 'EEXIST' }) : e;
    });
  } finally {
    await fh.remove(partial);
  }
}

/** An undo step that removes a file (true when it was there). */
function undoFile(fh: FileHost, path: string): () => Promise<boolean> {
  return () => fh.remove(path);
}

function vboxInterfaces(plan: NetworkPlan): VboxInterface[] {
  return plan.nics.map((nic) => (nic.source.kind === 'network' ? { kind: 'network', network: nic.source.network, mac: nic.mac } : { kind: 'bridge', bridge: nic.source.bridge, mac: nic.mac }));
}

function refuseUnsupported(plan: NetworkPlan): void {
  const prefixed = plan.nics.find((n) => n.prefixes.length > 0);
  if (prefixed) {
    throw new NotSupported(
      `Invalid networks of create_vm: network ${prefixed.networkNames.map((n) => JSON.stringify(n)).join(', ')} delegates a prefix, which the vbox backend cannot route (VirtualBox host-only networks take no routes through libvirt)`,
    );
  }
}

let staticNoteLogged = false;

/** create_vm's vbox steps: the root disk copy, the ephemeral disk, the settings ISO, the domain. */
export async function prepare(b: VmBuild): Promise<VboxVmDomain> {
  const { host, undo, vm, req, shape, plan, step } = b;
  const l = hostLayout(host);
  const fh = hostFiles(host);
  const names = vmFileNames(vm);
  const paths = { root: join(l.vms, names.root), ephemeral: join(l.vms, names.ephemeral), settings: join(l.vms, names.settings) };
  refuseUnsupported(plan);
  if (shape.firmware === 'efi') throw new NotSupported(`Invalid cloud_properties of create_vm: firmware "efi" is not supported by the vbox backend: libvirt's VirtualBox driver cannot select EFI firmware (machines boot BIOS)`);
  if (!staticNoteLogged && plan.nics.some((n) => n.ipv4 || n.ipv6)) {
    staticNoteLogged = true;
    const line = 'static addresses reach a vbox VM through the agent\'s settings only: libvirt cannot add DHCP host entries to VirtualBox host-only networks';
    host.log.info({ vm }, line);
    tellCaller(`create_vm: ${line}`);
  }

  step('copying the stemcell into the root disk');
  if (!isCid(req.stemcellCid, 'sc', host.config.name_prefix)) throw new CloudError(`Stemcell ${req.stemcellCid} does not exist in ${l.stemcells}`);
  // delete_stemcell takes the same lock: the stemcell stays while it is copied.
  await withFileLock(host, req.stemcellCid, async () => {
    const stemcell = await findStemcellFile(host, req.stemcellCid);
    if (!stemcell) throw new CloudError(`Stemcell ${req.stemcellCid} does not exist in ${l.stemcells}`);
    maybeFail('create_vm:after-plan');
    const t0 = performance.now();
    const made = undo.begin(`root disk ${paths.root}`, undoFile(fh, paths.root));
    await makeVdi(fh, paths.root, { copyOf: stemcell }, 'create_vm: copying the stemcell into the root disk');
    made();
    const size = (await fh.stat(paths.root))?.size ?? 0;
    const ms = Math.round(performance.now() - t0);
    host.log.info(
      { vm, root: paths.root, bytes: size, ms },
      'the root disk is a full copy of the stemcell (libvirt\'s vbox driver cannot make differencing images): it costs the stemcell\'s used size in storage and copy time per VM',
    );
    const written = size >= 1048576 ? `${(size / 1048576).toFixed(1)} MiB` : `${Math.ceil(size / 1024)} KiB`;
    tellCaller(`create_vm: the root disk is a full copy of the stemcell (${written} written in ${ms} ms): libvirt's vbox driver cannot make differencing images`);
  }, `create_vm of ${vm}: copying the stemcell`);
  if (shape.rootMiB !== undefined) host.log.warn({ vm, root_disk_mib: shape.rootMiB }, 'create_vm: root_disk.size is not applied by the vbox backend; the root disk has the stemcell\'s size');
  maybeFail('create_vm:after-root');

  let ephemeralUuid: string | undefined;
  const disks: Array<{ file: string; port: number }> = [{ file: paths.root, port: VBOX_SATA_PORTS.root }];
  const volumes = [names.root];
  if (shape.ephemeralMiB > 0) {
    step('creating the ephemeral disk');
    const made = undo.begin(`ephemeral disk ${paths.ephemeral}`, undoFile(fh, paths.ephemeral));
    await makeVdi(fh, paths.ephemeral, { bytes: BigInt(shape.ephemeralMiB) * MiB }, 'create_vm: creating the ephemeral disk');
    made();
    ephemeralUuid = await vdiUuidOn(fh, paths.ephemeral);
    disks.push({ file: paths.ephemeral, port: VBOX_SATA_PORTS.ephemeral });
    volumes.push(names.ephemeral);
  }
  maybeFail('create_vm:after-ephemeral');

  step('writing the settings ISO');
  const settings = buildAgentSettings({
    agentId: req.agentId,
    vmName: vm,
    agent: host.config.agent,
    disks: { system: '/dev/sda', ...(ephemeralUuid ? { ephemeral: { path: vboxDiskByIdPath(ephemeralUuid) } } : {}), persistent: {} },
    networks: plan.agentNetworks,
    env: req.env,
  });
  const made = undo.begin(`settings ISO ${paths.settings}`, undoFile(fh, paths.settings));
  await fh.writeAtomic(paths.settings, buildConfigDrive(settings, { instanceId: vm }), 0o644);
  made();
  volumes.push(names.settings);
  maybeFail('create_vm:after-config-drive');

  return buildVboxDomain({ vm, req, shape, plan, disks, settings: paths.settings, volumes });
}

interface DomainInput {
  vm: string;
  req: { agentId: string; stemcellCid: string; stemcellApiVersion?: number };
  shape: VmBuild['shape'];
  plan: NetworkPlan;
  disks: Array<{ file: string; port: number }>;
  settings: string;
  volumes: string[];
}

function buildVboxDomain(i: DomainInput): VboxVmDomain {
  const metadata: VmMetadata = vmMetadata({
    agentId: i.req.agentId,
    stemcellCid: i.req.stemcellCid,
    ...(i.req.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.req.stemcellApiVersion } : {}),
    plan: i.plan,
    volumes: i.volumes,
    reservations: [],
    prefixes: [],
  });
  return {
    type: 'vbox',
    name: i.vm,
    uuid: '', // create_vm chooses it right before the define
    memoryMiB: i.shape.ramMiB,
    vcpus: i.shape.cpu,
    firmware: 'bios',
    disks: i.disks,
    settings: { file: i.settings, bus: 'sata', port: VBOX_SATA_PORTS.settings },
    interfaces: vboxInterfaces(i.plan),
    metadata,
  };
}

/** `render vm`: the domain with placeholder paths and uuid. */
export function preview(i: VmPreviewInput): { spec: VboxVmDomain; notes: string[] } {
  const vms = join(i.config.storage.path, 'vms');
  const names = vmFileNames(i.vm);
  const disks: Array<{ file: string; port: number }> = [{ file: join(vms, names.root), port: VBOX_SATA_PORTS.root }];
  if (i.shape.ephemeralMiB > 0) disks.push({ file: join(vms, names.ephemeral), port: VBOX_SATA_PORTS.ephemeral });
  const spec = buildVboxDomain({
    vm: i.vm,
    req: { agentId: i.agentId, stemcellCid: i.stemcellCid, ...(i.stemcellApiVersion !== undefined ? { stemcellApiVersion: i.stemcellApiVersion } : {}) },
    shape: i.shape,
    plan: i.plan,
    disks,
    settings: join(vms, names.settings),
    volumes: [],
  });
  spec.uuid = '00000000-0000-4000-8000-000000000000';
  return { spec, notes: [`VM CID ${i.vm}, its uuid and file paths under ${vms} are placeholders; the VM record is kept in a file, not in the domain (the vbox driver stores no metadata)`] };
}

/** The names delete_vm sweeps for `<vm>.…`: the files in the vms directory. */
export async function listVolumes(host: Host): Promise<string[]> {
  return listDir(hostFiles(host), hostLayout(host).vms);
}

export async function removeVolume(host: Host, name: string): Promise<void> {
  if (name.includes('/') || name.startsWith('.')) throw new CloudError(`Invalid VM file name ${JSON.stringify(name)} in a VM record: expected a file name in ${hostLayout(host).vms}`);
  await hostFiles(host).remove(join(hostLayout(host).vms, name));
}
