// INTERIM stand-in for the lxc-stem branch's stemcell import and dir-volume helpers
// (src/driver/lxc/stemcells.ts and dir-volume.ts there, per /work/notes/lxc-contract.md):
// the same names and contract, the least that lets the runtime be tested end to end.
// Replaced by that branch's modules when it is merged (then this file goes).
import { execFile } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Host } from '../libvirt/host.js';
import { createVolume, findVolume } from '../libvirt/host.js';
import { deleteSidecar, readSidecar, writeSidecar } from '../libvirt/sidecar.js';
import { withStemcellLock } from '../libvirt/lock.js';
import { newCid, isCid, type StemcellCID } from '../cids.js';
import type { CloudProperties } from '../driver.js';
import { isLibvirtError, ErrorCode } from '../../libvirt/index.js';
import { CloudError } from '../../errors.js';

const run = promisify(execFile);

export async function createDirVolume(host: Host, name: string, mode = 0o755): Promise<void> {
  await createVolume(host, { name, capacityBytes: 0n, format: 'dir', mode });
}

/** Empties the directory (never following symlinks: `<vm>.root/lower` points at a stemcell), then deletes the volume. */
export async function deleteDirVolume(host: Host, name: string): Promise<void> {
  const dir = join(host.poolPath, name);
  for (const entry of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, entry), { recursive: true, force: true });
  await host.conn.pools.refresh(host.pool, 0).catch(() => undefined);
  const vol = await findVolume(host, name);
  if (vol) {
    await host.conn.volumes.delete(vol, 0).catch((e: unknown) => {
      if (!isLibvirtError(e, ErrorCode.NO_STORAGE_VOL)) throw e;
    });
  } else {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function createStemcell(host: Host, imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
  const cid = newCid(host.config.name_prefix, 'sc') as StemcellCID;
  await createDirVolume(host, cid);
  try {
    await run('tar', ['-xzf', imagePath, '-C', join(host.poolPath, cid), '--numeric-owner', '--no-same-permissions', '--preserve-permissions']);
    await writeSidecar(host, cid, { kind: 'stemcell', format: 'rootfs', source_format: 'warden-tar', name: props.name, version: props.version, tags, created_at: new Date().toISOString() });
  } catch (e) {
    await deleteDirVolume(host, cid).catch(() => undefined);
    throw new CloudError(`create_stemcell: unpacking ${imagePath} failed: ${(e as Error).message}`);
  }
  return cid;
}

export async function findRootfsStemcell(host: Host, cid: string): Promise<{ cid: StemcellCID; path: string } | null> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return null;
  const vol = await findVolume(host, cid);
  if (!vol) return null;
  const meta = await readSidecar(host, cid);
  if (meta?.format !== 'rootfs') throw new CloudError(`Stemcell ${cid} is not a finished root filesystem stemcell (its import did not complete)`);
  return { cid: cid as StemcellCID, path: await host.conn.volumes.getPath(vol) };
}

export async function deleteStemcell(host: Host, cid: StemcellCID): Promise<boolean> {
  return withStemcellLock(host, cid, async () => {
    if (!isCid(cid, 'sc', host.config.name_prefix) || !(await findVolume(host, cid))) return false;
    const users: string[] = [];
    for (const entry of await readdir(host.poolPath)) {
      if (!entry.endsWith('.root')) continue;
      const sc = await readFile(join(host.poolPath, entry, 'stemcell'), 'utf8').catch(() => '');
      if (sc.trim() === cid) users.push(entry.slice(0, -'.root'.length));
    }
    if (users.length) throw new CloudError(`Stemcell ${cid} is in use by VM ${users.join(', ')}`);
    await deleteDirVolume(host, cid);
    await deleteSidecar(host, cid);
    return true;
  });
}
