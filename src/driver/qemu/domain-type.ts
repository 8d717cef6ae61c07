// kvm or qemu (TCG). `auto` picks kvm only when the host's domain capabilities offer
// it for this machine; operators whose /dev/kvm exists but does not work (nested
// virtualisation) set domain_type: qemu.
import type { Host } from '../shared/host.js';

export async function resolveDomainType(host: Host, machine: string): Promise<'kvm' | 'qemu'> {
  const wanted = host.config.domain_type;
  if (wanted !== 'auto') return wanted;
  try {
    const caps = await host.conn.domainCapabilities(null, 'x86_64', machine, 'kvm', 0);
    return /<domain>\s*kvm\s*<\/domain>/.test(caps) ? 'kvm' : 'qemu';
  } catch {
    return 'qemu';
  }
}
