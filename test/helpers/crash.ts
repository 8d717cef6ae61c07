// Shared by the crash-safety tests: the operator CLI run asynchronously (a proxy in the
// test process must keep serving while it runs), and what libvirt holds for a prefix.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './cpi.js';

export const CLI = join(ROOT, 'dist/cli.mjs');
const URI = 'qemu:///system';
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });

export interface OrphanJson {
  orphans: Array<{ kind: string; name: string; reason: string }>;
  skippedYoung: string[];
  deleted: string[];
  failed: Array<{ name: string; error: string }>;
}

export async function orphansCli(config: string, args: string[]): Promise<{ code: number | null; report: OrphanJson; stderr: string }> {
  const { BOSH_LIBVIRT_CPI_CONFIG: _drop, ...env } = process.env;
  const child = spawn(process.execPath, [CLI, 'orphans', '--config', config, '--json', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += String(d); });
  child.stderr.on('data', (d) => { err += String(d); });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  try {
    return { code, report: JSON.parse(out) as OrphanJson, stderr: err };
  } catch {
    throw new Error(`orphans printed no JSON (exit ${code}): ${out}\n${err}`);
  }
}

/** DHCP <host> entries of a libvirt network, as text lines (what must come back to as before). */
export function dhcpHosts(network: string): string[] {
  return [...virsh('net-dumpxml', network).stdout.matchAll(/<host [^>]*>/g)].map((m) => m[0]).sort();
}

/** Domains and pool volumes carrying the prefix, plus the network's DHCP hosts: one comparable picture. */
export function libvirtState(prefix: string, pool: string, network: string): { domains: string[]; volumes: string[]; dhcp: string[] } {
  const domains = virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix)).sort();
  virsh('pool-refresh', pool);
  const volumes = virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((s): s is string => !!s).sort();
  return { domains, volumes, dhcp: dhcpHosts(network) };
}

export function domainMetadata(name: string): string {
  return virsh('metadata', name, 'urn:bosh-libvirt-cpi:vm:1').stdout;
}
