// Several libvirt hosts behind one CPI (docs/multi-host.md): a Driver that routes every
// call to one per-host LibvirtDriver. libvirt on each host stays the only state store:
// VM CIDs and long-form disk CIDs carry their birth host (`<cid>@<host>`, locate.ts),
// 20-character disk CIDs go out bare (the agent looks them up whole) and are looked for
// on every host, disks that moved are found through a forwarding record, stemcells have
// one CID on every host.
import type { Config } from '../config/schema.js';
import { resolveHosts, type HostConfig } from '../config/hosts.js';
import type { Logger } from '../log/logger.js';
import type { CloudProperties, CreateVMRequest, DiskHint, Driver, Networks } from '../driver/driver.js';
import { isCid, isShortDiskCid, type DiskCID, type SnapshotCID, type StemcellCID, type VMCID } from '../driver/cids.js';
// Each host's driver is reached through LibvirtDriver's own methods (its last section):
// nothing here reads a host's records, tags or locks except through them.
import { calculateVMCloudProperties, type LibvirtDriver } from '../driver/shared/driver.js';
import { CloudError, CpiError, DiskNotFound, VMCreationFailed, VMNotFound } from '../errors.js';
import { candidateHosts, place, type HostState } from './placement.js';
import { hostCapacity } from './capacity.js';
import { bornName, deleteRecord, forwardName, HostUnreachable, locateVolume, moveDisk, readBirth, splitHost, withHost, type HostHandle, type Located } from './locate.js';
import { moveVolume, partialMarkerName, type VolumeHome } from './move.js';

const MiB = 1024 * 1024;

/** The config one host's driver sees: the top level with that host's sections. */
export function hostScopedConfig(config: Config, h: HostConfig): Config {
  const { hosts: _all, ...rest } = config;
  return { ...rest, libvirt: h.libvirt, storage: h.storage, network: h.network };
}

export type OpenHostDriver = (config: Config, log: Logger) => Promise<LibvirtDriver>;

export class MultiHostDriver implements Driver {
  private readonly opened = new Map<string, Promise<LibvirtDriver>>();
  readonly names: string[];

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly hostConfigs: HostConfig[],
    private readonly openOne: OpenHostDriver,
  ) {
    this.names = hostConfigs.map((h) => h.name);
  }

  /** One host's driver, opened once per call; a host that cannot be reached is a retryable CloudError. */
  driver(name: string, what: string): Promise<LibvirtDriver> {
    let d = this.opened.get(name);
    if (!d) {
      const hc = this.hostConfigs.find((h) => h.name === name);
      if (!hc) return Promise.reject(new CloudError(`Unknown libvirt host ${JSON.stringify(name)} (configured: ${this.names.join(', ')})`));
      d = this.openOne(hostScopedConfig(this.config, hc), this.log.child({ libvirt_host: name }));
      this.opened.set(name, d);
      d.catch(() => this.opened.delete(name));
    }
    return d.catch((e: unknown) => {
      // a configuration problem (a missing pool with create_pool off, …) is not an outage
      if (e instanceof CpiError && !e.okToRetry) throw e;
      throw new HostUnreachable(name, what, e);
    });
  }

  handle(name: string): HostHandle {
    return { name, open: async () => homeOf(name, await this.driver(name, 'a volume')) };
  }

  private handles(): HostHandle[] {
    return this.names.map((n) => this.handle(n));
  }

  async close(): Promise<void> {
    for (const d of this.opened.values()) await d.then((x) => x.close(), () => undefined).catch(() => undefined);
  }

  // --- stemcells: imported on one host, copied to every other reachable host (eager) ---

  async createStemcell(imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
    const up = await this.reachable();
    if (up.length === 0) throw new CloudError(`create_stemcell: no libvirt host is reachable (${this.names.join(', ')})`, { okToRetry: true });
    const [first, ...others] = up;
    const cid = await first!.d.createStemcell(imagePath, props, tags);
    for (const o of others) {
      // A host the copy fails on gets it at its first create_vm (ensureStemcell); failing
      // here would leave the complete import unknown to the director, and never deleted.
      await this.copyStemcell(cid, first!.name, first!.d, o.name, o.d).catch((e: unknown) =>
        this.log.warn({ stemcell: cid, host: o.name, err: (e as Error).message }, 'stemcell not copied now; it is copied at the first create_vm there'),
      );
    }
    return cid;
  }

  /** Deletes it everywhere; a host that cannot be asked may still hold it: retryable. */
  async deleteStemcell(cid: StemcellCID): Promise<void> {
    const failures: string[] = [];
    for (const name of this.names) {
      try {
        await (await this.driver(name, `stemcell ${cid}`)).deleteStemcell(cid);
      } catch (e) {
        failures.push(`${name}: ${(e as Error).message}`);
      }
    }
    if (failures.length) throw new CloudError(`delete_stemcell ${cid}: not deleted on every host (${failures.join('; ')})`, { okToRetry: true });
  }

  /**
   * The stemcell on `to`, copied from a host that has it when missing (a host that was
   * down at create_stemcell). A CID that names no stemcell of this CPI is copied from
   * nowhere (hasCompleteStemcell): `to`'s create_vm then reports the missing stemcell.
   */
  private async ensureStemcell(cid: string, toName: string, to: LibvirtDriver): Promise<void> {
    if (await hasCompleteStemcell(to, cid)) return;
    for (const name of this.names) {
      if (name === toName) continue;
      const from = await this.driver(name, `stemcell ${cid}`).catch(() => null);
      if (from && (await hasCompleteStemcell(from, cid))) return this.copyStemcell(cid, name, from, toName, to);
    }
    // Not anywhere reachable: the per-host create_vm reports the missing stemcell.
  }

  /** Volume first, its metadata last: a stemcell without metadata is not complete (and orphans lists it). */
  private async copyStemcell(cid: string, fromName: string, from: LibvirtDriver, toName: string, to: LibvirtDriver): Promise<void> {
    await from.withStemcellLock(cid, async () => {
      // another create_vm may have copied it while this one waited for the lock (and VMs may already use it)
      if (await hasCompleteStemcell(to, cid)) return;
      const fromHome = homeOf(fromName, from);
      const toHome = homeOf(toName, to);
      await moveVolume(cid, fromHome, toHome, { keepOriginal: true, log: (l) => this.log.info(l) });
      for (const tags of from.tagVolumes(cid)) await moveVolume(tags, fromHome, toHome, { keepOriginal: true, verify: 'full' });
    });
  }

  private async reachable(): Promise<Array<{ name: string; d: LibvirtDriver }>> {
    const out: Array<{ name: string; d: LibvirtDriver }> = [];
    for (const name of this.names) {
      const d = await this.driver(name, 'the host').catch((e: unknown) => {
        this.log.warn({ host: name, err: (e as Error).message }, 'libvirt host unreachable');
        return null;
      });
      if (d) out.push({ name, d });
    }
    return out;
  }

  // --- VMs: never move; the CID names the host ---

  async createVM(req: CreateVMRequest): Promise<[VMCID, Networks]> {
    const { host: _h, hosts: _hs, ...props } = req.cloudProperties;
    const candidates = candidateHosts(req.cloudProperties, this.names);
    // A disk whose host cannot be asked now only loses its pull: attach_disk moves it later.
    const disks = await Promise.all(req.diskCids.map((c) => this.locateDisk(c).catch(() => null)));
    const near = disks.find((d): d is Located => d !== null)?.host;
    const memoryMiB = typeof props.ram === 'number' ? props.ram : this.config.vm.ram;
    const states = await Promise.all(this.names.map((n) => this.hostState(n, candidates, req.networks)));
    const placement = place(states, { memoryMiB, ...(candidates ? { candidates } : {}), ...(near ? { near } : {}) });
    for (const v of placement.verdicts) this.log.info({ host: v.host, chosen: v.chosen }, `placement: ${v.host} ${v.reason}`);
    if (!placement.host) {
      throw new VMCreationFailed(`create_vm: no libvirt host can take a VM of ${memoryMiB} MiB: ${placement.verdicts.map((v) => `${v.host} ${v.reason}`).join('; ')}`, { okToRetry: placement.retryable });
    }
    const d = await this.driver(placement.host, 'the chosen host');
    await this.ensureStemcell(req.stemcellCid, placement.host, d);
    const local = disks.filter((x) => x?.host === placement.host).map((x) => x!.vol.name as DiskCID);
    const [cid, networks] = await d.createVM({ ...req, cloudProperties: props, diskCids: local });
    return [withHost(cid, placement.host) as VMCID, networks];
  }

  /**
   * What placement needs to know of a host. With `networks`, also whether the VM's
   * networks can be had there: a static address lies in one subnet, which one host's
   * libvirt network may have and another's not (one subnet per AZ is the BOSH way).
   */
  private async hostState(name: string, candidates: string[] | undefined, networks?: Networks): Promise<HostState> {
    const empty = { name, totalMemoryMiB: 0, freeMemoryMiB: 0, placedMemoryMiB: 0, placedVms: 0 };
    if (candidates && !candidates.includes(name)) return { ...empty, down: null };
    let d: LibvirtDriver;
    let capacity: Omit<HostState, 'name' | 'down'>;
    try {
      d = await this.driver(name, 'the host');
      capacity = await hostCapacity(d.host.conn, this.config.name_prefix);
    } catch (e) {
      return { ...empty, down: (e as Error).message };
    }
    const unfit = networks ? await networksUnfit(d, networks) : undefined;
    return { ...capacity, name, down: null, ...(unfit !== undefined ? { unfit } : {}) };
  }

  private async vm(cid: VMCID, what: string): Promise<{ d: LibvirtDriver; cid: VMCID; host: string } | null> {
    const { cid: base, host } = splitHost(cid);
    if (host === null) return this.vmWithoutHost(cid, what);
    if (!this.names.includes(host)) return null;
    return { d: await this.driver(host, `${what} ${cid}`), cid: base as VMCID, host };
  }

  /**
   * A CID without a host part was made while the config named one host, before `hosts`
   * was added: it is on one of them. Every host is asked; one that cannot be asked makes
   * the answer a retryable error, never "not found" (the director would forget the VM).
   */
  private async vmWithoutHost(cid: VMCID, what: string): Promise<{ d: LibvirtDriver; cid: VMCID; host: string } | null> {
    const down: string[] = [];
    for (const name of this.names) {
      let d: LibvirtDriver;
      try {
        d = await this.driver(name, `${what} ${cid}`);
      } catch {
        down.push(name);
        continue;
      }
      if (await d.hasVM(cid)) return { d, cid, host: name };
    }
    if (down.length) throw new CloudError(`Cannot tell where ${what} ${cid} is: libvirt host(s) ${down.join(', ')} cannot be reached and may hold it; retry when they are back`, { okToRetry: true });
    return null;
  }

  private async requireVM(cid: VMCID, what: string) {
    const v = await this.vm(cid, what);
    if (!v) throw new VMNotFound(`VM ${cid} not found: it names no configured libvirt host (${this.names.join(', ')})`);
    return v;
  }

  async deleteVM(cid: VMCID): Promise<void> {
    const v = await this.requireVM(cid, 'VM');
    return v.d.deleteVM(v.cid);
  }
  async hasVM(cid: VMCID): Promise<boolean> {
    const v = await this.vm(cid, 'VM');
    return v ? v.d.hasVM(v.cid) : false;
  }
  async rebootVM(cid: VMCID): Promise<void> {
    const v = await this.requireVM(cid, 'VM');
    return v.d.rebootVM(v.cid);
  }
  async setVMMetadata(cid: VMCID, metadata: Record<string, string>): Promise<void> {
    const v = await this.requireVM(cid, 'VM');
    return v.d.setVMMetadata(v.cid, metadata);
  }
  calculateVMCloudProperties(req: { cpu: number; ram: number; ephemeral_disk_size: number }): CloudProperties {
    return calculateVMCloudProperties(req);
  }

  // --- disks: born on a host, may move; found by locate.ts ---

  /** null: every host answered and none has it; a host that could not be asked is a retryable error. */
  private async locateDisk(cid: string): Promise<Located | null> {
    const { cid: base, host } = splitHost(cid);
    // Only a disk CID of this CPI names a disk (cids.ts): any other volume found under the
    // name (a stemcell, a tags or lock volume) is no disk, and attach_disk would move it.
    if (!isCid(base, 'disk', this.config.name_prefix)) return null;
    // A CID without a host part was made before the config listed hosts: it may be on
    // any of them, so every host is asked (a host that cannot be: retryable, as always).
    if (host === null) return locateVolume(base, this.names[0]!, this.handles());
    if (!this.names.includes(host)) return null;
    return locateVolume(base, host, this.handles());
  }

  /**
   * Where a disk was born: its CID says so; a CID without a host part (a 20-character
   * one, or one from before `hosts`) has it in the record a move left next to the disk,
   * or was born where it is found.
   */
  private async birthHost(cid: string, at: Located): Promise<string> {
    return splitHost(cid).host ?? (await readBirth(at.home, at.vol.name)) ?? at.host;
  }

  private async requireDisk(cid: DiskCID): Promise<{ d: LibvirtDriver; cid: DiskCID; at: Located }> {
    const at = await this.locateDisk(cid);
    if (!at) throw new DiskNotFound(`Disk ${cid} not found on any libvirt host (${this.names.join(', ')})`);
    return { d: await this.driver(at.host, `disk ${cid}`), cid: at.vol.name as DiskCID, at };
  }

  async createDisk(sizeMiB: number, props: CloudProperties, vmCid: VMCID | null): Promise<DiskCID> {
    const { host: _h, hosts: _hs, ...rest } = props;
    let name: string;
    if (vmCid) {
      name = (await this.requireVM(vmCid, 'VM')).host;
    } else {
      const candidates = candidateHosts(props, this.names);
      const states = await Promise.all(this.names.map((n) => this.hostState(n, candidates)));
      const p = place(states, { memoryMiB: 0, diskBytes: sizeMiB * MiB, ...(candidates ? { candidates } : {}) });
      for (const v of p.verdicts) this.log.info({ host: v.host, chosen: v.chosen }, `disk placement: ${v.host} ${v.reason}`);
      if (!p.host) throw new CloudError(`create_disk: no libvirt host can take a disk of ${sizeMiB} MiB: ${p.verdicts.map((v) => `${v.host} ${v.reason}`).join('; ')}`, { okToRetry: p.retryable });
      name = p.host;
    }
    const d = await this.driver(name, 'the disk\'s host');
    const cid = await d.createDisk(sizeMiB, rest, vmCid ? (splitHost(vmCid).cid as VMCID) : null);
    return directorDiskCid(cid, name);
  }

  async deleteDisk(cid: DiskCID): Promise<void> {
    const r = await this.requireDisk(cid);
    await r.d.deleteDisk(r.cid);
    const birth = await this.birthHost(cid, r.at);
    if (birth !== r.at.host) {
      await deleteRecord(r.at.home, bornName(r.cid));
      // the forwarding record would point at nothing (left if the birth host is down now: harmless, lookups check the target)
      const home = await this.handle(birth).open().catch(() => null);
      if (home) await deleteRecord(home, forwardName(r.cid));
    }
  }
  async hasDisk(cid: DiskCID): Promise<boolean> {
    const at = await this.locateDisk(cid);
    return at ? (await this.driver(at.host, `disk ${cid}`)).hasDisk(at.vol.name as DiskCID) : false;
  }

  async attachDisk(vmCid: VMCID, diskCid: DiskCID): Promise<DiskHint> {
    const v = await this.requireVM(vmCid, 'VM');
    const r = await this.requireDisk(diskCid);
    if (r.at.host !== v.host) {
      const users = await r.d.diskUsers(r.cid);
      if (users.length) throw new CloudError(`attach_disk: disk ${diskCid} is in use by ${users.join(', ')} on host ${r.at.host}; detach it first`);
      this.log.info({ disk: diskCid, from: r.at.host, to: v.host }, 'moving the disk to the VM\'s host');
      await moveDisk(r.cid, this.handle(await this.birthHost(diskCid, r.at)), r.at.home, homeOf(v.host, v.d), r.d.tagVolumes(r.cid), { log: (l) => this.log.info(l) });
    }
    const hint = await v.d.attachDisk(v.cid, r.cid);
    await recordDirectorCid(v.d, v.cid, r.cid, diskCid);
    return hint;
  }
  async detachDisk(vmCid: VMCID, diskCid: DiskCID): Promise<void> {
    const v = await this.requireVM(vmCid, 'VM');
    return v.d.detachDisk(v.cid, splitHost(diskCid).cid as DiskCID);
  }
  async getDisks(vmCid: VMCID): Promise<DiskCID[]> {
    const v = await this.requireVM(vmCid, 'VM');
    const here = await v.d.getDisks(v.cid);
    // A disk attached here may have been born elsewhere: its CID names its birth host.
    // A VM from before `hosts` has disks from then, whose CIDs the director holds bare.
    // The CID attach_disk was given is in the VM's metadata (recordDirectorCid); a disk
    // attached without it (before this CPI recorded it) is named from its records.
    const legacy = splitHost(vmCid).host === null;
    const given = new Map(((await v.d.vmRecord(v.cid))?.disks ?? []).flatMap((d) => (d.as ? [[d.cid, d.as] as const] : [])));
    return Promise.all(
      here.map(async (c) => {
        const as = given.get(c);
        if (as) return as as DiskCID;
        if (isShortDiskCid(c)) return c;
        const birth = await readBirth(homeOf(v.host, v.d), c);
        return (birth === null && legacy ? c : withHost(c, birth ?? v.host)) as DiskCID;
      }),
    );
  }
  async resizeDisk(cid: DiskCID, newSizeMiB: number): Promise<void> {
    const r = await this.requireDisk(cid);
    return r.d.resizeDisk(r.cid, newSizeMiB);
  }
  async updateDisk(cid: DiskCID, newSizeMiB: number, props: CloudProperties): Promise<DiskCID | null> {
    const r = await this.requireDisk(cid);
    const next = await r.d.updateDisk(r.cid, newSizeMiB, props);
    return next === null ? null : directorDiskCid(next, r.at.host);
  }
  async setDiskMetadata(cid: DiskCID, metadata: Record<string, string>): Promise<void> {
    const r = await this.requireDisk(cid);
    return r.d.setDiskMetadata(r.cid, metadata);
  }

  async snapshotDisk(cid: DiskCID, metadata: Record<string, unknown>): Promise<SnapshotCID> {
    const r = await this.requireDisk(cid);
    return withHost(await r.d.snapshotDisk(r.cid, metadata), r.at.host) as SnapshotCID;
  }
  async deleteSnapshot(cid: SnapshotCID): Promise<void> {
    const { cid: base, host } = splitHost(cid);
    if (host === null || !this.names.includes(host)) return;
    return (await this.driver(host, `snapshot ${cid}`)).deleteSnapshot(base as SnapshotCID);
  }
}

/**
 * Notes in the VM's metadata the CID the director used for a disk it attached: the one
 * get_disks must give back. It cannot be derived: a disk from before the config listed
 * hosts is bare to the director wherever it lives, one made since carries its birth host.
 */
async function recordDirectorCid(d: LibvirtDriver, vmCid: VMCID, volume: DiskCID, given: DiskCID): Promise<void> {
  await d.updateVmRecord(vmCid, (record) => {
    const entry = record.disks.find((x) => x.cid === volume);
    if (!entry || entry.as === given) return false;
    entry.as = given;
    return true;
  });
}

/**
 * The CID the director gets for a disk made on `host`. A 20-character CID goes out bare:
 * the agent looks the whole CID up under /dev/disk/by-id/ (agents since April 2023), and
 * `@<host>` would make it longer than any disk serial, so the disk would be found by its
 * hint's path only. Without the host part a lookup asks every host (locate.ts), as for
 * disks from before `hosts`. A long-form CID keeps `@<host>`: it is found by path anyway.
 */
function directorDiskCid(cid: DiskCID, host: string): DiskCID {
  return (isShortDiskCid(cid) ? cid : withHost(cid, host)) as DiskCID;
}

function homeOf(name: string, d: LibvirtDriver): VolumeHome {
  return { host: name, conn: d.host.conn, pool: d.host.pool };
}

/**
 * Whether `d`'s host holds stemcell `cid` whole. Only a stemcell CID of this CPI can name
 * one (as for every host's own lookup): a disk or snapshot volume also has a tags volume
 * beside it, and taking it for a stemcell would copy it to another host (create_vm given a
 * disk's CID as stemcell_cid did, then failed and left the copy there).
 */
async function hasCompleteStemcell(d: LibvirtDriver, cid: string): Promise<boolean> {
  if (!isCid(cid, 'sc', d.host.config.name_prefix)) return false;
  const names = new Set((await d.host.conn.pools.listAllVolumes(d.host.pool)).map((v) => v.name));
  return names.has(cid) && d.tagVolumes(cid).every((tags) => names.has(tags)) && !names.has(partialMarkerName(cid));
}

export async function openMultiHostDriver(config: Config, log: Logger, openOne: OpenHostDriver): Promise<MultiHostDriver> {
  return new MultiHostDriver(config, log, resolveHosts(config), openOne);
}

/** Why the VM's networks cannot be had on this host (undefined: they can). */
async function networksUnfit(d: LibvirtDriver, networks: Networks): Promise<string | undefined> {
  try {
    await d.checkNetworks(networks);
    return undefined;
  } catch (e) {
    // The request's own faults (and a network missing there) are the host's unfitness;
    // anything else (a dropped connection) is for create_vm itself to meet and report.
    if (e instanceof CpiError) return e.message;
    return undefined;
  }
}
