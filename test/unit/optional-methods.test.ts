// The optional CPI methods answer NotSupported from one table in the shared driver
// (OPTIONAL_METHODS in src/driver/shared/driver.ts), before the driver touches libvirt:
// the message names the method, the backend and the object. The answers over the wire
// are in test/integration/driver.test.ts and the conformance suite; here, the table
// itself, for a profile that lacks each ability.
import { describe, expect, it } from 'vitest';
import { LibvirtDriver } from '../../src/driver/shared/driver.js';
import type { Host } from '../../src/driver/shared/host.js';
import { lxcProfile } from '../../src/driver/lxc/profile.js';
import { qemuProfile } from '../../src/driver/qemu/profile.js';
import { NotSupported } from '../../src/errors.js';
import type { DiskCID } from '../../src/driver/cids.js';

// No connection: a method that reached libvirt would fail on it, not answer NotSupported.
const host = { log: { info: () => undefined } } as unknown as Host;
const disk = 't-optm-d-0123456789ab' as DiskCID;

describe('optional CPI methods without their ability', () => {
  it('lxc has no snapshots and no resize: each names the method, the backend and the disk', async () => {
    const d = new LibvirtDriver(host, lxcProfile);
    await expect(d.snapshotDisk(disk, {})).rejects.toThrow(new NotSupported(`snapshot_disk is not supported by the lxc backend (disk ${disk})`));
    await expect(d.resizeDisk(disk, 2048)).rejects.toThrow(new NotSupported(`resize_disk is not supported by the lxc backend (disk ${disk})`));
  });

  it('update_disk: no backend has it, and the answer says what the director does instead', async () => {
    for (const profile of [qemuProfile, lxcProfile]) {
      const err = await new LibvirtDriver(host, profile).updateDisk(disk, 2048, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotSupported);
      expect((err as Error).message).toBe(`update_disk is not supported by the ${profile.name} backend (disk ${disk}); the director falls back to creating a new disk and copying`);
    }
  });

  it('delete_snapshot without snapshots succeeds: no snapshot can exist there', async () => {
    await expect(new LibvirtDriver(host, lxcProfile).deleteSnapshot('t-optm-snap-x' as never)).resolves.toBeUndefined();
  });
});
