// Which backend a libvirt URI selects, and what each one offers. Kept free of heavy
// imports (and of the loaders of backend code, which live in profiles.ts): `info` runs
// before almost every call, from the small bin/cpi entry, and needs only this table.
import { CloudError, NotImplemented } from '../errors.js';
import type { BackendName } from './profile.js';

export type { BackendName };

export interface Backend {
  name: BackendName;
  /** what `info` reports: the stemcell formats this backend can import */
  stemcellFormats: string[];
  /** whether this release has the backend's profile (profiles.ts); `info` advertises only those */
  implemented: boolean;
}

export const BACKENDS: Record<BackendName, Backend> = {
  qemu: {
    name: 'qemu',
    stemcellFormats: ['openstack-qcow2', 'openstack-raw'],
    implemented: true,
  },
  lxc: { name: 'lxc', stemcellFormats: ['warden-tar', 'general-tar', 'oci-tar'], implemented: true },
  vbox: { name: 'vbox', stemcellFormats: ['vsphere-ovf', 'general-ovf'], implemented: false },
};

export function notImplemented(backend: Backend, uri: string): NotImplemented {
  const working = Object.values(BACKENDS)
    .filter((b) => b.implemented)
    .map((b) => b.name);
  return new NotImplemented(`The ${backend.name} backend (${uri}) is not implemented yet: this release drives ${working.join(' and ')} hosts`);
}

/** `qemu+ssh://host/system` → qemu; `test+unix:///default` behaves like qemu (it is libvirt's test driver). */
export function backendForUri(uri: string): Backend {
  const m = /^([a-z0-9]+)(\+[a-z0-9]+)?:\/\//i.exec(uri);
  const driver = m?.[1]?.toLowerCase();
  switch (driver) {
    case 'qemu':
    case 'kvm':
    case 'test':
      return BACKENDS.qemu;
    case 'lxc':
      return BACKENDS.lxc;
    case 'vbox':
      return BACKENDS.vbox;
    default:
      throw new CloudError(
        `Invalid libvirt.uri: got ${JSON.stringify(uri)}, expected a libvirt URI whose driver is qemu, lxc, vbox or test (e.g. qemu:///system, qemu+ssh://user@host/system, lxc:///, vbox:///session)`,
      );
  }
}
