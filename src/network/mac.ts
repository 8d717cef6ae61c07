// MAC addresses for the VM's NICs. The agent finds a network's NIC by comparing `mac`
// with /sys/class/net/*/address as plain strings, and the kernel prints lowercase, so
// every MAC leaves here lowercase.
import { randomBytes } from 'node:crypto';

/** The OUI QEMU and libvirt use for generated NICs. */
export const QEMU_OUI = '52:54:00';

/** A random `52:54:00:xx:xx:xx`: the default MAC generator. */
export function randomQemuMac(): string {
  const tail = [...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'));
  return [QEMU_OUI, ...tail].join(':');
}

export type MacCheck = { ok: true; mac: string } | { ok: false; rule: string };

/**
 * Normalise a MAC to lowercase and check it may name a VM NIC: unicast, and either in
 * QEMU's OUI or locally administered, so it cannot collide with a vendor's hardware on
 * a bridged LAN. `rule` completes "… but must …".
 */
export function checkMac(value: unknown): MacCheck {
  if (typeof value !== 'string' || !MAC_RE.test(value)) {
    return { ok: false, rule: 'be six colon-separated hex pairs such as 52:54:00:12:34:56' };
  }
  const mac = value.toLowerCase();
  const first = Number.parseInt(mac.slice(0, 2), 16);
  if ((first & 0x01) !== 0) {
    return { ok: false, rule: 'be a unicast MAC (the first octet must be even; this is a multicast address)' };
  }
  if (!mac.startsWith(`${QEMU_OUI}:`) && (first & 0x02) === 0) {
    return { ok: false, rule: `start with the QEMU prefix ${QEMU_OUI} or be locally administered (second hex digit 2, 6, a or e)` };
  }
  return { ok: true, mac };
}

const MAC_RE = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
