// A mutex across CPI processes (and hosts: any CPI talking to the same libvirt),
// serialized by libvirt itself: creating a volume whose name exists fails atomically.
// The lock is a tiny volume `<name>.lock`; whoever creates it holds the lock. A lock
// older than STALE_MS belongs to a process that died and is broken.
//
// The lock volume's capacity is a random token that names its holder. It makes two
// things decidable from libvirt alone: whether a lock whose creation lost its answer
// (the connection dropped) is ours after all, and whether the lock we release is still
// ours (it may have been broken as stale and taken by another call meanwhile).
import { randomInt } from 'node:crypto';
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume, volumeDetails } from './host.js';
import { CloudError } from '../../rpc/errors.js';
import { isLibvirtError, ErrorCode } from '../../libvirt/index.js';
import { parseVolume } from '../../xml/index.js';
import { isConnectionLost, reconnect } from './reconnect.js';

const STALE_MS = 120_000;
const WAIT_MS = 60_000;

export async function withVolumeLock<T>(host: Host, name: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${name}.lock`;
  // A sparse raw volume of up to 1 GiB apparent size, nothing allocated.
  const token = BigInt(randomInt(1, 2 ** 30));
  const deadline = Date.now() + WAIT_MS;
  let delay = 20;
  for (;;) {
    try {
      await createVolume(host, { name: lock, capacityBytes: token, allocationBytes: 0n, format: 'raw' });
      break;
    } catch (e) {
      if (isConnectionLost(e)) {
        // The create may have taken effect with only its answer lost: ask a new connection.
        await reconnect(host).catch((again: unknown) => {
          throw new CloudError(`Lost the connection to libvirt while taking lock ${lock} and could not reconnect (${(again as Error).message}); nothing was changed under the lock, and a retry takes it again`, { okToRetry: true, cause: e });
        });
        if (await holds(host, lock, token)) break;
        continue;
      }
      // Contention is "exists already" (the holder may have released it since) or a lock
      // volume we can see; anything else is a real failure.
      const exists = isLibvirtError(e, ErrorCode.STORAGE_VOL_EXIST) || /exists already/.test(String((e as Error).message));
      if (!exists && !(await findVolume(host, lock))) throw e;
      const stale = await staleToken(host, lock);
      if (stale !== undefined) {
        // Several waiters may judge the same lock stale: only the one that still finds that
        // very lock removes it, so nobody removes the fresh lock another waiter just took.
        if (await holds(host, lock, stale)) {
          host.log.warn({ lock }, 'breaking a stale lock left by a CPI process that died');
          await deleteVolumeIfExists(host, lock);
        }
        continue;
      }
      if (Date.now() > deadline) throw new CloudError(`Timed out after ${WAIT_MS / 1000} s waiting for lock ${lock} held by another CPI call`, { okToRetry: true });
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      delay = Math.min(delay * 2, 500);
    }
  }
  try {
    return await fn();
  } finally {
    await release(host, lock, token);
  }
}

/** The lock exists and carries our token. */
async function holds(host: Host, lock: string, token: bigint): Promise<boolean> {
  const vol = await findVolume(host, lock);
  return vol !== null && (await volumeDetails(host, vol)).capacityBytes === token;
}

/**
 * Removes the lock if it is still ours. A holder that lost its connection releases on a
 * new one: the caller may repeat its work at once (attach_disk does), and would otherwise
 * wait on its own lock until it counts as stale.
 */
async function release(host: Host, lock: string, token: bigint): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      if (await holds(host, lock, token)) await deleteVolumeIfExists(host, lock);
      else host.log.warn({ lock }, 'the lock was broken as stale while held; left to its new holder');
      return;
    } catch (e) {
      if (attempt === 0 && isConnectionLost(e) && (await reconnect(host).then(() => true, () => false))) continue;
      host.log.warn({ lock, err: String(e) }, `could not release lock; it counts as stale after ${STALE_MS / 1000} s`);
      return;
    }
  }
}

/** The token of the lock when it is older than STALE_MS, else undefined. */
async function staleToken(host: Host, lock: string): Promise<bigint | undefined> {
  const vol = await findVolume(host, lock);
  if (!vol) return undefined;
  const xml = await host.conn.volumes.getXMLDesc(vol, 0).catch(() => '');
  const ctime = /<ctime>(\d+)(?:\.\d+)?<\/ctime>/.exec(xml)?.[1];
  if (ctime === undefined || Date.now() - Number(ctime) * 1000 <= STALE_MS) return undefined;
  return parseVolume(xml).capacityBytes;
}
