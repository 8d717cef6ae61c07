// Where a new VM (or disk) goes among several libvirt hosts: a pure function of what the
// hosts report and what the CPI already placed on them, so it is tested without hosts
// and every choice comes with a reason per host for the log.
//
// Memory first. A host's free memory alone would overstate room: a VM just booted has
// touched little of its memory, so ten VMs created in a row would all land on the host
// that looked emptiest at the start. So the room counted is the smaller of what the host
// reports free and its total minus the memory of every VM the CPI placed there (each at
// its full size). Equal hosts thus fill evenly; ties go to the host with fewer CPI VMs,
// then to the name, so the choice is deterministic.
import { CloudError, show } from '../errors.js';

export interface HostState {
  name: string;
  /** null when the host answered; otherwise why it could not be asked */
  down: string | null;
  totalMemoryMiB: number;
  freeMemoryMiB: number;
  /** memory of the VMs the CPI placed on this host (their configured size) */
  placedMemoryMiB: number;
  placedVms: number;
  /** free bytes of the CPI's pool there; undefined when unknown */
  poolFreeBytes?: number;
}

export interface PlacementRequest {
  memoryMiB: number;
  /** bytes the new VM or disk needs in the pool (0 or absent: not checked) */
  diskBytes?: number;
  /** hosts cloud_properties allow (candidateHosts); absent: all */
  candidates?: readonly string[];
  /** the host holding what the new object should sit with (disk_cids, vm_locality) */
  near?: string;
}

export interface HostVerdict {
  host: string;
  chosen: boolean;
  reason: string;
}

export interface Placement {
  host: string | null;
  verdicts: HostVerdict[];
  /** no host fits but one that could not be asked might: worth retrying later */
  retryable: boolean;
}

export function headroomMiB(h: HostState): number {
  return Math.max(0, Math.min(h.freeMemoryMiB, h.totalMemoryMiB - h.placedMemoryMiB));
}

export function place(hosts: readonly HostState[], req: PlacementRequest): Placement {
  const verdicts = new Map<string, string>();
  const fitting: HostState[] = [];
  let someoneDown = false;
  for (const h of hosts) {
    if (req.candidates && !req.candidates.includes(h.name)) {
      verdicts.set(h.name, `skipped: not among the candidates ${req.candidates.join(', ')} (cloud_properties host/hosts)`);
    } else if (h.down !== null) {
      someoneDown = true;
      verdicts.set(h.name, `skipped: unreachable (${h.down})`);
    } else if (headroomMiB(h) < req.memoryMiB) {
      verdicts.set(h.name, `skipped: needs ${req.memoryMiB} MiB of memory, has ${headroomMiB(h)} MiB (free ${h.freeMemoryMiB} of ${h.totalMemoryMiB} MiB, ${h.placedMemoryMiB} MiB placed by the CPI)`);
    } else if (req.diskBytes && h.poolFreeBytes !== undefined && h.poolFreeBytes < req.diskBytes) {
      verdicts.set(h.name, `skipped: needs ${req.diskBytes} bytes in its pool, has ${h.poolFreeBytes}`);
    } else {
      fitting.push(h);
    }
  }
  const near = req.near !== undefined ? fitting.find((h) => h.name === req.near) : undefined;
  const ranked = [...fitting].sort((x, y) => headroomMiB(y) - headroomMiB(x) || x.placedVms - y.placedVms || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const chosen = near ?? ranked[0];
  for (const h of fitting) {
    const room = `${headroomMiB(h)} MiB of memory to spare, ${h.placedVms} VM(s) placed by the CPI`;
    if (h === chosen) verdicts.set(h.name, near ? `chosen: holds what the new object goes with (${room})` : `chosen: most room (${room})`);
    else verdicts.set(h.name, chosen === near ? `not chosen: ${chosen!.name} holds what the new object goes with (${room})` : `not chosen: less room than ${chosen!.name} (${room})`);
  }
  if (req.near !== undefined && !near) {
    const why = verdicts.get(req.near);
    if (why) verdicts.set(req.near, `${why}; it holds what the new object goes with, which will move when attached`);
  }
  return {
    host: chosen?.name ?? null,
    verdicts: hosts.map((h) => ({ host: h.name, chosen: h === chosen, reason: verdicts.get(h.name)! })),
    retryable: !chosen && someoneDown,
  };
}

/**
 * The candidate hosts cloud_properties name: `host: NAME` pins one, `hosts: [NAME, …]`
 * lists several, neither means every host. Unknown names are a CloudError naming the
 * key, the value and the hosts there are.
 */
export function candidateHosts(cloudProperties: Record<string, unknown>, known: readonly string[]): string[] | undefined {
  const { host, hosts } = cloudProperties;
  if (host !== undefined && hosts !== undefined) {
    throw new CloudError(`cloud_properties: give either host or hosts, not both (host ${show(host)}, hosts ${show(hosts)})`);
  }
  const check = (key: string, name: unknown): string => {
    if (typeof name !== 'string' || !known.includes(name)) {
      throw new CloudError(`cloud_properties.${key}: expected one of the configured hosts (${known.join(', ')}), got ${show(name)}`);
    }
    return name;
  };
  if (host !== undefined) return [check('host', host)];
  if (hosts === undefined) return undefined;
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new CloudError(`cloud_properties.hosts: expected a non-empty list of configured hosts (${known.join(', ')}), got ${show(hosts)}`);
  }
  return hosts.map((n, i) => check(`hosts[${i}]`, n));
}
