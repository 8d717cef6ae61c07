// A define whose answer never came (the connection dropped, or the daemon answered later
// than libvirt.call_timeout_seconds) may still be queued in libvirtd: the daemon runs a
// request it has read to its end, also after its client is gone, and possibly much later.
// Looking the name up cannot tell "not yet" from "never". A FENCE can: libvirt refuses to
// define a domain whose name exists with another UUID ("domain 'x' already exists with
// uuid …", checked under the domain list's lock in every driver). So a tiny domain of the
// same name and a NEW uuid, defined on a fresh connection, settles it for good:
//   - its define succeeds: the pending define can never succeed afterwards;
//   - it fails naming the original's uuid: the original define happened.
// A fence has no disks, no NICs and never runs; it holds no address and no volume. It
// carries <fence xmlns="urn:bosh-libvirt-cpi:fence:1"> metadata (whose create_vm, why,
// when), and its uuid starts with FENCE_UUID_HEAD so that a lookup can tell it apart
// without reading XML in the common case. The CPI's methods treat a fence as no VM;
// `orphans` lists it and removes it once older than --min-age.
import { randomInt, randomUUID } from 'node:crypto';
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from './host.js';
import { isConnectionLost, reconnect } from './reconnect.js';
import { creatorMarker, type CreatorMarker } from './creator.js';
import { CallTimeoutError, ErrorCode, isLibvirtError, type DomainRef } from '../../libvirt/index.js';
import { parseFence, renderFenceDomain, type FenceRecord } from '../../xml/index.js';

export { FENCE_NS } from '../../xml/index.js';
const FENCE_UUID_HEAD = 'fe0cefe0';

/** A fence's record (src/xml/fence.ts renders and parses it): the VM name it fences, why, and its creator. */
export type FenceInfo = FenceRecord & CreatorMarker;

/** A uuid for a VM's domain: never one that looks like a fence's. */
export function vmUuid(): string {
  for (;;) {
    const u = randomUUID();
    if (!u.startsWith(FENCE_UUID_HEAD)) return u;
  }
}

function fenceUuid(): string {
  return FENCE_UUID_HEAD + randomUUID().slice(FENCE_UUID_HEAD.length);
}

/** Whether a domain may be a fence (its uuid says so); parseFence (src/xml) on its XML is the proof. */
export function mayBeFence(ref: DomainRef): boolean {
  return ref.uuid.toString('hex').startsWith(FENCE_UUID_HEAD);
}

export function uuidString(ref: DomainRef): string {
  const h = ref.uuid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The domain type and <os> of a fence: whatever the driver accepts without disks or devices. */
export function fenceDomainType(uri: string, vmType?: string): string {
  if (vmType) return vmType;
  const driver = /^([a-z0-9]+)/i.exec(uri)?.[1]?.toLowerCase();
  return driver === 'lxc' ? 'lxc' : driver === 'test' ? 'test' : 'qemu';
}

/** The domain of that name, when it is a fence: its record and reference. */
export async function findFence(host: Host, name: string): Promise<{ ref: DomainRef; info: FenceInfo } | null> {
  try {
    const ref = await host.conn.domains.lookupByName(name);
    if (!mayBeFence(ref)) return null;
    const info = parseFence(await host.conn.domains.getXMLDesc(ref, 0));
    return info ? { ref, info } : null;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return null;
    throw e;
  }
}

/** Whether `ref` is a fence (reads its XML only when its uuid looks like one). */
export async function isFence(host: Host, ref: DomainRef): Promise<boolean> {
  if (!mayBeFence(ref)) return false;
  try {
    return parseFence(await host.conn.domains.getXMLDesc(ref, 0)) !== undefined;
  } catch (e) {
    if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) return false;
    throw e;
  }
}

export type FenceOutcome =
  /** a fence holds the name (made now, or already there): no define of another uuid can succeed */
  | { state: 'fenced'; uuid: string; made: boolean }
  /** a domain that is no fence holds the name: the define happened (its uuid) */
  | { state: 'defined'; uuid: string };

/** How often a fence define whose own answer is lost or late is tried again, each on a new connection. */
const FENCE_ATTEMPTS = 3;

/**
 * Settles a define of `name` whose answer never came: defines a fence of that name (on a
 * fresh connection when `fresh`), or learns that a domain of that name exists. A fence
 * define whose own answer is lost is tried again with another uuid; any fence that lands
 * blocks every other define, so an extra one landing late is harmless (`orphans` removes it).
 * Throws when it cannot settle (no connection, or the daemon answers none of the attempts).
 */
export async function fenceName(host: Host, name: string, opts: { type: string; reason: string; fresh: boolean }): Promise<FenceOutcome> {
  const tried = new Set<string>();
  let fresh = opts.fresh;
  let last: unknown;
  for (let attempt = 0; attempt < FENCE_ATTEMPTS; attempt++) {
    if (fresh) await reconnect(host);
    fresh = false;
    const uuid = fenceUuid();
    tried.add(uuid);
    try {
      await host.conn.domains.defineXML(renderFenceDomain({ type: opts.type, uuid, record: { of: name, reason: opts.reason, ...creatorMarker() } }), 0);
      host.log.warn({ name, uuid }, 'defined a fence: the define whose answer was lost can no longer succeed');
      return { state: 'fenced', uuid, made: true };
    } catch (e) {
      last = e;
      if (isConnectionLost(e) || e instanceof CallTimeoutError) {
        host.log.warn({ name, err: String(e), attempt: attempt + 1 }, 'the fence define got no answer; trying again on a new connection');
        fresh = true;
        continue;
      }
      const holder = /already exists with uuid ([0-9a-f-]{36})/i.exec(String((e as Error).message))?.[1]?.toLowerCase();
      if (!holder) throw e;
      if (tried.has(holder)) return { state: 'fenced', uuid: holder, made: true };
      const found = await findFence(host, name);
      if (found && uuidString(found.ref) === holder) return { state: 'fenced', uuid: holder, made: false };
      return { state: 'defined', uuid: holder };
    }
  }
  throw new Error(`could not settle whether domain ${name} will appear: ${FENCE_ATTEMPTS} fence defines got no answer (last: ${(last as Error)?.message ?? last})`);
}

/**
 * The undo of a volume create whose answer never came: the daemon may still create it
 * later. An empty volume of the same name, made now, keeps it from ever appearing (a
 * name that exists makes the late create fail); when the name exists already, the create
 * happened and the volume is removed. The empty volume is named like the VM's and holds
 * no data: `orphans` removes it with the VM's other volumes after --min-age. Its capacity
 * is a random odd token, so a repeat after a lost answer knows its own.
 */
export async function settleVolume(host: Host, name: string, ctx: { timedOut: boolean }): Promise<boolean | { settled: string }> {
  if (ctx.timedOut) await reconnect(host);
  const tried = new Set<bigint>();
  for (let attempt = 0; attempt < FENCE_ATTEMPTS; attempt++) {
    const token = BigInt(randomInt(2 ** 20, 2 ** 30)) * 2n + 1n;
    tried.add(token);
    try {
      await createVolume(host, { name, capacityBytes: token, allocationBytes: 0n, format: 'raw' });
      return { settled: `volume ${name} (its create got no answer; an empty volume of that name now keeps it from appearing)` };
    } catch (e) {
      if (isConnectionLost(e) || e instanceof CallTimeoutError) {
        await reconnect(host);
        continue;
      }
      const vol = await findVolume(host, name);
      if (!vol) throw e;
      if (tried.has((await volumeDetails(host, vol)).capacityBytes)) {
        return { settled: `volume ${name} (its create got no answer; an empty volume of that name now keeps it from appearing)` };
      }
      return deleteVolumeIfExists(host, name);
    }
  }
  throw new Error(`could not settle whether volume ${name} will appear: ${FENCE_ATTEMPTS} attempts got no answer`);
}

/** create_vm's undo of a volume it creates: removes it, or settles a create whose answer never came. */
export function undoVolume(host: Host, name: string): (ctx: { answerLost: boolean; timedOut: boolean }) => Promise<boolean | { settled: string }> {
  return (ctx) => (ctx.answerLost ? settleVolume(host, name, ctx) : deleteVolumeIfExists(host, name));
}
