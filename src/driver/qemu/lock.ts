// A mutex across CPI processes (and hosts: any CPI talking to the same libvirt),
// serialized by libvirt itself: creating a volume whose name exists fails atomically.
// The lock is a tiny volume `<name>.lock`; whoever creates it holds the lock. A lock
// older than STALE_MS belongs to a process that died and is broken.
import type { Host } from './host.js';
import { createVolume, deleteVolumeIfExists, findVolume } from './host.js';
import { CloudError } from '../../rpc/errors.js';
import { isLibvirtError, ErrorCode } from '../../libvirt/index.js';

const STALE_MS = 120_000;
const WAIT_MS = 60_000;

export async function withVolumeLock<T>(host: Host, name: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${name}.lock`;
  const deadline = Date.now() + WAIT_MS;
  let delay = 20;
  for (;;) {
    try {
      await createVolume(host, { name: lock, capacityBytes: 0n, allocationBytes: 0n, format: 'raw' });
      break;
    } catch (e) {
      // Contention is "exists already" (the holder may have released it since) or a lock
      // volume we can see; anything else is a real failure.
      const exists = isLibvirtError(e, ErrorCode.STORAGE_VOL_EXIST) || /exists already/.test(String((e as Error).message));
      if (!exists && !(await findVolume(host, lock))) throw e;
      if (await isStale(host, lock)) {
        host.log.warn({ lock }, 'breaking a stale lock left by a CPI process that died');
        await deleteVolumeIfExists(host, lock);
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
    await deleteVolumeIfExists(host, lock).catch((e: unknown) => host.log.warn({ lock, err: String(e) }, 'could not release lock'));
  }
}

async function isStale(host: Host, lock: string): Promise<boolean> {
  const vol = await findVolume(host, lock);
  if (!vol) return false;
  const xml = await host.conn.volumes.getXMLDesc(vol, 0).catch(() => '');
  const ctime = /<ctime>(\d+)(?:\.\d+)?<\/ctime>/.exec(xml)?.[1];
  return ctime !== undefined && Date.now() - Number(ctime) * 1000 > STALE_MS;
}
