// Stemcell images for VirtualBox: create_stemcell's `image` made into one disk file that
// VirtualBox opens as a writable base.
//
//   - vsphere-ovf / general-ovf: `image` is a gzipped tar of image.ovf, image.mf and
//     image-disk1.vmdk (bosh-linux-stemcell-builder stages image_ovf_generate and
//     prepare_ovf_image_stemcell). The OVF names the disk file and its capacity, and
//     ovftool writes the VMX's `firmware = "efi"` as <vmw:Config vmw:key="firmware">.
//     image.mf holds `SHA1(file)= hex` (or SHA256) lines; every file used must match.
//   - openstack-qcow2 / openstack-raw: `image` is a gzipped tar holding root.img.
//
// The result is always a VDI, VirtualBox's own format, written by `qemu-img convert`:
//   - the OVF's disk is a streamOptimized VMDK, which VirtualBox opens read-only (it is a
//     format for transport), so it cannot be a VM's root disk as it is;
//   - libvirt's vbox driver cannot make differencing images (docs/vbox-notes.md), so each
//     VM's root disk is a full copy of this base: a dynamic VDI copies only used blocks;
//   - a VDI written by qemu-img carries a fresh random UUID, and VirtualBox refuses to
//     register two media with one UUID: converting again (never `cp`) gives each copy
//     its own. vdiUuid() reads it back: it is the medium's id that VirtualBox (and the
//     libvirt volume key) reports, and the guest's ATA serial starts with it.
// Monolithic sparse VMDK is offered too (VirtualBox writes it), for hosts that want it.
//
// Nothing half-made stays behind: the archive is unpacked into a hidden work directory
// beside the result and removed in every case; the disk is converted to
// `.<name>.partial` and only then linked to its final name (refusing to replace a file).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CloudError, badInput } from '../../errors.js';
import { readFileHead } from '../../util/file-head.js';
import { notRegularFile } from '../../util/regular-file.js';
import { parseRoot, type El } from '../../xml/dom.js';
import { eachEntry, fileStream } from '../lxc/tar-input.js';
import type { CloudProperties } from '../driver.js';

export type VboxDiskFormat = 'vdi' | 'vmdk';
export type StemcellSourceKind = 'ovf' | 'qcow2' | 'raw';
export type Firmware = 'bios' | 'efi';

export interface OvfDisk {
  /** the disk file the OVF references (ovf:href of its <File>) */
  file: string;
  /** ovf:size of the <File>, when given */
  fileSize?: number;
  /** the guest-visible size: ovf:capacity × ovf:capacityAllocationUnits */
  capacityBytes: bigint;
  /** ovf:format of the <Disk>, e.g. …vmdk.html#streamOptimized */
  format?: string;
}

export interface OvfInfo {
  disks: OvfDisk[];
  /** from <vmw:Config vmw:key="firmware">; 'bios' when the OVF says nothing */
  firmware: Firmware;
  /** the value as written, when the OVF names a firmware */
  firmwareHint?: string;
}

export interface ManifestEntry {
  algorithm: 'sha1' | 'sha256';
  file: string;
  digest: string;
}

export interface ImportOptions {
  /** create_stemcell's image_path */
  imagePath: string;
  /** create_stemcell's cloud_properties (disk_format is checked against the content) */
  cloudProperties: CloudProperties;
  /** an existing absolute directory the VirtualBox host reads */
  destDir: string;
  /** the result's base name (without extension), e.g. the stemcell CID */
  name: string;
  /** 'vdi' unless asked */
  format?: VboxDiskFormat;
  /** the qemu-img binary (tests, hosts with it elsewhere) */
  qemuImg?: string;
}

export interface StemcellDisk {
  /** the disk file written: `<destDir>/<name>.vdi` (or .vmdk) */
  path: string;
  format: VboxDiskFormat;
  /** what `image` held */
  source: StemcellSourceKind;
  /** the disk size the guest sees, bytes */
  virtualSize: bigint;
  /** what the stemcell boots with: vSphere stemcells say EFI in their OVF */
  firmware: Firmware;
  /** the VDI's image UUID (VirtualBox's medium id); undefined for VMDK */
  uuid?: string;
  /** the manifest algorithm that verified the OVF's files, when there was a manifest */
  verifiedWith?: 'sha1' | 'sha256';
}

const OVF_FILE = 'image.ovf';
const MF_FILE = 'image.mf';
const ROOT_IMG = 'root.img';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);
const VMDK_MAGIC = Buffer.from('KDMV');
const VDI_SIGNATURE = 0xbeda107f;

/** What cloud_properties.disk_format declares, if anything: 'ovf', 'qcow2' or 'raw'. */
export function declaredSource(props: CloudProperties): StemcellSourceKind | undefined {
  const v = props?.disk_format;
  if (v === undefined || v === null) return undefined;
  if (v === 'ovf' || v === 'qcow2' || v === 'raw') return v;
  throw badInput('cloud_properties.disk_format', v, '"ovf" (vsphere-ovf, general-ovf), "qcow2" (openstack-qcow2) or "raw" (openstack-raw)');
}

/** Reads image.ovf: the disk files with their capacities, and the firmware hint. */
export function parseOvf(xml: string): OvfInfo {
  let envelope: El;
  try {
    envelope = parseRoot(xml.replace(/^\uFEFF/, ''), 'Envelope');
  } catch (e) {
    throw new CloudError(`Stemcell ${OVF_FILE} is not an OVF envelope: ${(e as Error).message}`);
  }
  const files = new Map<string, { href: string; size?: number }>();
  for (const f of envelope.child('References')?.children('File') ?? []) {
    const id = ovfAttr(f, 'id');
    const href = ovfAttr(f, 'href');
    if (id === undefined || href === undefined) throw new CloudError(`Stemcell ${OVF_FILE}: a <References><File> lacks ovf:id or ovf:href`);
    const size = ovfAttr(f, 'size');
    files.set(id, { href, ...(size !== undefined ? { size: nonNegativeInt(`${OVF_FILE} File ${href} ovf:size`, size) } : {}) });
  }
  const disks: OvfDisk[] = [];
  for (const d of envelope.child('DiskSection')?.children('Disk') ?? []) {
    const ref = ovfAttr(d, 'fileRef');
    const capacity = ovfAttr(d, 'capacity');
    if (ref === undefined) throw new CloudError(`Stemcell ${OVF_FILE}: a <Disk> has no ovf:fileRef (an empty disk; expected the stemcell's root disk)`);
    if (capacity === undefined) throw new CloudError(`Stemcell ${OVF_FILE}: the <Disk> of ${ref} has no ovf:capacity`);
    const file = files.get(ref);
    if (!file) throw new CloudError(`Stemcell ${OVF_FILE}: <Disk ovf:fileRef=${JSON.stringify(ref)}> names no <References><File>`);
    const units = ovfAttr(d, 'capacityAllocationUnits');
    const format = ovfAttr(d, 'format');
    disks.push({
      file: file.href,
      ...(file.size !== undefined ? { fileSize: file.size } : {}),
      capacityBytes: BigInt(nonNegativeInt(`${OVF_FILE} Disk ${file.href} ovf:capacity`, capacity)) * allocationUnits(units),
      ...(format !== undefined ? { format } : {}),
    });
  }
  // ovftool writes the VMX's firmware setting into the VirtualHardwareSection; VirtualBox's
  // own export carries <vbox:Machine><Hardware><Firmware type="EFI"/>.
  const system = envelope.child('VirtualSystem');
  const config = system?.child('VirtualHardwareSection')?.children('Config').find((c) => (c.attr('vmw:key') ?? c.attr('key')) === 'firmware');
  const hint = config?.attr('vmw:value') ?? config?.attr('value') ?? system?.at('Machine', 'Hardware', 'Firmware')?.attr('type');
  return { disks, firmware: hint !== undefined && /^efi/i.test(hint) ? 'efi' : 'bios', ...(hint !== undefined ? { firmwareHint: hint } : {}) };
}

/** Reads image.mf: `SHA1(name)= hex` / `SHA256(name)= hex` lines (ovftool, VirtualBox). */
export function parseManifest(text: string): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^(SHA1|SHA256)\((.+)\)\s*=\s*([0-9A-Fa-f]+)$/.exec(line);
    if (!m) throw new CloudError(`Stemcell ${MF_FILE} line ${i + 1}: got ${JSON.stringify(line.slice(0, 120))}, expected "SHA1(<file>)= <hex>" or "SHA256(<file>)= <hex>"`);
    const algorithm = m[1] === 'SHA1' ? 'sha1' : 'sha256';
    const digest = m[3]!.toLowerCase();
    if (digest.length !== (algorithm === 'sha1' ? 40 : 64)) {
      throw new CloudError(`Stemcell ${MF_FILE} line ${i + 1}: the ${m[1]} digest of ${m[2]} has ${digest.length} hex digits, expected ${algorithm === 'sha1' ? 40 : 64}`);
    }
    out.push({ algorithm, file: m[2]!, digest });
  }
  return out;
}

/**
 * Makes `<destDir>/<name>.vdi` (or .vmdk) from a stemcell image. Throws a CloudError
 * naming the field or file at fault; on any failure nothing new is left in destDir.
 */
export async function importStemcellImage(opts: ImportOptions): Promise<StemcellDisk> {
  const { imagePath, destDir, name } = opts;
  const format = opts.format ?? 'vdi';
  const qemuImg = opts.qemuImg ?? 'qemu-img';
  if (typeof imagePath !== 'string' || imagePath === '' || imagePath.includes('\0')) throw badInput('image_path', imagePath, 'a file path');
  if (typeof destDir !== 'string' || !isAbsolute(destDir) || destDir.includes('\0')) throw badInput('stemcell directory', destDir, 'an absolute directory path');
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw badInput('stemcell file name', name, 'letters, digits, "_", "." or "-" (up to 200), starting with a letter or digit');
  if (format !== 'vdi' && format !== 'vmdk') throw badInput('stemcell disk format', format, '"vdi" or "vmdk"');
  const declared = declaredSource(opts.cloudProperties);
  await mustBeRegularFile(imagePath);
  const dirStat = await stat(destDir).catch((e: Error) => {
    throw new CloudError(`Cannot use stemcell directory ${destDir}: ${e.message}`);
  });
  if (!dirStat.isDirectory()) throw badInput('stemcell directory', destDir, 'a directory');

  const finalPath = join(destDir, `${name}.${format}`);
  const partial = join(destDir, `.${name}.${format}.partial`);
  if (await exists(finalPath)) throw new CloudError(`Stemcell disk ${finalPath} exists already; it is not replaced`);
  const work = await mkdtemp(join(destDir, `.${name}.unpack-`));
  let linked = false;
  try {
    const files = await unpack(imagePath, work);
    const source = await detectSource(files, work, imagePath);
    if (declared !== undefined && declared !== source) {
      throw badInput('cloud_properties.disk_format', declared, `${JSON.stringify(source)}: the image holds ${source === 'ovf' ? 'image.ovf' : `root.img, a ${source} image`}`);
    }
    let input: { path: string; format: 'vmdk' | 'qcow2' | 'raw' };
    let firmware: Firmware = 'bios';
    let ovfCapacity: bigint | undefined;
    let verifiedWith: 'sha1' | 'sha256' | undefined;
    if (source === 'ovf') {
      const ovf = parseOvf(await readText(join(work, OVF_FILE)));
      if (ovf.disks.length !== 1) {
        throw new CloudError(`Stemcell ${OVF_FILE} lists ${ovf.disks.length} disks (${ovf.disks.map((d) => d.file).join(', ') || 'none'}), expected exactly one: the root disk`);
      }
      const disk = ovf.disks[0]!;
      const unpacked = files.get(disk.file);
      if (!unpacked) throw new CloudError(`Stemcell image ${imagePath} lacks ${JSON.stringify(disk.file)}, the disk file ${OVF_FILE} names`);
      if (disk.fileSize !== undefined && disk.fileSize !== unpacked.size) {
        throw new CloudError(`Stemcell disk file ${disk.file} has ${unpacked.size} bytes, but ${OVF_FILE} says ovf:size=${disk.fileSize}`);
      }
      if (files.has(MF_FILE)) {
        const entries = parseManifest(await readText(join(work, MF_FILE)));
        verifiedWith = verifyManifest(files, entries, [OVF_FILE, disk.file]);
      }
      input = { path: join(work, disk.file), format: 'vmdk' };
      firmware = ovf.firmware;
      ovfCapacity = disk.capacityBytes;
    } else {
      input = { path: join(work, ROOT_IMG), format: source };
    }

    const info = await inspect(qemuImg, input.path, input.format);
    if (ovfCapacity !== undefined && ovfCapacity !== info.virtualSize) {
      throw new CloudError(`Stemcell disk file is ${info.virtualSize} bytes to the guest, but ${OVF_FILE} gives its capacity as ${ovfCapacity} bytes`);
    }
    await convert(qemuImg, { path: input.path, format: info.format }, partial, format);
    await link(partial, finalPath).catch((e: NodeJS.ErrnoException) => {
      throw new CloudError(
        e.code === 'EEXIST' ? `Stemcell disk ${finalPath} appeared while it was being made; it is not replaced` : `Cannot move the stemcell disk to ${finalPath}: ${e.message}`,
      );
    });
    linked = true;
    const uuid = format === 'vdi' ? await vdiUuid(finalPath) : undefined;
    return {
      path: finalPath,
      format,
      source,
      virtualSize: info.virtualSize,
      firmware,
      ...(uuid !== undefined ? { uuid } : {}),
      ...(verifiedWith !== undefined ? { verifiedWith } : {}),
    };
  } catch (e) {
    if (linked) await rm(finalPath, { force: true });
    throw e;
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The image UUID of a VDI file, as VirtualBox spells it. VDI keeps RTUUIDs in memory
 * layout: the first three fields little-endian, the last eight bytes as they are.
 */
export async function vdiUuid(path: string): Promise<string> {
  return vdiUuidOf(await readFileHead(path, VDI_HEAD_BYTES), path);
}

/** How many bytes of a VDI's start vdiUuidOf needs. */
export const VDI_HEAD_BYTES = 0x198;

/** The image UUID in a VDI's first VDI_HEAD_BYTES bytes (`path` names it in the error). */
export function vdiUuidOf(head: Buffer, path: string): string {
  if (head.length < VDI_HEAD_BYTES || head.readUInt32LE(0x40) !== VDI_SIGNATURE) throw new CloudError(`${path} is not a VDI image (no VDI signature at byte 0x40)`);
  const u = head.subarray(0x188, 0x198);
  const hex = (b: Buffer) => b.toString('hex');
  return [
    u.readUInt32LE(0).toString(16).padStart(8, '0'),
    u.readUInt16LE(4).toString(16).padStart(4, '0'),
    u.readUInt16LE(6).toString(16).padStart(4, '0'),
    hex(u.subarray(8, 10)),
    hex(u.subarray(10, 16)),
  ].join('-');
}

interface Unpacked {
  size: number;
  sha1: string;
  sha256: string;
}

/**
 * Writes the archive's top-level regular files that a stemcell image may hold (image.ovf,
 * image.mf, *.vmdk, root.img) into `work`, hashing them on the way; skips everything else
 * (directories, links, other names), so nothing lands outside `work`.
 */
async function unpack(imagePath: string, work: string): Promise<Map<string, Unpacked>> {
  const files = new Map<string, Unpacked>();
  await mkdir(work, { recursive: true });
  try {
    await eachEntry(fileStream(imagePath), async ({ header, body }) => {
      const name = header.name.replace(/^(\.\/)+/, '');
      const wanted = header.type === 'file' && !name.includes('/') && (name === OVF_FILE || name === MF_FILE || name === ROOT_IMG || /^[A-Za-z0-9][A-Za-z0-9_.-]*\.vmdk$/.test(name));
      if (!wanted) {
        body.resume();
        return;
      }
      if (files.has(name)) throw new CloudError(`Stemcell image ${imagePath} holds ${name} twice`);
      const sha1 = createHash('sha1');
      const sha256 = createHash('sha256');
      let size = 0;
      const out = createWriteStream(join(work, name), { flags: 'wx' });
      await pipeline(
        body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const chunk of src) {
            sha1.update(chunk);
            sha256.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        out,
      );
      files.set(name, { size, sha1: sha1.digest('hex'), sha256: sha256.digest('hex') });
    });
  } catch (e) {
    if (e instanceof CloudError) throw e;
    throw new CloudError(`Cannot read stemcell image ${imagePath}: ${(e as Error).message} (expected a gzipped tarball of image.ovf, image.mf and the VMDK, or of root.img)`);
  }
  return files;
}

/** 'ovf' when the image holds image.ovf; for root.img, qcow2 or raw from its first bytes. */
async function detectSource(files: Map<string, Unpacked>, work: string, imagePath: string): Promise<StemcellSourceKind> {
  if (files.has(OVF_FILE)) {
    if (files.has(ROOT_IMG)) throw new CloudError(`Stemcell image ${imagePath} holds both ${OVF_FILE} and ${ROOT_IMG}; expected one layout`);
    return 'ovf';
  }
  if (files.has(ROOT_IMG)) {
    if (files.get(ROOT_IMG)!.size === 0) throw new CloudError(`Stemcell image ${imagePath}: root.img is empty`);
    const head = await readFileHead(join(work, ROOT_IMG), 4);
    if (head.equals(VMDK_MAGIC)) throw new CloudError(`Stemcell image ${imagePath}: root.img is a VMDK image; expected qcow2 (openstack-qcow2) or raw (openstack-raw)`);
    return head.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  }
  throw new CloudError(
    `Stemcell image ${imagePath} holds neither ${OVF_FILE} (vsphere-ovf, general-ovf) nor ${ROOT_IMG} (openstack-qcow2, openstack-raw); found ${[...files.keys()].join(', ') || 'no usable file'}`,
  );
}

/** Checks every manifest line against the unpacked files; `needed` must all be listed. Returns the strongest algorithm used. */
function verifyManifest(files: Map<string, Unpacked>, entries: ManifestEntry[], needed: string[]): 'sha1' | 'sha256' {
  for (const entry of entries) {
    const file = files.get(entry.file);
    if (!file) throw new CloudError(`Stemcell ${MF_FILE} lists ${entry.file}, which the image does not hold`);
    const actual = entry.algorithm === 'sha1' ? file.sha1 : file.sha256;
    if (actual !== entry.digest) {
      throw new CloudError(`Stemcell file ${entry.file} does not match ${MF_FILE}: its ${entry.algorithm.toUpperCase()} is ${actual}, the manifest says ${entry.digest}`);
    }
  }
  for (const n of needed) {
    if (!entries.some((e) => e.file === n)) throw new CloudError(`Stemcell ${MF_FILE} has no digest for ${n}; expected one for every file the stemcell uses`);
  }
  const algorithms = new Set(entries.map((e) => e.algorithm));
  return algorithms.has('sha256') ? 'sha256' : 'sha1';
}

interface ImageInfo {
  virtualSize: bigint;
  /** the format qemu-img reads it as */
  format: 'vmdk' | 'qcow2' | 'raw';
}

/**
 * `qemu-img info` on the unpacked disk, refusing what would make qemu-img read other
 * files: a qcow2 backing file or external data file, a VMDK that is a text descriptor
 * or has extents elsewhere.
 */
async function inspect(qemuImg: string, path: string, fmt: 'vmdk' | 'qcow2' | 'raw'): Promise<ImageInfo> {
  if (fmt === 'vmdk' && !(await readFileHead(path, 4)).equals(VMDK_MAGIC)) {
    throw new CloudError(`Stemcell disk file ${basename(path)} is not a sparse VMDK (no KDMV magic); expected the streamOptimized VMDK of an OVF stemcell`);
  }
  const out = await run(qemuImg, ['info', '--output=json', '-f', fmt, path]).catch((e: Error) => {
    throw new CloudError(`Stemcell disk file ${basename(path)} is not a readable ${fmt} image: ${e.message}`);
  });
  const info = JSON.parse(out) as {
    'virtual-size': number;
    'backing-filename'?: string;
    'format-specific'?: { type?: string; data?: { 'data-file'?: string; 'create-type'?: string; extents?: Array<{ filename?: string }> } };
  };
  if (info['backing-filename'] !== undefined) throw new CloudError(`Stemcell disk file ${basename(path)} has a backing file (${info['backing-filename']}); expected a self-contained image`);
  const data = info['format-specific']?.data;
  if (data?.['data-file'] !== undefined) throw new CloudError(`Stemcell disk file ${basename(path)} has an external data file (${data['data-file']}); expected a self-contained image`);
  if (fmt === 'vmdk') {
    const type = data?.['create-type'];
    if (type !== 'streamOptimized' && type !== 'monolithicSparse') throw new CloudError(`Stemcell disk file ${basename(path)} is a ${type ?? 'unknown'} VMDK; expected streamOptimized or monolithicSparse`);
    if ((data?.extents ?? []).some((x) => x.filename !== undefined && x.filename !== path)) throw new CloudError(`Stemcell disk file ${basename(path)} has extents in other files; expected a single-file VMDK`);
  }
  return { virtualSize: BigInt(info['virtual-size']), format: fmt };
}

async function convert(qemuImg: string, input: { path: string; format: 'vmdk' | 'qcow2' | 'raw' }, out: string, format: VboxDiskFormat): Promise<void> {
  const from = input.format;
  const target = format === 'vdi' ? ['-O', 'vdi'] : ['-O', 'vmdk', '-o', 'subformat=monolithicSparse'];
  await run(qemuImg, ['convert', '-f', from, ...target, input.path, out]).catch((e: Error) => {
    throw new CloudError(`Converting the stemcell disk to ${format.toUpperCase()} failed: ${e.message}`);
  });
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args[0]}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

async function readText(path: string): Promise<string> {
  const f = await open(path, 'r');
  try {
    return await f.readFile('utf8');
  } finally {
    await f.close();
  }
}

async function mustBeRegularFile(path: string): Promise<void> {
  let kind: string | undefined;
  try {
    kind = await notRegularFile(path);
  } catch (e) {
    throw new CloudError(`Cannot read stemcell image ${path}: ${(e as Error).message}`);
  }
  if (kind) throw badInput('image_path', path, `a regular file (a gzipped tarball), not ${kind}`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function ovfAttr(el: El, local: string): string | undefined {
  return el.attr(`ovf:${local}`) ?? el.attr(local);
}

function nonNegativeInt(field: string, value: string): number {
  if (!/^[0-9]{1,15}$/.test(value)) throw new CloudError(`Stemcell ${field}: got ${JSON.stringify(value)}, expected a whole number`);
  return Number(value);
}

/** ovf:capacityAllocationUnits: absent or "byte" (1), or "byte * 2^N" (DSP0004 programmatic units). */
function allocationUnits(units: string | undefined): bigint {
  if (units === undefined || units.trim() === 'byte') return 1n;
  const m = /^byte\s*\*\s*2\^(\d{1,2})$/.exec(units.trim());
  if (!m) throw new CloudError(`Stemcell ${OVF_FILE}: ovf:capacityAllocationUnits ${JSON.stringify(units)} is not understood; expected "byte" or "byte * 2^N"`);
  return 1n << BigInt(m[1]!);
}
