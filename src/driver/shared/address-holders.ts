// A static address belongs to one VM per libvirt network, whichever director made it,
// and so does every address of a delegated prefix (compared across the host, whose
// routing table the prefixes share).
// Who holds an address is known twice on the host: the network's DHCP reservations
// (IPv4 by MAC, IPv6 by VM name) and the CPI's metadata in every VM it made (any
// prefix). create_vm asks both before it creates anything. A reservation whose VM is
// gone holds nothing (addReservation reclaims it), so a create_vm retried after a failed
// or half-cleaned one still gets its address.
//
// Two create_vm calls for one address must not both get it, and on a subnet without DHCP
// nothing on the network can be claimed atomically. So each call checks its addresses
// and records its claim under one lock per storage pool (ADDRESS_LOCK): whichever claims
// first is seen by the other's check, before and after its domain is defined. Reading
// other domains alone cannot settle it: the call that defines first may check before the
// other has defined, see nothing and go on, whatever order the two would agree on
// afterwards. The define itself runs outside the lock: a slow daemon may take long over
// it, and every other create_vm with a static address would wait for it.
import type { Host } from './host.js';
import { ADDRESS_LOCK, CLAIMS_VOLUME } from './names.js';
import type { ClaimStore, PendingClaim, StateStores } from './profile.js';
import { parseDomain, parseFence, type ParsedNetwork, type VmMetadata } from '../../xml/index.js';
import { formatCidr, inSubnet, overlaps, sameIp, tryParseIp, type NetworkPlan, type NicAddress } from '../../network/index.js';
import { ErrorCode, isLibvirtError } from '../../libvirt/index.js';
import { CloudError } from '../../errors.js';
import { Readable } from 'node:stream';
import { createVolume, deleteVolumeIfExists, findVolume, readBufferVolume } from './host.js';
import { creatorMarker, creatorState, markerAgeSeconds } from './creator.js';

/** Each address a plan puts on a libvirt network, with that network's name. */
function networkAddresses(plan: NetworkPlan): Array<{ addr: NicAddress; network: string }> {
  const out: Array<{ addr: NicAddress; network: string }> = [];
  for (const nic of plan.nics) {
    if (nic.source.kind !== 'network') continue;
    for (const addr of [nic.ipv4, nic.ipv6]) if (addr) out.push({ addr, network: nic.source.network });
  }
  return out;
}

/** The delegated prefixes of a plan, with the libvirt network (or host bridge) of their NIC. */
function networkPrefixes(plan: NetworkPlan): Array<{ base: string; prefix: number; name: string; network: string }> {
  return plan.nics.flatMap((nic) =>
    nic.prefixes.map((p) => ({ base: p.address, prefix: p.prefix, name: p.network, network: nic.source.kind === 'network' ? nic.source.network : nic.source.bridge })),
  );
}

/**
 * What the VM's metadata records as held: its static addresses on libvirt networks and
 * its delegated prefixes (with `prefix`), on-link and routed alike, so that no other VM
 * is given an address inside a prefix or a prefix over an address.
 */
export function staticAddresses(plan: NetworkPlan): NonNullable<VmMetadata['addresses']> {
  return [
    ...networkAddresses(plan).map(({ addr, network }) => ({ network, ip: addr.address })),
    ...networkPrefixes(plan).map((p) => ({ network: p.network, ip: p.base, prefix: p.prefix })),
  ];
}

interface Claim {
  network: string;
  ip: string;
  /** set for a delegated prefix: `ip` is its base address */
  prefix?: number;
  vm: string;
  /** when the claimant's create_vm began, while it still runs (its creation mark) */
  creatingAt?: string;
  /** set for a claim of a create_vm still defining its domain (CLAIMS_VOLUME): who and since when */
  pending?: string;
}

/** What the address checks use of a backend's profile: its records, locks and claims. */
export type AddressStores = Pick<StateStores, 'records' | 'locks' | 'claims'>;

/** How a message names what holds a claim: the VM's metadata, or a create_vm's pending claim. */
function claimSource(c: Claim): string {
  if (c.pending) return c.pending;
  return `its bosh-libvirt-cpi metadata${c.creatingAt ? `; its create_vm began ${c.creatingAt}` : ''}`;
}

/**
 * ADDRESS_LOCK (names.ts) is the lock create_vm holds while it checks its addresses and
 * records its claim, taken from the profile's LockStore. It is named alike for every
 * director (no name prefix), so all CPIs that share the storage take the same one;
 * `orphans` lists it when its holder died.
 *
 * How long a call waits for ADDRESS_LOCK. Every create_vm with a static address or a
 * delegated prefix on the pool takes it twice (claim, then drop the claim), each hold a few
 * libvirt calls and never the define, so waits come from many calls at once on a loaded
 * host: 10 parallel create_vm on a host at load 15 waited past a minute (CI). The bound is
 * past STALE_MS, so a holder that died before writing its marker is broken and waited out
 * rather than failing every waiter.
 */
const ADDRESS_WAIT_MS = 240_000;

function withAddressLock<T>(host: Host, stores: AddressStores, fn: () => Promise<T>, what: string): Promise<T> {
  return stores.locks.with(host, ADDRESS_LOCK, fn, what, ADDRESS_WAIT_MS);
}

interface HostDomains {
  names: Set<string>;
  macOwner: Map<string, string>;
  claims: Claim[];
}

/**
 * Refuses an address of the plan that a defined domain already holds on the same libvirt
 * network or that lies in a prefix another domain holds, and a delegated prefix of the
 * plan that overlaps another domain's address, prefix or DHCP reservation. `self` is the
 * VM of a create_vm that has defined its domain: its own claims do not count.
 */
export async function refuseTakenAddresses(host: Host, stores: AddressStores, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>, self?: string): Promise<void> {
  if (staticAddresses(plan).length === 0) return;
  refuseTakenIn(await scanDomains(host, stores), plan, nets, self);
}

/** refuseTakenAddresses over claims already gathered (domains, and pending claims under the lock). */
function refuseTakenIn(doms: HostDomains, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>, self?: string): void {
  const wanted = networkAddresses(plan);
  const prefixes = networkPrefixes(plan);
  for (const { addr, network } of wanted) {
    const holder = holderOf(addr.address, network, nets.get(network)?.parsed, doms, self);
    if (holder) {
      throw new CloudError(`Invalid network "${addr.network}": ip ${addr.address} is already taken on libvirt network "${network}" by ${holder}; give this VM another address`);
    }
    // Prefixes are compared across the host: their routes are the host's, whatever the network.
    const prefix = doms.claims.find((c) => c.prefix !== undefined && c.vm !== self && inSubnet(addr.address, c.ip, c.prefix));
    if (prefix) {
      throw new CloudError(
        `Invalid network "${addr.network}": ip ${addr.address} lies in the delegated prefix ${formatCidr(prefix.ip, prefix.prefix!)} that VM ${prefix.vm} holds on "${prefix.network}" (${claimSource(prefix)}); give this VM an address outside it`,
      );
    }
  }
  for (const p of prefixes) {
    const block = { address: p.base, prefix: p.prefix };
    const cidr = formatCidr(p.base, p.prefix);
    const claim = doms.claims.find((c) => c.vm !== self && overlaps(block, { address: c.ip, prefix: c.prefix ?? maxPrefixOf(c.ip) }));
    if (claim) {
      const what = claim.prefix !== undefined ? `the delegated prefix ${formatCidr(claim.ip, claim.prefix)}` : `ip ${claim.ip}`;
      throw new CloudError(`Invalid network "${p.name}": delegated prefix ${cidr} overlaps ${what}, which VM ${claim.vm} holds on "${claim.network}" (${claimSource(claim)}); give this VM a prefix no other VM uses`);
    }
    const reserved = reservationIn(block, nets.get(p.network)?.parsed, doms, self);
    if (reserved) {
      throw new CloudError(`Invalid network "${p.name}": delegated prefix ${cidr} holds ${reserved.ip}, reserved on libvirt network "${p.network}" for ${reserved.owner}; give this VM a prefix no other VM uses`);
    }
  }
}

function maxPrefixOf(ip: string): number {
  return tryParseIp(ip)?.family === 'ipv4' ? 32 : 128;
}

/** A DHCP reservation of a live domain (other than `self`) inside the block. */
function reservationIn(block: { address: string; prefix: number }, net: ParsedNetwork | undefined, doms: HostDomains, self?: string): { ip: string; owner: string } | undefined {
  for (const h of (net?.ips ?? []).flatMap((s) => s.hosts ?? [])) {
    if (!inSubnet(h.ip, block.address, block.prefix)) continue;
    const owner = h.mac ? doms.macOwner.get(h.mac.toLowerCase()) : h.name && doms.names.has(h.name) ? h.name : undefined;
    if (owner && owner !== self) return { ip: h.ip, owner: `domain ${owner} (DHCP reservation ${h.mac ? `for MAC ${h.mac}` : `named ${h.name}`})` };
  }
  return undefined;
}

/**
/**
 * Claims the plan's static addresses and delegated prefixes and defines the VM's domain
 * (`define`). Under ADDRESS_LOCK, held only for the check: the addresses and prefixes are
 * checked against every domain and against the claims of calls still defining theirs
 * (CLAIMS_VOLUME), and this call's claims are added there. The define runs after the lock
 * is released (a slow daemon may take long over it), so the lock never waits on it. A claim
 * counts until its VM's domain exists (the domain's metadata then claims the addresses),
 * its creator is gone, or releaseClaims drops it after a failed create_vm.
 *
 * After the define the plan is checked once more, against domains only. That matters for a
 * call from a CPI with another storage pool (another lock and claims volume) that defined a
 * domain for the same address meanwhile: both see each other's domain, or the later one
 * sees the earlier, and whoever sees another gives way, so never two VMs get one address
 * (both may give way; a retry then gets it). A plan without static addresses on libvirt
 * networks and without delegated prefixes takes no lock.
 */
export async function defineHoldingAddresses<T>(host: Host, stores: AddressStores, plan: NetworkPlan, nets: Map<string, { parsed: ParsedNetwork }>, vm: string, define: () => Promise<T>): Promise<T> {
  const held = staticAddresses(plan);
  if (held.length === 0) return define();
  await withAddressLock(host, stores, async () => {
    const doms = await scanDomains(host, stores);
    const pending = await livePendingClaims(host, stores, doms, vm);
    for (const c of pending) {
      doms.claims.push({ network: c.network, ip: c.ip, ...(c.prefix !== undefined ? { prefix: c.prefix } : {}), vm: c.vm, pending: `its create_vm, begun ${c.at} by pid ${c.pid} on ${c.host}, checked the address and is defining its domain` });
    }
    refuseTakenIn(doms, plan, nets);
    const mine = creatorMarker();
    await stores.claims.write(host, [...pending, ...held.map((a) => ({ vm, ...a, ...mine }))]);
  }, `create_vm of ${vm}: checking its static addresses`);
  const defined = await define();
  await refuseTakenAddresses(host, stores, plan, nets, vm);
  // The domain claims the addresses now. Dropping the claim keeps the claims volume away
  // while no create_vm is between its check and its define (a failure leaves it to the
  // next holder: a claim whose VM has a domain or whose creator is gone does not count).
  await releaseClaims(host, stores, plan, vm).catch((e: unknown) => host.log.warn({ err: String(e) }, 'could not drop the address claims; the domain holds the addresses anyway'));
  return defined;
}

/**
 * The claims of calls between their check and their define, for qemu and lxc a volume in
 * the pool beside the lock (named alike for every director, as the lock). A JSON list
 * followed by a NUL byte, read and written only under ADDRESS_LOCK.
 */
const CLAIMS_BYTES = 1 << 20;
/** A claim whose creator cannot be seen (another host) counts this long at most. */
const CLAIM_MAX_AGE_S = 600;

/** The claims as the volume CLAIMS_VOLUME, written by upload: what qemu and lxc keep. */
export const volumeClaims: ClaimStore = {
  name: CLAIMS_VOLUME,
  read: readClaimsVolume,
  write: writeClaimsVolume,
  remove: (host) => deleteVolumeIfExists(host, CLAIMS_VOLUME),
};

async function readClaimsVolume(host: Host): Promise<PendingClaim[] | null> {
  const vol = await findVolume(host, CLAIMS_VOLUME);
  if (!vol) return null;
  // The list ends at its NUL: the first 64 KiB hold it but for hundreds of calls at once.
  let head = await readBufferVolume(host, vol, CLAIMS_BYTES, 65536n);
  if (!head.includes(0)) head = await readBufferVolume(host, vol, CLAIMS_BYTES);
  const text = head.toString('utf8').replace(/\0[\s\S]*$/, '');
  try {
    const list = JSON.parse(text || '[]') as PendingClaim[];
    return Array.isArray(list) ? list.filter((c) => typeof c?.vm === 'string' && typeof c.ip === 'string' && (c.prefix === undefined || typeof c.prefix === 'number')) : [];
  } catch {
    host.log.warn({ volume: CLAIMS_VOLUME }, 'unreadable address claims; starting afresh (domains still count)');
    return [];
  }
}

async function writeClaimsVolume(host: Host, claims: PendingClaim[]): Promise<void> {
  const data = Buffer.from(`${JSON.stringify(claims)}\0`);
  if (data.length > CLAIMS_BYTES) throw new CloudError(`Too many create_vm calls claiming static addresses at once (${claims.length}); retry`, { okToRetry: true });
  const vol = (await findVolume(host, CLAIMS_VOLUME)) ?? (await createVolume(host, { name: CLAIMS_VOLUME, capacityBytes: BigInt(CLAIMS_BYTES), allocationBytes: 0n, format: 'raw' }));
  await host.conn.volumes.upload(vol, Readable.from([data]), { offset: 0n, length: BigInt(data.length) });
}

/** The claims that still count (see defineHoldingAddresses), `self`'s own left out. */
async function livePendingClaims(host: Host, stores: AddressStores, doms: HostDomains, self?: string): Promise<PendingClaim[]> {
  return ((await stores.claims.read(host)) ?? []).filter((c) => {
    if (c.vm === self || doms.names.has(c.vm)) return false;
    const state = creatorState(c);
    return state === 'running' || (state === 'unknown' && markerAgeSeconds(c) < CLAIM_MAX_AGE_S);
  });
}

/** Drops the VM's claims (its domain holds the addresses, or its create_vm failed); the volume goes with the last claim. */
export async function releaseClaims(host: Host, stores: AddressStores, plan: NetworkPlan, vm: string): Promise<void> {
  if (staticAddresses(plan).length === 0) return;
  // A look without the lock first: a call that never recorded a claim (it failed before,
  // e.g. waiting for the lock) takes no lock to drop none.
  if (!((await stores.claims.read(host)) ?? []).some((c) => c.vm === vm)) return;
  await withAddressLock(host, stores, async () => {
    const claims = (await stores.claims.read(host)) ?? [];
    if (!claims.some((c) => c.vm === vm)) return;
    const rest = claims.filter((c) => c.vm !== vm);
    if (rest.length) await stores.claims.write(host, rest);
    else await stores.claims.remove(host);
  }, `create_vm of ${vm}: dropping its address claims`);
}

function holderOf(ip: string, network: string, net: ParsedNetwork | undefined, doms: HostDomains, self?: string): string | undefined {
  const claim = doms.claims.find((c) => c.prefix === undefined && c.network === network && sameIp(c.ip, ip) && c.vm !== self);
  if (claim) return `VM ${claim.vm} (${claimSource(claim)})`;
  for (const h of (net?.ips ?? []).flatMap((s) => s.hosts ?? [])) {
    if (!sameIp(h.ip, ip)) continue;
    const owner = h.mac ? doms.macOwner.get(h.mac.toLowerCase()) : h.name && doms.names.has(h.name) ? h.name : undefined;
    if (owner && owner !== self) return `domain ${owner} (DHCP reservation ${h.mac ? `for MAC ${h.mac}` : `named ${h.name}`})`;
  }
  return undefined;
}

/** Every defined domain's name, MACs and metadata claims: one listing and one XML each. */
async function scanDomains(host: Host, stores: AddressStores): Promise<HostDomains> {
  const out: HostDomains = { names: new Set(), macOwner: new Map(), claims: [] };
  for (const dom of await host.conn.domains.listAll(0)) {
    let xml: string;
    try {
      xml = await host.conn.domains.getXMLDesc(dom, 0);
    } catch (e) {
      if (isLibvirtError(e, ErrorCode.NO_DOMAIN)) continue; // undefined meanwhile: holds nothing
      throw e;
    }
    if (parseFence(xml)) continue; // a fence (fence.ts) holds no address
    out.names.add(dom.name);
    for (const nic of parseDomain(xml).interfaces) if (nic.mac) out.macOwner.set(nic.mac.toLowerCase(), dom.name);
    let metadata: VmMetadata | null;
    try {
      metadata = await stores.records.read(host, dom, xml);
    } catch {
      continue; // unreadable: its MACs above still count
    }
    if (!metadata) continue; // not made by this CPI: its MACs above still count
    const creatingAt = metadata.creating?.at;
    const by = { vm: dom.name, ...(creatingAt ? { creatingAt } : {}) };
    for (const a of [...(metadata.addresses ?? []), ...metadata.reservations]) {
      out.claims.push({ network: a.network, ip: a.ip, ...('prefix' in a && a.prefix !== undefined ? { prefix: a.prefix } : {}), ...by });
    }
    // Routed prefixes, recorded by every version (VMs made before prefixes were held too).
    for (const p of metadata.prefixes) {
      const [ip, len] = p.prefix.split('/');
      if (ip && len && tryParseIp(ip)) out.claims.push({ network: p.network, ip, prefix: Number(len), ...by });
    }
  }
  return out;
}

/**
 * For `orphans`: whether the claims volume holds any claim that still counts; with
 * `remove`, under the lock, rewrites it with only those or removes it when none is left.
 */
export async function sweepClaims(host: Host, stores: AddressStores, remove: boolean): Promise<{ live: number; removed: boolean }> {
  if (!remove) {
    const claims = await stores.claims.read(host);
    return { live: claims === null ? 0 : (await livePendingClaims(host, stores, await scanDomains(host, stores))).length, removed: false };
  }
  return withAddressLock(host, stores, async () => {
    const live = await livePendingClaims(host, stores, await scanDomains(host, stores));
    if (live.length) {
      await stores.claims.write(host, live);
      return { live: live.length, removed: false };
    }
    return { live: 0, removed: await stores.claims.remove(host) };
  }, 'orphans: dropping address claims whose create_vm is over');
}
