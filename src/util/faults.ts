// Fault injection for tests. Some failures cannot be caused for real on demand (a
// crash inside a handler, libvirt failing exactly between two steps of create_vm), so
// tests name points in BOSH_LIBVIRT_CPI_FAULTS (comma-separated) and the code fails
// there. Unset in production: one environment lookup, then nothing.
const points = new Set((process.env.BOSH_LIBVIRT_CPI_FAULTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export class InjectedFault extends Error {
  constructor(readonly point: string) {
    super(`injected fault at ${point} (BOSH_LIBVIRT_CPI_FAULTS)`);
    this.name = 'InjectedFault';
  }
}

export function faultArmed(point: string): boolean {
  return points.size > 0 && points.has(point);
}

/** Throws at `point` when a test armed it. */
export function maybeFail(point: string): void {
  if (faultArmed(point)) throw new InjectedFault(point);
}

/**
 * Waits at `point` when a test armed `delay:<point>`: BOSH_LIBVIRT_CPI_FAULT_DELAY_MS
 * (2000 unless set). Puts two calls in one order on purpose, to show what a race would do.
 */
export async function maybeDelay(point: string): Promise<void> {
  if (!faultArmed(`delay:${point}`)) return;
  const ms = Number(process.env.BOSH_LIBVIRT_CPI_FAULT_DELAY_MS ?? 2000);
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The value of an armed `<name>=<value>` point, or undefined. For draws a test cannot
 * make happen for real, e.g. a random name that collides with an existing one.
 */
export function faultValue(name: string): string | undefined {
  if (points.size === 0) return undefined;
  for (const p of points) if (p.startsWith(`${name}=`)) return p.slice(name.length + 1);
  return undefined;
}
