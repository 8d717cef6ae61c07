// The state stores of a libvirt driver with domain metadata, volume streams and
// NETWORK_UPDATE (qemu's and lxc's): what those profiles pass, field by field, and what
// `orphans` reads with for a backend that has no profile in this release.
import type { StateStores } from './profile.js';
import { domainRecords } from './vm-metadata.js';
import { volumeTags } from './sidecar.js';
import { volumeLocks } from './lock.js';
import { volumeClaims } from './address-holders.js';
import { dhcpReservations } from './networking.js';

export const nativeStores: StateStores = {
  records: domainRecords,
  tags: volumeTags,
  locks: volumeLocks,
  claims: volumeClaims,
  reservations: dhcpReservations,
};
