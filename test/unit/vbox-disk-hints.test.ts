// The disk names a VirtualBox guest sees, from the medium UUID (docs/vbox-notes.md §4).
import { describe, expect, it } from 'vitest';
import { agentSettingsSchema } from '../../src/agent/settings.js';
import { vboxAtaSerial, vboxDiskByIdPath, vboxPersistentDiskHint } from '../../src/driver/vbox/disk-hints.js';

// A UUID whose last eight hex digits are not a palindrome in bytes: 12345678 → 78563412.
const UUID = 'b1ade788-0d3c-4e2f-9a1b-00aa12345678';

describe('vboxAtaSerial', () => {
  it('is VB + the first UUID field + the last 4 bytes reversed (RTUUID au32[0], au32[3])', () => {
    expect(vboxAtaSerial(UUID)).toBe('VBb1ade788-78563412');
    expect(vboxAtaSerial(UUID.toUpperCase())).toBe('VBb1ade788-78563412');
  });

  it('starts with the first UUID field, as the VirtualBox CPI relied on (ata-VBOX_HARDDISK_VBb1ade788-…)', () => {
    expect(vboxDiskByIdPath(UUID)).toBe('/dev/disk/by-id/ata-VBOX_HARDDISK_VBb1ade788-78563412');
  });

  it('refuses what is not a UUID, naming it', () => {
    expect(() => vboxAtaSerial('b1ade788')).toThrow('Invalid medium UUID: got "b1ade788", expected 8-4-4-4-12 hex digits');
  });
});

describe('vboxPersistentDiskHint', () => {
  it('gives the by-id path (virtio agents open it) and the id glob (scsi agents), and fits the agent settings schema', () => {
    const hint = vboxPersistentDiskHint(UUID);
    expect(hint).toEqual({ path: '/dev/disk/by-id/ata-VBOX_HARDDISK_VBb1ade788-78563412', id: 'b1ade788*' });
    // The scsi resolver strips dashes and globs /dev/disk/by-id/*<id>: the by-id name matches.
    const glob = new RegExp(`^.*${hint.id!.replaceAll('-', '').replace('*', '.*')}$`);
    expect(glob.test('ata-VBOX_HARDDISK_VBb1ade788-78563412')).toBe(true);
    const settings = agentSettingsSchema.parse({
      agent_id: 'a',
      vm: { name: 'vm' },
      mbus: 'https://x',
      ntp: [],
      blobstore: { provider: 'local', options: {} },
      disks: { system: '/dev/sda', persistent: { 'vbd-abcdefgh12345678': hint } },
      networks: {},
      env: {},
    });
    expect(settings.disks.persistent['vbd-abcdefgh12345678']).toEqual(hint);
  });
});
