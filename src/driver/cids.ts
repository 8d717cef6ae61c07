// CIDs are the index: stable, prefixed, carrying a uuid, and used verbatim as the
// names of the domains and volumes they stand for. Anything that does not have the
// shape of a CID this CPI made cannot name one of its resources, so lookups of such
// strings are "not found" without ever reaching libvirt (no path separators or XML
// metacharacters can leak into a volume name or an XML document).
import { randomInt, randomUUID } from 'node:crypto';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type StemcellCID = Brand<string, 'StemcellCID'>;
export type VMCID = Brand<string, 'VMCID'>;
export type DiskCID = Brand<string, 'DiskCID'>;
export type SnapshotCID = Brand<string, 'SnapshotCID'>;

export type CidKind = 'sc' | 'vm' | 'disk' | 'snap';

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

export function newCid(prefix: string, kind: 'sc'): StemcellCID;
export function newCid(prefix: string, kind: 'vm'): VMCID;
export function newCid(prefix: string, kind: 'disk'): DiskCID;
export function newCid(prefix: string, kind: 'snap'): SnapshotCID;
export function newCid(prefix: string, kind: CidKind): string {
  if (kind === 'disk' && shortDiskCids(prefix)) return `${prefix}${SHORT_DISK_MARK}${randomBase36(DISK_CID_LENGTH - prefix.length - SHORT_DISK_MARK.length)}`;
  return `${prefix}${kind}-${randomUUID()}`;
}

// Persistent disk CIDs are what the BOSH agent looks up under /dev/disk/by-id/ (the disk
// CID, not the hint's id): agents built before April 2023 glob `*<first 20 characters>`,
// later ones `*<whole CID>`, and udev names a virtio disk `virtio-<serial>` with serials
// of at most 20 characters. Only a CID of exactly 20 characters that is the disk's serial
// is found by both, so a new disk CID is `<prefix>d-<random>`, 20 characters, and its
// serial is the CID itself (serials.ts). The random part (lowercase letters and digits)
// keeps at least MIN_DISK_RANDOM characters; a name prefix longer than
// SHORT_DISK_PREFIX_MAX leaves too few, and its disks get the long form
// `<prefix>disk-<uuid>`, which agents find by the hint's path only. Disks made before
// this (the long form, whatever the prefix) keep their CIDs and serials.
export const DISK_CID_LENGTH = 20;
export const SHORT_DISK_MARK = 'd-';
export const MIN_DISK_RANDOM = 8;
export const SHORT_DISK_PREFIX_MAX = DISK_CID_LENGTH - SHORT_DISK_MARK.length - MIN_DISK_RANDOM;

/** True when disks made under `prefix` get 20-character CIDs the agent finds by ID. */
export function shortDiskCids(prefix: string): boolean {
  return prefix.length <= SHORT_DISK_PREFIX_MAX;
}

/** True for a disk CID of the 20-character form (whatever its prefix). */
export function isShortDiskCid(cid: string): boolean {
  return cid.length === DISK_CID_LENGTH && /^[a-z0-9-]*d-[a-z0-9]+$/.test(cid);
}

const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';
function randomBase36(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += BASE36[randomInt(36)];
  return s;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Splits `<prefix><kind>-<uuid>[.<suffix>]` for exactly this CPI's name prefix. The
 * prefix is what lets several directors share a host: a name with another prefix (or,
 * for an empty prefix, with any prefix at all) is another CPI's, and this one must not
 * find, change or delete it.
 */
export function parseOwnedName(prefix: string, name: string): { cid: string; kind: CidKind; suffix?: string } | null {
  const p = escapeRegExp(prefix);
  const m = new RegExp(`^(${p}(vm|sc|disk|snap)-${UUID})(?:\\.([a-z0-9_-]+))?$`).exec(name);
  if (m) return { cid: m[1]!, kind: m[2] as CidKind, ...(m[3] !== undefined ? { suffix: m[3] } : {}) };
  // The short disk form: its random part has no dash, so the last dash before it says
  // where the prefix ends, and no other prefix's disk has this shape.
  const random = DISK_CID_LENGTH - prefix.length - SHORT_DISK_MARK.length;
  if (!shortDiskCids(prefix)) return null;
  const s = new RegExp(`^(${p}${SHORT_DISK_MARK}[a-z0-9]{${random}})(?:\\.([a-z0-9_-]+))?$`).exec(name);
  if (s) return { cid: s[1]!, kind: 'disk', ...(s[2] !== undefined ? { suffix: s[2] } : {}) };
  return null;
}

/** True when `s` is a CID of `kind` that a CPI configured with name prefix `prefix` made. */
export function isCid(s: string, kind: CidKind, prefix: string): boolean {
  const owned = parseOwnedName(prefix, s);
  return owned !== null && owned.kind === kind && owned.suffix === undefined;
}

/** The uuid part, e.g. for deriving the 20-character virtio serials of long-form disk CIDs. */
export function cidUuid(cid: string): string {
  const m = new RegExp(`(${UUID})$`).exec(cid);
  if (!m) throw new Error(`not a CID: ${cid}`);
  return m[1]!;
}
