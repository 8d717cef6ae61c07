import { document, serialize } from './builder.js';
import type { El } from './dom.js';
import { parseRoot } from './dom.js';
import { XmlParseError, XmlRenderError } from './errors.js';
import { VOLUME_DEFAULTS } from './defaults.js';
import { attr, objectName, text } from './text.js';
import type { BackupSpec, DirPoolSpec, ParsedPool, ParsedVolume, VolumeSpec } from './types.js';

/**
 * A <volume> for STORAGE_VOL_CREATE_XML. With `backing` it is a copy-on-write overlay
 * whose creation costs nothing however large the stemcell below it is.
 */
export function renderVolume(v: VolumeSpec): string {
  const doc = document();
  const volume = doc.ele('volume', { type: v.format === 'dir' ? 'dir' : VOLUME_DEFAULTS.type });
  volume.ele('name').txt(objectName('volume name', v.name));
  volume.ele('capacity', { unit: VOLUME_DEFAULTS.unit }).txt(bytes('capacityBytes', v.capacityBytes));
  if (v.allocationBytes !== undefined) {
    volume.ele('allocation', { unit: VOLUME_DEFAULTS.unit }).txt(bytes('allocationBytes', v.allocationBytes));
  }
  const target = volume.ele('target');
  target.ele('format', { type: v.format });
  // libvirt makes directories 0600 unless told (measured on 9.0)
  if (v.mode !== undefined) target.ele('permissions').ele('mode').txt(fileMode(v.mode));
  if (v.backing) {
    const backing = volume.ele('backingStore');
    backing.ele('path').txt(text('backing path', v.backing.path));
    backing.ele('format', { type: v.backing.format });
  }
  return serialize(doc);
}

export function parseVolume(xml: string): ParsedVolume {
  const volume = parseRoot(xml, 'volume');
  const parsed: ParsedVolume = {
    name: volume.required('name').text,
    capacityBytes: sizeInBytes(volume.required('capacity')),
    allocationBytes: volume.child('allocation') ? sizeInBytes(volume.required('allocation')) : 0n,
    format: volume.at('target', 'format')?.attr('type') ?? 'raw',
    path: volume.textOf('target', 'path') ?? '',
  };
  // libvirt writes an empty <backingStore/> for volumes without one.
  const backingPath = volume.textOf('backingStore', 'path');
  if (backingPath) {
    parsed.backing = { path: backingPath, format: volume.at('backingStore', 'format')?.attr('type') ?? 'raw' };
  }
  return parsed;
}

/** A directory-backed pool for STORAGE_POOL_DEFINE_XML. */
export function renderDirPool(p: DirPoolSpec): string {
  const doc = document();
  const pool = doc.ele('pool', { type: 'dir' });
  pool.ele('name').txt(objectName('pool name', p.name));
  pool.ele('target').ele('path').txt(text('pool path', p.path));
  return serialize(doc);
}

export function parsePool(xml: string): ParsedPool {
  const pool = parseRoot(xml, 'pool');
  return {
    name: pool.required('name').text,
    type: pool.requiredAttr('type'),
    path: pool.textOf('target', 'path') ?? '',
  };
}

function bytes(field: string, value: bigint): string {
  if (value < 0n) throw new XmlRenderError(field, String(value), 'must not be negative');
  return value.toString();
}

// libvirt answers in bytes, but a hand-written or older document may use any unit
// from formatstorage ("KiB", "G", "MB", …).
const UNITS: Record<string, bigint> = {
  b: 1n, bytes: 1n,
  k: 1024n, kib: 1024n, kb: 1000n,
  m: 1024n ** 2n, mib: 1024n ** 2n, mb: 1000n ** 2n,
  g: 1024n ** 3n, gib: 1024n ** 3n, gb: 1000n ** 3n,
  t: 1024n ** 4n, tib: 1024n ** 4n, tb: 1000n ** 4n,
  p: 1024n ** 5n, pib: 1024n ** 5n, pb: 1000n ** 5n,
  e: 1024n ** 6n, eib: 1024n ** 6n, eb: 1000n ** 6n,
};

function sizeInBytes(el: El): bigint {
  const raw = el.text.trim();
  const unit = (el.attr('unit') ?? 'bytes').toLowerCase();
  const factor = UNITS[unit];
  if (!/^\d+$/.test(raw) || factor === undefined) {
    throw new XmlParseError(`<${el.name}> ${JSON.stringify(raw)} ${JSON.stringify(unit)} is not a size`);
  }
  return BigInt(raw) * factor;
}

/**
 * A <domainbackup> that copies one disk, as it is at the moment the job starts, into
 * `targetFile`; the domain's other disks are not listed and so not backed up.
 */
export function renderBackup(b: BackupSpec): string {
  const doc = document();
  const disk = doc.ele('domainbackup', { mode: 'push' }).ele('disks')
    .ele('disk', { name: attr('backup disk', b.disk), backup: 'yes', type: 'file' });
  disk.ele('driver', { type: b.format });
  disk.ele('target', { file: attr('backup target file', b.targetFile) });
  return serialize(doc);
}

function fileMode(mode: number): string {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new XmlRenderError('mode', String(mode), 'must be a file mode 0..07777');
  return `0${mode.toString(8)}`;
}
