// The VirtualBox backend (`vbox:///session`) as a profile over the shared libvirt layer.
// libvirt's vbox driver lacks most abilities the shared layer can use (docs/vbox-notes.md):
// no domain metadata, no volume upload or pool listing, no DHCP host entries, no device
// hot-plug. So this profile keeps everything as files in a directory on the VirtualBox
// host, storage.path (files.ts): stemcell VDIs, each VM's root/ephemeral VDIs and settings
// ISO, persistent-disk VDIs, and the VM records, tags, locks and address claims
// (state.ts), on this host (vbox:///session) or on the VirtualBox host over ssh
// (vbox+ssh://, file-host.ts).
//   - records/tags/locks/claims: files; reservations: none (static addresses reach a
//     VM through the agent's settings only); devices: cold (disks.ts: stop, redefine,
//     start), done by the profile's own attach/detach;
//   - no snapshots, resize or update: NotSupported naming the backend (shared table);
//   - one CPI call at a time per VirtualBox host: the driver shares one VirtualBox
//     session across threads, and parallel machine changes collide (state.ts: takeHostLock).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendProfile } from '../shared/profile.js';
import type { Host } from '../shared/host.js';
import type { Config } from '../../config/schema.js';
import { NotSupported } from '../../errors.js';
import { ensureLayout, layout } from './files.js';
import { fileHostFor, hostLockName, vboxTransport } from './file-host.js';
import { fileClaims, fileLocks, fileRecords, fileTags, takeHostLock } from './state.js';
import * as stemcells from './stemcells.js';
import * as vms from './vms.js';
import * as disks from './disks.js';

/** How long a call waits for the host lock: other calls run one after another before it. */
export const HOST_LOCK_WAIT_SECONDS = 600;

/**
 * The profile writes VDIs, ISOs and its state into storage.path on the VirtualBox host
 * and hands VirtualBox their paths: it reaches those files either on this host
 * (vbox:///session, with or without ?socket=) or over ssh (vbox+ssh://user@host/session,
 * file-host.ts). tcp and tls reach libvirt only, not the files: refused before connecting.
 */
export function checkVboxConfig(config: Config): void {
  vboxTransport(config.libvirt.uri);
  if (!config.storage.path.startsWith('/')) throw new NotSupported(`storage.path ${JSON.stringify(config.storage.path)} must be an absolute directory on the VirtualBox host`);
}

/**
 * The host-wide lock's file on this host: one per VirtualBox daemon (its URI, which
 * names its socket, and the user, whose VirtualBox a vbox:///session daemon drives),
 * whatever storage.path each CPI uses, in the system's temporary directory. Over ssh the
 * same name in the VirtualBox host's temporary directory (file-host.ts).
 */
export function hostLockPath(uri: string): string {
  return join(tmpdir(), hostLockName(uri, String(process.getuid?.() ?? 'user')));
}

export const vboxProfile: BackendProfile = {
  name: 'vbox',
  checkConfig: checkVboxConfig,
  async openStorage(conn, config, log) {
    const l = layout(config);
    const fh = fileHostFor(config);
    // Over ssh the lock's connection carries the other commands: taken first.
    const unlock = await takeHostLock(fh, HOST_LOCK_WAIT_SECONDS, log);
    const release = async () => {
      await unlock();
      if (fh.commands) log.debug({ ssh_commands: fh.commands, where: fh.where }, 'ssh commands this call ran on the VirtualBox host');
    };
    try {
      await ensureLayout(fh, l);
      // The driver's one pool, found by name only; nothing here uses it (the files are
      // the profile's), but its answer shows the vbox driver is up.
      const pool = await conn.pools.lookupByName('default-pool');
      // A missing name gives no NO_DOMAIN from the vbox driver (an error without a
      // cause): domains are found in the listing instead.
      // A cold disk change a killed call left half-done is finished on the VM's next lookup.
      const lookupDomain = async (host: Host, name: string) => disks.recoverRedefine(host, name, (await host.conn.domains.listAll(0)).find((d) => d.name === name) ?? null);
      return { pool, poolPath: l.vms, release, lookupDomain };
    } catch (e) {
      await release();
      throw e;
    }
  },
  stemcells: { create: stemcells.createStemcell, delete: stemcells.deleteStemcell },
  vms: { prepare: vms.prepare, preview: vms.preview, listVolumes: vms.listVolumes, removeVolume: vms.removeVolume },
  disks: {
    volume: () => {
      throw new Error('the vbox profile makes disks with qemu-img (disks.create), never as libvirt volumes');
    },
    create: disks.createDisk,
    delete: disks.deleteDisk,
    locate: disks.locateDisk,
    attach: disks.attachDisk,
    detach: disks.detachDisk,
    list: disks.getDisks,
  },
  records: fileRecords,
  tags: fileTags,
  locks: fileLocks,
  claims: fileClaims,
  reservations: null,
  // attach_disk/detach_disk change a stopped VM's definition: stop, redefine, start.
  devices: disks.coldDevices,
};
