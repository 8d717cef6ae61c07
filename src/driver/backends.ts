// Which backend a libvirt URI selects, and what each one offers. Kept free of heavy
// imports: `info` runs before almost every call and needs only this table.
import { CloudError } from '../errors.js';

export type BackendName = 'qemu' | 'lxc' | 'vbox';

export interface Backend {
  name: BackendName;
  /** what `info` reports: the stemcell formats this backend can import */
  stemcellFormats: string[];
}

export const BACKENDS: Record<BackendName, Backend> = {
  qemu: { name: 'qemu', stemcellFormats: ['openstack-qcow2', 'openstack-raw'] },
  lxc: { name: 'lxc', stemcellFormats: ['warden-tar', 'general-tar'] },
  vbox: { name: 'vbox', stemcellFormats: ['vsphere-ovf', 'general-ovf'] },
};

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
