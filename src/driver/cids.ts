// CIDs are the index: stable, prefixed, carrying a uuid, and used verbatim as the
// names of the domains and volumes they stand for. Anything that does not have the
// shape of a CID this CPI made cannot name one of its resources, so lookups of such
// strings are "not found" without ever reaching libvirt (no path separators or XML
// metacharacters can leak into a volume name or an XML document).
import { randomUUID } from 'node:crypto';

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
  return `${prefix}${kind}-${randomUUID()}`;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Splits `<prefix><kind>-<uuid>[.<suffix>]` for exactly this CPI's name prefix. The
 * prefix is what lets several directors share a host: a name with another prefix (or,
 * for an empty prefix, with any prefix at all) is another CPI's, and this one must not
 * find, change or delete it.
 */
export function parseOwnedName(prefix: string, name: string): { cid: string; kind: CidKind; suffix?: string } | null {
  const m = new RegExp(`^(${escapeRegExp(prefix)}(vm|sc|disk|snap)-${UUID})(?:\\.([a-z0-9_-]+))?$`).exec(name);
  if (!m) return null;
  return { cid: m[1]!, kind: m[2] as CidKind, ...(m[3] !== undefined ? { suffix: m[3] } : {}) };
}

/** True when `s` is a CID of `kind` that a CPI configured with name prefix `prefix` made. */
export function isCid(s: string, kind: CidKind, prefix: string): boolean {
  const owned = parseOwnedName(prefix, s);
  return owned !== null && owned.kind === kind && owned.suffix === undefined;
}

/** The uuid part, e.g. for deriving 20-character virtio serials. */
export function cidUuid(cid: string): string {
  const m = new RegExp(`(${UUID})$`).exec(cid);
  if (!m) throw new Error(`not a CID: ${cid}`);
  return m[1]!;
}
