// Which backend a libvirt URI selects, and what each one offers. Kept free of heavy
// imports (and of the loaders of backend code, which live in profiles.ts): `info` runs
// before almost every call, from the small bin/cpi entry, and needs only this table.
import { CloudError, NotImplemented, NotSupported } from '../errors.js';
import type { BackendName } from './shared/profile.js';

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
  // OVF images import only when their firmware is BIOS (libvirt's vbox driver cannot
  // select EFI); vSphere stemcells are EFI and are refused at create_stemcell, saying so.
  vbox: { name: 'vbox', stemcellFormats: ['openstack-qcow2', 'openstack-raw', 'general-ovf', 'vsphere-ovf'], implemented: true },
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

/**
 * The backend a whole config drives. Several hosts behind one CPI (`hosts`) are qemu/kvm
 * hosts: locating, moving and copying between hosts works on volumes libvirt lists, and
 * an lxc disk attached to a container is a directory libvirt no longer lists.
 */
export function backendForConfig(config: { libvirt: { uri: string }; hosts?: ReadonlyArray<{ name: string; libvirt?: { uri?: string } }> | undefined }): Backend {
  const top = backendForUri(config.libvirt.uri);
  for (const h of config.hosts ?? []) {
    const uri = h.libvirt?.uri ?? config.libvirt.uri;
    const backend = backendForUri(uri);
    if (backend.name !== 'qemu') {
      throw new NotSupported(`hosts: host ${JSON.stringify(h.name)} has libvirt.uri ${JSON.stringify(uri)} (the ${backend.name} backend); several hosts behind one CPI are supported for qemu/kvm hosts only`);
    }
  }
  if (config.hosts && top.name !== 'qemu') {
    throw new NotSupported(`hosts: the top-level libvirt.uri ${JSON.stringify(config.libvirt.uri)} (the ${top.name} backend) is every host's default; several hosts behind one CPI are supported for qemu/kvm hosts only`);
  }
  return top;
}
