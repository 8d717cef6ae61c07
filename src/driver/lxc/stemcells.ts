// LXC stemcells: a directory volume named after the CID holding the unpacked root
// filesystem (the lower layer of every container's overlay), and the `<cid>.meta`
// sidecar qemu stemcells use, written last. The sidecar is what makes the stemcell
// exist: a killed import leaves a `<cid>` without it, which `orphans` lists as an
// unfinished create_stemcell (docs/crash-safety.md, docs/lxc.md).
import { lstat, readFile, readdir, readlink, utimes } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Host } from '../shared/host.js';
import { findVolume } from '../shared/host.js';
import { withStemcellLock } from '../shared/lock.js';
import { isConnectionLost, reconnect } from '../shared/reconnect.js';
import { deleteSidecar, readSidecar, writeSidecar } from '../shared/sidecar.js';
import { listVmMetadata } from '../shared/vm-metadata.js';
import { newCid, isCid, type StemcellCID } from '../cids.js';
import type { CloudProperties } from '../driver.js';
import { CloudError } from '../../errors.js';
import { DomainXMLFlags, ErrorCode, ListAllDomainsFlags, isLibvirtError } from '../../libvirt/index.js';
import { parseRoot } from '../../xml/dom.js';
import { checkImagePath, unpackImage } from './rootfs-archive.js';
import { createDirVolume, deleteDirVolume, dirVolumePath } from './dir-volume.js';
import { Suffix, hasSuffix, sidecarName, withoutSuffix } from '../shared/names.js';

/** The sidecar's `format` of a container stemcell (qemu's are qcow2/raw, so neither backend takes the other's). */
export const ROOTFS_FORMAT = 'rootfs';
/** How often a running import marks its directory as changed: `orphans` judges an unfinished import by that age. */
const ALIVE_EVERY_MS = 5000;

export async function createStemcell(host: Host, imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
  await checkImagePath(imagePath);
  const cid = newCid(host.config.name_prefix, 'sc');
  const dir = dirVolumePath(host, cid);
  // Only the sidecar's age would otherwise change while gigabytes are written deep in
  // the tree: the directory's own mtime says "in progress" to `orphans --min-age`.
  const alive = setInterval(() => {
    const now = new Date();
    utimes(dir, now, now).catch(() => undefined);
  }, ALIVE_EVERY_MS);
  alive.unref();
  try {
    await createDirVolume(host, cid);
    const unpacked = await unpackImage(imagePath, dir);
    clearInterval(alive);
    await writeSidecar(host, cid, {
      kind: 'stemcell',
      format: ROOTFS_FORMAT,
      archive: unpacked.kind,
      layers: unpacked.layers,
      name: props.name ?? null,
      version: props.version ?? null,
      tags,
      created_at: new Date().toISOString(),
    });
    host.log.info({ stemcell: cid, archive: unpacked.kind, layers: unpacked.layers }, 'stemcell imported');
    return cid;
  } catch (e) {
    clearInterval(alive);
    await removePartialImport(host, cid);
    throw e;
  }
}

/** A failed import leaves nothing behind; what cannot be removed, `orphans` lists (no sidecar). */
async function removePartialImport(host: Host, cid: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await deleteSidecar(host, cid);
      await deleteDirVolume(host, cid);
      return;
    } catch (e) {
      if (attempt === 0 && isConnectionLost(e) && (await reconnect(host).then(() => true, () => false))) continue;
      host.log.error({ stemcell: cid, err: String(e) }, 'could not remove the partial stemcell directory; bosh-libvirt-cpi orphans lists it');
      return;
    }
  }
}

/**
 * The stemcell's root filesystem directory; null when `cid` is no stemcell of this CPI
 * or is gone. An import that never finished (no sidecar) is an error, not a stemcell.
 */
export async function findRootfsStemcell(host: Host, cid: string): Promise<{ cid: StemcellCID; path: string } | null> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return null;
  const vol = await findVolume(host, cid);
  if (!vol) return null;
  const meta = await readSidecar(host, cid);
  if (!meta) throw new CloudError(`Stemcell ${cid} has no readable metadata volume (${sidecarName(cid)}); it was not imported completely: delete and upload it again`);
  if (meta.format !== ROOTFS_FORMAT) {
    throw new CloudError(`Stemcell ${cid} is a ${String(meta.format)} disk image (a qemu stemcell), not a container root filesystem; upload a warden-tar, general-tar or oci-tar stemcell for lxc`);
  }
  return { cid: cid as StemcellCID, path: dirVolumePath(host, cid) };
}

/** Refuses while any container uses the stemcell; false when it was already gone. */
export async function deleteStemcell(host: Host, cid: StemcellCID): Promise<boolean> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return false;
  return withStemcellLock(host, cid, async () => {
    const dir = dirVolumePath(host, cid);
    const present = (await findVolume(host, cid)) !== null || (await lstat(dir).then(() => true, () => false));
    if (!present) {
      await deleteSidecar(host, cid);
      return false;
    }
    const meta = await readSidecar(host, cid);
    if (meta && meta.format !== ROOTFS_FORMAT) throw new CloudError(`Stemcell ${cid} is a ${String(meta.format)} disk image (a qemu stemcell), not a container root filesystem; the lxc backend leaves it alone`);
    const users = await stemcellUsers(host, cid, dir);
    if (users.length > 0) {
      throw new CloudError(`Stemcell ${cid} is still the root filesystem of ${users.length} container(s) (${users.slice(0, 5).join(', ')}); delete them first`);
    }
    // The sidecar first: a directory half emptied must never pass for a stemcell; left
    // without it (a kill meanwhile), it is an unfinished import to `orphans`.
    await deleteSidecar(host, cid);
    await deleteDirVolume(host, cid);
    return true;
  });
}

/**
 * Who uses the stemcell: VMs whose metadata names it; container roots in the pool
 * (`<vm>.root`, any prefix: another CPI's container would break just the same) naming it
 * in their `stemcell` file or `lower` link, which create_vm writes before the domain
 * exists; and any domain whose filesystem is the stemcell's directory or lies in it.
 */
export async function stemcellUsers(host: Host, cid: string, dir: string): Promise<string[]> {
  const users = new Set((await listVmMetadata(host)).filter((m) => m.metadata.stemcellCid === cid).map((m) => m.name));
  for (const entry of await readdir(host.poolPath)) {
    if (!hasSuffix(entry, Suffix.root)) continue;
    const root = join(host.poolPath, entry);
    const named = await readFile(join(root, 'stemcell'), 'utf8').then((s) => s.trim(), () => '');
    const lower = await readlink(join(root, 'lower')).then((l) => resolve(root, l), () => '');
    if (named === cid || lower === dir) users.add(withoutSuffix(entry, Suffix.root));
  }
  for (const name of await domainsWithFilesystemIn(host, dir)) users.add(name);
  return [...users];
}

/** Domains (live or persistent definition) with a `<filesystem>` whose source is `dir` or below it. */
async function domainsWithFilesystemIn(host: Host, dir: string): Promise<string[]> {
  const out: string[] = [];
  const running = new Set((await host.conn.domains.listAll(ListAllDomainsFlags.ACTIVE)).map((d) => d.name));
  for (const dom of await host.conn.domains.listAll(0)) {
    try {
      const xmls = [await host.conn.domains.getXMLDesc(dom, 0)];
      if (running.has(dom.name)) xmls.push(await host.conn.domains.getXMLDesc(dom, DomainXMLFlags.INACTIVE));
      const sources = xmls.flatMap((xml) =>
        (parseRoot(xml, 'domain').child('devices')?.children('filesystem') ?? []).map((fs) => {
          const src = fs.child('source');
          return src?.attr('dir') ?? src?.attr('file') ?? src?.attr('name') ?? '';
        }),
      );
      if (sources.some((s) => s !== '' && (resolve(s) === dir || resolve(s).startsWith(`${dir}/`)))) out.push(dom.name);
    } catch (e) {
      if (!isLibvirtError(e, ErrorCode.NO_DOMAIN)) throw e; // undefined meanwhile: it uses nothing
    }
  }
  return out;
}
