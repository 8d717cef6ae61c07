// How a VM's devices change after create_vm (profile.ts: DeviceChanges). libvirt's qemu
// driver hot-plugs: the running domain and its saved definition change in one call
// (liveDevices, what the qemu profile uses). A driver that changes only a stopped
// domain's definition needs a 'cold' implementation of its own: stop the VM, change and
// define its definition, start it again, and say so in the call's log.
import type { Host } from './host.js';
import type { DeviceChanges } from './profile.js';
import { affectFlags } from './vm-metadata.js';
import { AffectFlags } from '../../libvirt/index.js';

export const liveDevices: DeviceChanges = {
  mode: 'live',
  /** into the running domain and its saved definition (CONFIG alone for a stopped one) */
  async add(host: Host, dom, deviceXml) {
    await host.conn.domains.attachDevice(dom, deviceXml, await affectFlags(host, dom));
  },
  async remove(host: Host, dom, deviceXml, where) {
    await host.conn.domains.detachDevice(dom, deviceXml, (where.live ? AffectFlags.LIVE : 0) | (where.saved ? AffectFlags.CONFIG : 0));
  },
};
