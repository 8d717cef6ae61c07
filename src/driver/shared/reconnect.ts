// A call's one connection can die under it (libvirtd restarted, a proxy or ssh hop gone).
// What must still happen then (undoing a half-made VM, finishing an idempotent call)
// runs on a fresh connection: a bounded number of attempts, each logged, after which
// the caller says exactly what it could not do.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Host } from './host.js';
import { connectOptions } from './host.js';
import { connect, ConnectionClosedError } from '../../libvirt/index.js';
import { CloudError } from '../../errors.js';

/** Waits between reconnect attempts: about 7.5 s in all, longer than a daemon restart takes. */
export const RECONNECT_DELAYS_MS = [0, 250, 500, 1000, 2000, 3750];

export function isConnectionLost(e: unknown): boolean {
  return e instanceof ConnectionClosedError;
}

/**
 * Replaces host.conn with a new connection to the same URI. References (pool, domains,
 * volumes) are names and uuids, valid on any connection, so callers keep theirs.
 * Throws the last failure when no attempt succeeds.
 */
export async function reconnect(host: Host): Promise<void> {
  const old = host.conn;
  let last: unknown;
  for (const [i, delay] of RECONNECT_DELAYS_MS.entries()) {
    if (delay) await sleep(delay);
    try {
      host.conn = await connect(host.config.libvirt.uri, connectOptions(host.config));
      host.log.warn({ attempt: i + 1 }, 'reconnected to libvirt after losing the connection');
      old.close().catch(() => undefined);
      return;
    } catch (e) {
      last = e;
      host.log.warn({ attempt: i + 1, of: RECONNECT_DELAYS_MS.length, err: String(e) }, 'reconnecting to libvirt failed');
    }
  }
  throw last;
}

/**
 * Runs `fn`; when the connection is lost under it, reconnects (bounded) and runs it once
 * more. Only for work that is safe to repeat from the start (idempotent by design).
 */
export async function onLiveConnection<T>(host: Host, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (!isConnectionLost(e)) throw e;
    host.log.warn({ err: String(e), what }, 'connection to libvirt lost; reconnecting to finish');
    await reconnect(host).catch((again: unknown) => {
      throw new CloudError(`${what} lost its connection to libvirt (${(e as Error).message}) and could not reconnect (${(again as Error).message}); it is safe to repeat, and a retry finishes it`, { okToRetry: true, cause: e });
    });
    return fn();
  }
}
