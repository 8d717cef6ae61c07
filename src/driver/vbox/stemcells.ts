// vbox stemcells: the image made into one VDI in <storage.path>/stemcells
// (stemcell-image.ts; over ssh made here and copied there), its tags beside the other state. The VDI is never registered with
// VirtualBox: each VM's root disk is a full copy of it (vms.ts), so a stemcell is free
// to go whenever no create_vm is copying it (the stemcell's lock).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../shared/host.js';
import type { CloudProperties } from '../driver.js';
import { isCid, newCid, type StemcellCID } from '../cids.js';
import { CloudError } from '../../errors.js';
import { importStemcellImage } from './stemcell-image.js';
import { fileTags, withFileLock } from './state.js';
import { hostFiles, hostLayout, stemcellPath } from './files.js';

export async function createStemcell(host: Host, imagePath: string, props: CloudProperties, tags: Record<string, string>): Promise<StemcellCID> {
  const l = hostLayout(host);
  const fh = hostFiles(host);
  const cid = newCid(host.config.name_prefix, 'sc') as StemcellCID;
  const t0 = performance.now();
  // Over ssh the image is converted here (the tarball is this host's) in a directory of
  // its own, then copied to the VirtualBox host under a temporary name and linked into place.
  const work = fh.local ? undefined : await mkdtemp(join(tmpdir(), `${cid}.`));
  let path: string;
  let disk: Awaited<ReturnType<typeof importStemcellImage>> | undefined;
  try {
    disk = await importStemcellImage({ imagePath, cloudProperties: props, destDir: work ?? l.stemcells, name: cid });
    path = work ? stemcellPath(l, cid) : disk.path;
    if (disk.firmware === 'efi') {
      throw new CloudError(
        `create_stemcell: the stemcell's image.ovf asks for EFI firmware, and libvirt's VirtualBox driver cannot select EFI (it never sets a machine's firmware type, so every machine it defines boots BIOS): this stemcell could not boot on the vbox backend. vSphere stemcells are EFI-only; use an openstack-qcow2 or openstack-raw stemcell (BIOS), or an OVF whose firmware is BIOS`,
      );
    }
    if (work) {
      const t1 = performance.now();
      await fh.putNew(disk.path, path);
      host.log.info({ stemcell: cid, path, where: fh.where, ms: Math.round(performance.now() - t1) }, 'stemcell VDI copied to the VirtualBox host');
    }
    try {
      await fileTags.write(host, cid, { kind: 'stemcell', source: disk.source, format: disk.format, virtual_size: String(disk.virtualSize), ...(disk.uuid ? { uuid: disk.uuid } : {}), tags });
    } catch (e) {
      await fh.remove(path).catch(() => undefined);
      throw e;
    }
  } catch (e) {
    if (disk && !work) await rm(disk.path, { force: true });
    await fileTags.remove(host, cid).catch(() => undefined);
    throw e;
  } finally {
    if (work) await rm(work, { recursive: true, force: true });
  }
  host.log.info({ stemcell: cid, path, source: disk.source, virtual_size: String(disk.virtualSize), ms: Math.round(performance.now() - t0) }, 'stemcell imported as a VDI');
  return cid;
}

/** The stemcell's VDI, or null when there is none. */
export async function findStemcellFile(host: Host, cid: string): Promise<string | null> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return null;
  const path = stemcellPath(hostLayout(host), cid);
  return (await hostFiles(host).exists(path)) ? path : null;
}

export async function deleteStemcell(host: Host, cid: StemcellCID): Promise<boolean> {
  if (!isCid(cid, 'sc', host.config.name_prefix)) return false;
  return withFileLock(host, cid, async () => {
    const removed = await hostFiles(host).remove(stemcellPath(hostLayout(host), cid));
    const tags = (await fileTags.read(host, cid)) !== null;
    await fileTags.remove(host, cid);
    return removed || tags;
  }, `delete_stemcell of ${cid}`);
}
