// A small, exact ISO9660 (ECMA-119) writer for config drives, with Rock Ridge (RRIP 1.09
// over SUSP 1.12) and Joliet, laid out the way `genisoimage -J -r` lays out a Nova config
// drive. Pure: Buffers in, one Buffer out; identical input and `now` give identical bytes.
//
// Image layout (sectors of 2048 bytes):
//   0-15   system area, zero (ECMA-119 6.2.1)
//   16     primary volume descriptor (8.4)
//   17     Joliet supplementary volume descriptor (8.5, Joliet spec escape "%/E")
//   18     volume descriptor set terminator (8.3)
//   19…    path tables: primary L, primary M, Joliet L, Joliet M (9.4)
//   …      primary directories, Joliet directories (path-table order)
//   …      SUSP continuation areas (Rock Ridge entries that do not fit in a record)
//   …      file data, each file from a sector boundary, shared by both trees
import { badInput } from '../errors.js';

export const SECTOR_SIZE = 2048;

export interface IsoFile {
  /** Slash-separated path below the root, e.g. `ec2/latest/user-data` (a leading `/` is allowed). */
  path: string;
  data: Buffer;
}

export interface IsoOptions {
  /** Written as given into the PVD (and the Joliet SVD), like `genisoimage -V`. */
  volumeId: string;
  files: IsoFile[];
  /** Every timestamp in the image; defaults to the current time. */
  now?: Date;
}

export function writeIso(opts: IsoOptions): Buffer {
  const volumeId = checkVolumeId(opts.volumeId);
  const now = opts.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw badInput('iso now', opts.now, 'a valid Date');
  const root = buildTree(opts.files);
  assignNames(root);

  const primaryDirs = pathTableOrder(root, (n) => n.iso);
  const jolietDirs = pathTableOrder(root, (n) => n.joliet);
  const primaryPt = pathTable(primaryDirs, (d) => d.iso.ident);
  const jolietPt = pathTable(jolietDirs, (d) => d.joliet.ident);

  // Record sizes never depend on locations (CE has a fixed size), so lay out first,
  // allocate sectors, then serialize with every location known.
  const continuation = new ContinuationAreas();
  const primaryLayouts = new Map<DirNode, DirLayout>();
  for (const { dir } of primaryDirs) {
    const layout = layoutDir(primaryRecords(dir, now, continuation));
    primaryLayouts.set(dir, layout);
    dir.isoSectors = layout.sectors;
  }
  const jolietLayouts = new Map<DirNode, DirLayout>();
  for (const { dir } of jolietDirs) {
    const layout = layoutDir(jolietRecords(dir, now));
    jolietLayouts.set(dir, layout);
    dir.jolietSectors = layout.sectors;
  }

  let next = 19;
  const ptSectors = sectors(primaryPt.size);
  const jptSectors = sectors(jolietPt.size);
  const primaryL = next;
  const primaryM = (next += ptSectors);
  const jolietL = (next += ptSectors);
  const jolietM = (next += jptSectors);
  next += jptSectors;
  for (const { dir } of primaryDirs) {
    dir.isoExtent = next;
    next += dir.isoSectors;
  }
  for (const { dir } of jolietDirs) {
    dir.jolietExtent = next;
    next += dir.jolietSectors;
  }
  continuation.base = next;
  next += continuation.sectors;
  for (const file of filesInOrder(root)) {
    // An empty file owns no sector; like genisoimage it points at where data would start.
    file.extent = next;
    next += sectors(file.data.length);
  }
  const total = next;

  const image = Buffer.alloc(total * SECTOR_SIZE);
  volumeDescriptor(image, 16, {
    type: 1,
    volumeId,
    total,
    now,
    ptSize: primaryPt.size,
    ptL: primaryL,
    ptM: primaryM,
    rootRecord: dirRecord({ ident: Buffer.from([0]), extent: root.isoExtent, size: root.isoSectors * SECTOR_SIZE, dir: true, date: now, su: [] }),
    text: ascii,
  });
  volumeDescriptor(image, 17, {
    type: 2,
    volumeId,
    total,
    now,
    ptSize: jolietPt.size,
    ptL: jolietL,
    ptM: jolietM,
    rootRecord: dirRecord({ ident: Buffer.from([0]), extent: root.jolietExtent, size: root.jolietSectors * SECTOR_SIZE, dir: true, date: now, su: [] }),
    text: ucs2,
  });
  terminator(image, 18);
  primaryPt.write(image, primaryL, primaryM, (d) => d.isoExtent);
  jolietPt.write(image, jolietL, jolietM, (d) => d.jolietExtent);
  for (const { dir } of primaryDirs) writeDir(image, dir.isoExtent, primaryLayouts.get(dir) as DirLayout, continuation);
  for (const { dir } of jolietDirs) writeDir(image, dir.jolietExtent, jolietLayouts.get(dir) as DirLayout, continuation);
  continuation.write(image);
  for (const file of filesInOrder(root)) file.data.copy(image, file.extent * SECTOR_SIZE);
  return image;
}

// ---------------------------------------------------------------------------------------
// The tree

interface Names {
  /** Identifier bytes as recorded (ECMA-119 7.5/7.6 for the primary tree, UCS-2 BE for Joliet). */
  ident: Buffer;
  /** Sort key parts (ECMA-119 9.3: name, then extension). */
  base: string;
  ext: string;
}

interface DirNode {
  kind: 'dir';
  name: string;
  parent: DirNode | null;
  children: Map<string, Node>;
  iso: Names;
  joliet: Names;
  isoExtent: number;
  jolietExtent: number;
  isoSectors: number;
  jolietSectors: number;
}

interface FileNode {
  kind: 'file';
  name: string;
  data: Buffer;
  iso: Names;
  joliet: Names;
  extent: number;
}

type Node = DirNode | FileNode;

const NO_NAMES: Names = { ident: Buffer.alloc(0), base: '', ext: '' };

// ECMA-119 6.8.2.1: at most eight levels including the root; deeper trees would need
// Rock Ridge relocation (RE/CL), which a config drive never needs.
const MAX_DIR_DEPTH = 7;
// NAME_MAX on Linux; Rock Ridge NM carries the name in UTF-8.
const MAX_NAME_BYTES = 255;

function buildTree(files: IsoFile[]): DirNode {
  if (!Array.isArray(files)) throw badInput('iso files', files, 'an array of {path, data}');
  const root = newDir('', null);
  for (const file of files) {
    const path = file?.path;
    if (typeof path !== 'string') throw badInput('iso file path', path, 'a string');
    if (!Buffer.isBuffer(file.data)) throw badInput(`iso file ${path} data`, typeof file.data, 'a Buffer');
    if (file.data.length > 0xffffffff) throw badInput(`iso file ${path} size`, file.data.length, 'at most 4 GiB - 1 (one extent)');
    const parts = (path.startsWith('/') ? path.slice(1) : path).split('/');
    if (parts.length - 1 > MAX_DIR_DEPTH) throw badInput('iso file path', path, `at most ${MAX_DIR_DEPTH} directories deep`);
    let dir = root;
    parts.forEach((part, i) => {
      checkComponent(path, part);
      const last = i === parts.length - 1;
      const existing = dir.children.get(part);
      if (last) {
        if (existing) throw badInput('iso file path', path, existing.kind === 'dir' ? 'a path that is not also a directory' : 'each path once');
        dir.children.set(part, { kind: 'file', name: part, data: file.data, iso: NO_NAMES, joliet: NO_NAMES, extent: 0 });
      } else if (!existing) {
        const child = newDir(part, dir);
        dir.children.set(part, child);
        dir = child;
      } else if (existing.kind === 'dir') {
        dir = existing;
      } else {
        throw badInput('iso file path', path, 'no file used as a directory');
      }
    });
  }
  return root;
}

function newDir(name: string, parent: DirNode | null): DirNode {
  return { kind: 'dir', name, parent, children: new Map(), iso: { ident: Buffer.from([0]), base: '', ext: '' }, joliet: { ident: Buffer.from([0]), base: '', ext: '' }, isoExtent: 0, jolietExtent: 0, isoSectors: 0, jolietSectors: 0 };
}

function checkComponent(path: string, part: string): void {
  if (part === '' || part === '.' || part === '..') throw badInput('iso file path', path, 'non-empty components other than "." and ".."');
  if (part.includes('\0')) throw badInput('iso file path', path, 'no NUL characters');
  if (Buffer.byteLength(part, 'utf8') > MAX_NAME_BYTES) throw badInput('iso file path', path, `components of at most ${MAX_NAME_BYTES} UTF-8 bytes`);
}

function checkVolumeId(volumeId: unknown): string {
  // Printable ASCII only: the PVD field is 32 bytes; genisoimage writes `-V` as given
  // (lowercase included), which is what blkid and /dev/disk/by-label then show.
  if (typeof volumeId !== 'string' || !/^[\x21-\x7e]{1,32}$/.test(volumeId)) {
    throw badInput('iso volumeId', volumeId, '1 to 32 printable ASCII characters without spaces');
  }
  return volumeId;
}

function childrenByRawName(dir: DirNode): Node[] {
  return [...dir.children.values()].sort((a, b) => Buffer.compare(Buffer.from(a.name, 'utf8'), Buffer.from(b.name, 'utf8')));
}

/** Depth-first over the primary tree's sort order: the file data order, deterministic. */
function filesInOrder(dir: DirNode): FileNode[] {
  const out: FileNode[] = [];
  for (const child of sortedBy(dir, (n) => n.iso)) {
    if (child.kind === 'file') out.push(child);
    else out.push(...filesInOrder(child));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Names

function assignNames(dir: DirNode): void {
  const children = childrenByRawName(dir);
  assignUnique(children, isoCandidate, isoMangle, (n, parts) => {
    n.iso = { ...parts, ident: Buffer.from(n.kind === 'dir' ? parts.base : `${parts.base}.${parts.ext};1`, 'ascii') };
  });
  assignUnique(children, jolietCandidate, jolietMangle, (n, parts) => {
    const text = n.kind === 'dir' ? joinExt(parts) : `${joinExt(parts)};1`;
    n.joliet = { ...parts, ident: ucs2Bytes(text) };
  });
  for (const child of children) if (child.kind === 'dir') assignNames(child);
}

type Parts = { base: string; ext: string };

/**
 * First every name that is already unique claims it (in raw-name order, so the result
 * does not depend on input order); then the rest get numbered variants that avoid every
 * claimed name, so a mangled name can never shadow a real one.
 */
function assignUnique(nodes: Node[], candidate: (n: Node) => Parts, mangle: (p: Parts, n: Node, k: number) => Parts, set: (n: Node, p: Parts) => void): void {
  const used = new Set<string>();
  const pending: Node[] = [];
  const key = (p: Parts) => joinExt(p);
  for (const node of nodes) {
    const parts = candidate(node);
    if (used.has(key(parts))) pending.push(node);
    else {
      used.add(key(parts));
      set(node, parts);
    }
  }
  for (const node of pending) {
    const parts = candidate(node);
    for (let k = 1; ; k++) {
      const variant = mangle(parts, node, k);
      if (!used.has(key(variant))) {
        used.add(key(variant));
        set(node, variant);
        break;
      }
    }
  }
}

function joinExt(p: Parts): string {
  return p.ext === '' ? p.base : `${p.base}.${p.ext}`;
}

function splitExt(name: string): Parts {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? { base: name, ext: '' } : { base: name.slice(0, dot), ext: name.slice(dot + 1) };
}

// Interchange level 2 (ECMA-119 7.5.1, 7.6.3): d-characters only, a directory identifier
// of at most 31, a file name plus extension of at most 30. Readers on Linux use the
// Rock Ridge name instead; these only have to be valid and unique.
const ISO_DIR_MAX = 31;
const ISO_FILE_MAX = 30;
const ISO_EXT_MAX = 8;

function dChars(s: string): string {
  return s.replace(/[a-z]/g, (c) => c.toUpperCase()).replace(/[^A-Z0-9_]/g, '_');
}

function isoCandidate(n: Node): Parts {
  if (n.kind === 'dir') return { base: dChars(n.name).slice(0, ISO_DIR_MAX), ext: '' };
  const { base, ext } = splitExt(n.name);
  const e = dChars(ext).slice(0, ISO_EXT_MAX);
  return { base: dChars(base).slice(0, ISO_FILE_MAX - e.length), ext: e };
}

function isoMangle(p: Parts, n: Node, k: number): Parts {
  const suffix = String(k).padStart(3, '0');
  const room = (n.kind === 'dir' ? ISO_DIR_MAX : ISO_FILE_MAX - p.ext.length) - suffix.length;
  return { base: p.base.slice(0, room) + suffix, ext: p.ext };
}

// Joliet allows 64 UCS-2 characters per identifier (the ";1" included) and forbids
// control characters and * / : ; ? \ ; characters beyond the BMP have no UCS-2 form.
const JOLIET_MAX = 64;

function jolietSanitize(s: string): string {
  return s.replace(/[\u0000-\u001f*/:;?\\]|[\ud800-\udfff]/g, '_');
}

function jolietCandidate(n: Node): Parts {
  const max = n.kind === 'dir' ? JOLIET_MAX : JOLIET_MAX - 2;
  const clean = jolietSanitize(n.name);
  if (clean.length <= max) return { base: clean, ext: '' };
  const { base, ext } = splitExt(clean);
  // Keep a short extension when truncating, as a reader would still want to see it.
  if (ext.length > 0 && ext.length <= 16) return { base: base.slice(0, max - ext.length - 1), ext };
  return { base: clean.slice(0, max), ext: '' };
}

function jolietMangle(p: Parts, n: Node, k: number): Parts {
  const suffix = `~${k}`;
  const max = (n.kind === 'dir' ? JOLIET_MAX : JOLIET_MAX - 2) - (p.ext === '' ? 0 : p.ext.length + 1);
  return { base: p.base.slice(0, max - suffix.length) + suffix, ext: p.ext };
}

/** ECMA-119 9.3: by name then extension, the shorter padded with spaces. */
function compareNames(a: Names, b: Names): number {
  return comparePadded(a.base, b.base) || comparePadded(a.ext, b.ext);
}

function comparePadded(a: string, b: string): number {
  const len = Math.max(a.length, b.length);
  const pa = a.padEnd(len, ' ');
  const pb = b.padEnd(len, ' ');
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}

function sortedBy(dir: DirNode, names: (n: Node) => Names): Node[] {
  return [...dir.children.values()].sort((a, b) => compareNames(names(a), names(b)));
}

// ---------------------------------------------------------------------------------------
// Path tables (ECMA-119 6.9.1, 9.4)

interface Numbered {
  dir: DirNode;
  parentNumber: number;
}

/** Directories by level, then parent number, then identifier: a breadth-first walk in sorted order. */
function pathTableOrder(root: DirNode, names: (n: Node) => Names): Numbered[] {
  const out: Numbered[] = [{ dir: root, parentNumber: 1 }];
  for (let i = 0; i < out.length; i++) {
    const { dir } = out[i] as Numbered;
    for (const child of sortedBy(dir, names)) if (child.kind === 'dir') out.push({ dir: child, parentNumber: i + 1 });
  }
  if (out.length > 0xffff) throw badInput('iso directories', out.length, 'at most 65535 directories (16-bit path table numbers)');
  return out;
}

function pathTable(dirs: Numbered[], ident: (d: DirNode) => Buffer) {
  const size = dirs.reduce((sum, { dir }) => {
    const len = ident(dir).length;
    return sum + 8 + len + (len % 2);
  }, 0);
  return {
    size,
    write(image: Buffer, lSector: number, mSector: number, extent: (d: DirNode) => number) {
      let l = lSector * SECTOR_SIZE;
      let m = mSector * SECTOR_SIZE;
      for (const { dir, parentNumber } of dirs) {
        const id = ident(dir);
        image[l] = image[m] = id.length;
        image.writeUInt32LE(extent(dir), l + 2);
        image.writeUInt32BE(extent(dir), m + 2);
        image.writeUInt16LE(parentNumber, l + 6);
        image.writeUInt16BE(parentNumber, m + 6);
        id.copy(image, l + 8);
        id.copy(image, m + 8);
        const len = 8 + id.length + (id.length % 2);
        l += len;
        m += len;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// Directory records (ECMA-119 9.1) and their layout in a directory's extent

interface RecordSpec {
  ident: Buffer;
  target: () => { extent: number; size: number };
  dir: boolean;
  date: Date;
  /** System use entries recorded in the record itself. */
  su: Buffer[];
  /** Entries moved to a continuation area, pointed to by a CE entry. */
  overflow?: ContinuationChunk;
}

interface DirLayout {
  sectors: number;
  records: Array<{ offset: number; spec: RecordSpec }>;
}

const CE_LENGTH = 28;
// A record's length is one byte and must be even (9.1.1).
const MAX_RECORD = 254;

function recordLength(ident: Buffer, suLength: number): number {
  const len = 33 + ident.length + (ident.length % 2 === 0 ? 1 : 0) + suLength;
  return len + (len % 2);
}

function specLength(spec: RecordSpec): number {
  return recordLength(spec.ident, spec.su.reduce((s, b) => s + b.length, 0) + (spec.overflow ? CE_LENGTH : 0));
}

/** 6.8.1.1: a record never spans a sector boundary; the rest of the sector stays zero. */
function layoutDir(specs: RecordSpec[]): DirLayout {
  let offset = 0;
  const records: DirLayout['records'] = [];
  for (const spec of specs) {
    const len = specLength(spec);
    if (Math.floor(offset / SECTOR_SIZE) !== Math.floor((offset + len - 1) / SECTOR_SIZE)) offset = Math.ceil(offset / SECTOR_SIZE) * SECTOR_SIZE;
    records.push({ offset, spec });
    offset += len;
  }
  return { sectors: Math.max(1, sectors(offset)), records };
}

function writeDir(image: Buffer, extent: number, layout: DirLayout, continuation: ContinuationAreas): void {
  const base = extent * SECTOR_SIZE;
  for (const { offset, spec } of layout.records) {
    const { extent: targetExtent, size } = spec.target();
    const su = spec.overflow ? [...spec.su, continuation.ceEntry(spec.overflow)] : spec.su;
    dirRecord({ ident: spec.ident, extent: targetExtent, size, dir: spec.dir, date: spec.date, su }).copy(image, base + offset);
  }
}

function dirRecord(r: { ident: Buffer; extent: number; size: number; dir: boolean; date: Date; su: Buffer[] }): Buffer {
  const suLength = r.su.reduce((s, b) => s + b.length, 0);
  const buf = Buffer.alloc(recordLength(r.ident, suLength));
  buf[0] = buf.length;
  both32(buf, 2, r.extent);
  both32(buf, 10, r.size);
  recordDate(r.date).copy(buf, 18);
  buf[25] = r.dir ? 0x02 : 0x00;
  both16(buf, 28, 1);
  buf[32] = r.ident.length;
  r.ident.copy(buf, 33);
  let at = 33 + r.ident.length + (r.ident.length % 2 === 0 ? 1 : 0);
  for (const entry of r.su) {
    entry.copy(buf, at);
    at += entry.length;
  }
  return buf;
}

function primaryRecords(dir: DirNode, now: Date, continuation: ContinuationAreas): RecordSpec[] {
  const parent = dir.parent ?? dir;
  const isRoot = dir.parent === null;
  const self = (d: DirNode) => () => ({ extent: d.isoExtent, size: d.isoSectors * SECTOR_SIZE });
  const specs: RecordSpec[] = [];
  const dot = rockRidge({ root: isRoot, mode: DIR_MODE, nlink: dirLinks(dir), date: now, name: null });
  specs.push(withSu({ ident: Buffer.from([0]), target: self(dir), dir: true, date: now }, dot, continuation));
  const dotdot = rockRidge({ root: false, mode: DIR_MODE, nlink: dirLinks(parent), date: now, name: null });
  specs.push(withSu({ ident: Buffer.from([1]), target: self(parent), dir: true, date: now }, dotdot, continuation));
  for (const child of sortedBy(dir, (n) => n.iso)) {
    const entries = rockRidge({
      root: false,
      mode: child.kind === 'dir' ? DIR_MODE : FILE_MODE,
      nlink: child.kind === 'dir' ? dirLinks(child) : 1,
      date: now,
      name: child.name,
    });
    const target = child.kind === 'dir' ? self(child) : () => ({ extent: child.extent, size: child.data.length });
    specs.push(withSu({ ident: child.iso.ident, target, dir: child.kind === 'dir', date: now }, entries, continuation));
  }
  return specs;
}

function jolietRecords(dir: DirNode, now: Date): RecordSpec[] {
  const parent = dir.parent ?? dir;
  const self = (d: DirNode) => () => ({ extent: d.jolietExtent, size: d.jolietSectors * SECTOR_SIZE });
  const specs: RecordSpec[] = [
    { ident: Buffer.from([0]), target: self(dir), dir: true, date: now, su: [] },
    { ident: Buffer.from([1]), target: self(parent), dir: true, date: now, su: [] },
  ];
  for (const child of sortedBy(dir, (n) => n.joliet)) {
    const target = child.kind === 'dir' ? self(child) : () => ({ extent: child.extent, size: child.data.length });
    specs.push({ ident: child.joliet.ident, target, dir: child.kind === 'dir', date: now, su: [] });
  }
  return specs;
}

function withSu(base: Omit<RecordSpec, 'su' | 'overflow'>, entries: Buffer[], continuation: ContinuationAreas): RecordSpec {
  const maxSu = MAX_RECORD - (33 + base.ident.length + (base.ident.length % 2 === 0 ? 1 : 0));
  const total = entries.reduce((s, b) => s + b.length, 0);
  if (total <= maxSu) return { ...base, su: entries };
  // SUSP 5.1: entries that do not fit continue in a Continuation Area named by CE.
  // Order is kept, so SP stays first in the root's "." record (SUSP 5.3).
  const su: Buffer[] = [];
  let used = 0;
  let i = 0;
  for (; i < entries.length; i++) {
    const len = (entries[i] as Buffer).length;
    if (used + len + CE_LENGTH > maxSu) break;
    su.push(entries[i] as Buffer);
    used += len;
  }
  return { ...base, su, overflow: continuation.add(Buffer.concat(entries.slice(i))) };
}

// ---------------------------------------------------------------------------------------
// Rock Ridge (RRIP 1.09, IEEE P1282 draft) over SUSP (IEEE P1281)

const DIR_MODE = 0o040555;
const FILE_MODE = 0o100444;
const RR_PX = 0x01;
const RR_NM = 0x08;
const RR_TF = 0x80;
// TF flags: modify, access, attributes; short (7-byte) form.
const TF_FLAGS = 0x02 | 0x04 | 0x08;
const NM_CONTINUE = 0x01;
const NM_MAX_CHUNK = 250;

const ER_ID = 'RRIP_1991A';
const ER_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const ER_SOURCE = 'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

function dirLinks(dir: DirNode): number {
  let n = 2;
  for (const child of dir.children.values()) if (child.kind === 'dir') n++;
  return n;
}

function rockRidge(o: { root: boolean; mode: number; nlink: number; date: Date; name: string | null }): Buffer[] {
  const entries: Buffer[] = [];
  // SUSP 5.3: SP in the root's "." record announces SUSP; Linux also needs the ER there
  // (RRIP 4.3) before it trusts any Rock Ridge entry on the volume.
  if (o.root) entries.push(Buffer.from([0x53, 0x50, 7, 1, 0xbe, 0xef, 0]));
  // RRIP 1.09 4.1.7: RR lists which entries follow; Linux skips names not flagged here.
  entries.push(Buffer.from([0x52, 0x52, 5, 1, RR_PX | RR_TF | (o.name === null ? 0 : RR_NM)]));
  const px = susp('PX', 36);
  both32(px, 4, o.mode);
  both32(px, 12, o.nlink);
  both32(px, 20, 0);
  both32(px, 28, 0);
  entries.push(px);
  const tf = susp('TF', 5 + 3 * 7);
  tf[4] = TF_FLAGS;
  const stamp = recordDate(o.date);
  for (let i = 0; i < 3; i++) stamp.copy(tf, 5 + i * 7);
  entries.push(tf);
  if (o.name !== null) {
    const bytes = Buffer.from(o.name, 'utf8');
    for (let at = 0; at < bytes.length; at += NM_MAX_CHUNK) {
      const chunk = bytes.subarray(at, at + NM_MAX_CHUNK);
      const nm = susp('NM', 5 + chunk.length);
      nm[4] = at + NM_MAX_CHUNK < bytes.length ? NM_CONTINUE : 0;
      chunk.copy(nm, 5);
      entries.push(nm);
    }
  }
  if (o.root) {
    const er = susp('ER', 8 + ER_ID.length + ER_DESCRIPTOR.length + ER_SOURCE.length);
    er[4] = ER_ID.length;
    er[5] = ER_DESCRIPTOR.length;
    er[6] = ER_SOURCE.length;
    er[7] = 1;
    er.write(ER_ID + ER_DESCRIPTOR + ER_SOURCE, 8, 'ascii');
    entries.push(er);
  }
  return entries;
}

function susp(sig: string, length: number): Buffer {
  const b = Buffer.alloc(length);
  b.write(sig, 0, 'ascii');
  b[2] = length;
  b[3] = 1;
  return b;
}

interface ContinuationChunk {
  data: Buffer;
  sector: number;
  offset: number;
}

/** Continuation areas packed into whole sectors; one area never spans a sector (SUSP 5.1). */
class ContinuationAreas {
  base = 0;
  private readonly chunks: ContinuationChunk[] = [];
  private sector = 0;
  private offset = 0;

  get sectors(): number {
    return this.chunks.length === 0 ? 0 : this.sector + 1;
  }

  add(data: Buffer): ContinuationChunk {
    if (data.length > SECTOR_SIZE) throw new Error(`internal: continuation area of ${data.length} bytes`);
    if (this.chunks.length > 0 && this.offset + data.length > SECTOR_SIZE) {
      this.sector++;
      this.offset = 0;
    }
    const chunk = { data, sector: this.sector, offset: this.offset };
    this.chunks.push(chunk);
    this.offset += data.length;
    return chunk;
  }

  ceEntry(chunk: ContinuationChunk): Buffer {
    const ce = susp('CE', CE_LENGTH);
    both32(ce, 4, this.base + chunk.sector);
    both32(ce, 12, chunk.offset);
    both32(ce, 20, chunk.data.length);
    return ce;
  }

  write(image: Buffer): void {
    for (const c of this.chunks) c.data.copy(image, (this.base + c.sector) * SECTOR_SIZE + c.offset);
  }
}

// ---------------------------------------------------------------------------------------
// Volume descriptors (ECMA-119 8.3-8.5)

type Text = (s: string, bytes: number) => Buffer;

const SYSTEM_ID = 'LINUX';
const APPLICATION_ID = 'BOSH-LIBVIRT-CPI';

function volumeDescriptor(
  image: Buffer,
  sector: number,
  d: { type: 1 | 2; volumeId: string; total: number; now: Date; ptSize: number; ptL: number; ptM: number; rootRecord: Buffer; text: Text },
): void {
  const b = image.subarray(sector * SECTOR_SIZE, (sector + 1) * SECTOR_SIZE);
  b[0] = d.type;
  b.write('CD001', 1, 'ascii');
  b[6] = 1;
  d.text(SYSTEM_ID, 32).copy(b, 8);
  d.text(d.volumeId, 32).copy(b, 40);
  both32(b, 80, d.total);
  // Joliet: the escape sequence "%/E" marks UCS-2 level 3 (Joliet spec 5).
  if (d.type === 2) b.write('%/E', 88, 'ascii');
  both16(b, 120, 1);
  both16(b, 124, 1);
  both16(b, 128, SECTOR_SIZE);
  both32(b, 132, d.ptSize);
  b.writeUInt32LE(d.ptL, 140);
  b.writeUInt32BE(d.ptM, 148);
  d.rootRecord.copy(b, 156);
  d.text('', 128).copy(b, 190); // volume set
  d.text('', 128).copy(b, 318); // publisher
  d.text('', 128).copy(b, 446); // data preparer
  d.text(APPLICATION_ID, 128).copy(b, 574);
  d.text('', 37).copy(b, 702); // copyright file
  d.text('', 37).copy(b, 739); // abstract file
  d.text('', 37).copy(b, 776); // bibliographic file
  volumeDate(d.now).copy(b, 813); // creation
  volumeDate(d.now).copy(b, 830); // modification
  volumeDate(null).copy(b, 847); // expiration: not specified
  volumeDate(d.now).copy(b, 864); // effective
  b[881] = 1;
}

function terminator(image: Buffer, sector: number): void {
  const at = sector * SECTOR_SIZE;
  image[at] = 255;
  image.write('CD001', at + 1, 'ascii');
  image[at + 6] = 1;
}

const ascii: Text = (s, bytes) => Buffer.from(s.slice(0, bytes).padEnd(bytes, ' '), 'ascii');

const ucs2: Text = (s, bytes) => {
  const b = Buffer.alloc(bytes);
  const chars = Math.floor(bytes / 2);
  const text = s.slice(0, chars).padEnd(chars, ' ');
  for (let i = 0; i < chars; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
};

function ucs2Bytes(s: string): Buffer {
  return ucs2(s, s.length * 2);
}

// ---------------------------------------------------------------------------------------
// Numbers and dates

/** ECMA-119 7.2.3: 16-bit both-byte orders, little-endian first. */
function both16(b: Buffer, at: number, v: number): void {
  b.writeUInt16LE(v, at);
  b.writeUInt16BE(v, at + 2);
}

/** ECMA-119 7.3.3: 32-bit both-byte orders, little-endian first. */
function both32(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v, at);
  b.writeUInt32BE(v, at + 4);
}

function sectors(bytes: number): number {
  return Math.ceil(bytes / SECTOR_SIZE);
}

/** ECMA-119 9.1.5: seven bytes, years since 1900, UTC (offset 0). */
function recordDate(d: Date): Buffer {
  const year = Math.min(Math.max(d.getUTCFullYear(), 1900), 2155);
  return Buffer.from([year - 1900, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), 0]);
}

/** ECMA-119 8.4.26.1: "YYYYMMDDHHMMSScc" in digits plus a GMT offset byte; all zero = not specified. */
function volumeDate(d: Date | null): Buffer {
  const b = Buffer.alloc(17);
  if (d === null) {
    b.write('0000000000000000', 0, 'ascii');
    return b;
  }
  const p = (n: number, w: number) => String(n).padStart(w, '0');
  const year = Math.min(Math.max(d.getUTCFullYear(), 1), 9999);
  const text = p(year, 4) + p(d.getUTCMonth() + 1, 2) + p(d.getUTCDate(), 2) + p(d.getUTCHours(), 2) + p(d.getUTCMinutes(), 2) + p(d.getUTCSeconds(), 2) + p(Math.floor(d.getUTCMilliseconds() / 10), 2);
  b.write(text, 0, 'ascii');
  return b;
}
