// The demo: a whole BOSH lifecycle against local libvirt with the project's test
// stemcell, driving the built bin/cpi exactly as a director would (one process per call,
// JSON on stdin and stdout), and showing what the guest reported from inside. It defines
// on the isolated dual-stack network `bosh-cpi` that scripts/setup-host.sh defines (no
// <forward>, no router advertisements), with fixtures/config/qemu.json as it is, and
// removes everything it created at the end, also after a failure.
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, isLibvirtError, ErrorCode, type Connection } from '../libvirt/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const URI = 'qemu:///system';
const NETWORK = 'bosh-cpi';
const V4 = { net: '198.18.250', gw: '198.18.250.1', vm: '198.18.250.10' };
const V6 = { gw: 'fd00:250::1', vm: 'fd00:250::10' };
const PREFIX = 'demo-';

interface Response {
  result: unknown;
  error: { type: string; message: string } | null;
  log: string;
}

const work = mkdtempSync(join(tmpdir(), 'bosh-cpi-demo-'));
const config = join(work, 'cpi.json');

function writeDemoConfig(): void {
  // The ready qemu config, with a name prefix and the demo's network.
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/qemu.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  if ((base.network as { name?: string } | undefined)?.name !== NETWORK) throw new Error(`fixtures/config/qemu.json must name the network ${NETWORK}`);
  const demo = { ...base, name_prefix: PREFIX, vm: { ...base.vm, ram: 256, ephemeral_disk_size: 256, reboot_timeout_seconds: 10 } };
  writeFileSync(config, JSON.stringify(demo, null, 2));
}

function short(v: unknown): string {
  const s = JSON.stringify(v);
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

function cpi(method: string, args: unknown[] = [], context: Record<string, unknown> = {}): unknown {
  const req = { method, arguments: args, context: { director_uuid: 'demo', request_id: `demo-${method}`, ...context }, api_version: 2 };
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(root, 'dist/cpi.mjs'), config], { input: JSON.stringify(req), env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'warn' } });
  const res = JSON.parse(r.stdout.toString()) as Response;
  const took = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  if (res.error) {
    console.log(`✗ ${method} (${took}): ${res.error.type}: ${res.error.message}`);
    throw new Error(`${method} failed`);
  }
  console.log(`✓ ${method.padEnd(16)} ${took.padStart(6)}  → ${short(res.result)}`);
  return res.result;
}

interface Report {
  agent_id: string;
  boot_id: string;
  networks: Record<string, { iface: string | null; mac?: string; addresses: string[] }>;
  routes: { ipv4: string[]; ipv6: string[] };
  disks: { ephemeral: { device: string | null; resolved_by: string | null } | null };
  errors: string[];
}

async function guestReport(address: string, notBoot?: string, timeoutMs = 180_000): Promise<Report> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${address}:8080/cgi-bin/report`, { signal: AbortSignal.timeout(30_000) }); // the report takes seconds on a loaded TCG guest
      const report = (await res.json()) as Report;
      if (!notBoot || report.boot_id !== notBoot) return report;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`the guest at ${address} did not report within ${timeoutMs / 1000} s (${last})`);
}

function describeGuest(r: Report): void {
  // one line per NIC: each network has its own (dual-homed)
  const nics = Object.values(r.networks).filter((n) => n.iface);
  console.log(`    guest: agent ${r.agent_id}, ${nics.map((n) => `${n.iface} (${n.mac}) has ${n.addresses.join(', ')}`).join('; ')}`);
  console.log(`    guest: ${r.routes.ipv4.find((l) => l.startsWith('default'))}; ${r.routes.ipv6.find((l) => l.startsWith('default'))}`);
  console.log(`    guest: ephemeral disk ${r.disks.ephemeral?.device} (found by ${r.disks.ephemeral?.resolved_by}); problems: ${r.errors.length ? r.errors.join('; ') : 'none'}`);
}

async function requireNetwork(conn: Connection): Promise<void> {
  try {
    const net = await conn.networks.lookupByName(NETWORK);
    if (!(await conn.networks.isActive(net))) await conn.networks.create(net);
  } catch (e) {
    if (!isLibvirtError(e, ErrorCode.NO_NETWORK)) throw e;
    throw new Error(`libvirt network ${NETWORK} does not exist: run scripts/setup-host.sh (scripts/demo does) to define it`);
  }
}

async function main(): Promise<void> {
  writeDemoConfig();
  console.log(`bosh-libvirt-cpi demo: a BOSH lifecycle on ${URI} (TCG), config ${config}\n`);
  const conn = await connect(URI);
  const created: { vm?: string; disk?: string; snapshot?: string; stemcell?: string } = {};
  try {
    await requireNetwork(conn);
    console.log(`• isolated dual-stack network ${NETWORK} (${V4.net}.0/24, fd00:250::/64, no forwarding, no RAs)`);
    cpi('info');

    console.log('• building the test stemcell (cached after the first run)');
    const tarball = execFileSync(join(root, 'fixtures/stemcell/build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!;
    execFileSync('tar', ['-xzf', tarball, '-C', work, 'image']);
    created.stemcell = cpi('create_stemcell', [join(work, 'image'), { name: 'bosh-libvirt-test-stemcell', disk_format: 'qcow2' }, { tags: { demo: 'true' } }]) as string;

    const networks = {
      ipv4: { type: 'manual', ip: V4.vm, netmask: '255.255.255.0', gateway: V4.gw, dns: [V4.gw], default: ['dns', 'gateway'], cloud_properties: { name: NETWORK } },
      ipv6: { type: 'manual', ip: V6.vm, netmask: 'ffff:ffff:ffff:ffff:0000:0000:0000:0000', gateway: V6.gw, default: ['gateway'], cloud_properties: { name: NETWORK } },
    };
    const [vm] = cpi('create_vm', ['demo-agent', created.stemcell, { cpu: 1, ram: 256 }, networks, [], { bosh: { ipv6: { enable: true } } }], { vm: { stemcell: { api_version: 3 } } }) as [string];
    created.vm = vm;
    console.log('• waiting for the guest to boot and report (TCG: about 15 s)');
    const first = await guestReport(V4.vm);
    describeGuest(first);
    const v6 = await guestReport(`[${V6.vm}]`);
    console.log(`    host → guest over IPv6 [${V6.vm}]:8080 answered as agent ${v6.agent_id}`);

    cpi('set_vm_metadata', [vm, { director: 'demo', deployment: 'demo', instance_group: 'web', index: '0' }]);
    created.disk = cpi('create_disk', [64, {}, vm]) as string;
    const hint = cpi('attach_disk', [vm, created.disk]) as { id: string; path: string };
    console.log(`    disk CID ${created.disk} (${created.disk.length} characters) is its virtio serial: ${hint.id === created.disk}`);
    // Hot-plug takes the guest a moment: wait until it has the disk (its serial, the
    // CID), then resolve it as the agent does: by the disk CID, under each agent
    // generation's rule (the CID's first 20 characters, or all of it), then by path.
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`http://${V4.vm}:8080/cgi-bin/resolve?cid=${created.disk}`, { signal: AbortSignal.timeout(15_000) }).catch(() => null);
      if (res?.ok) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    for (const rule of ['first20', 'whole']) {
      const res = await fetch(`http://${V4.vm}:8080/cgi-bin/resolve?cid=${created.disk}&path=${hint.path}&rule=${rule}`);
      console.log(`    guest: disk ${created.disk} (agent rule ${rule}) resolves to ${short(await res.json())}`);
    }
    created.snapshot = cpi('snapshot_disk', [created.disk, { demo: 'true' }]) as string;

    cpi('reboot_vm', [vm]);
    const again = await guestReport(V4.vm, first.boot_id);
    console.log(`    guest: rebooted (boot ${again.boot_id.slice(0, 8)} after ${first.boot_id.slice(0, 8)}), problems: ${again.errors.length ? again.errors.join('; ') : 'none'}`);
    describeGuest(again);
  } finally {
    console.log('• cleaning up');
    const step = (what: string, fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        console.log(`  (cleanup: ${what} failed: ${(e as Error).message})`);
        process.exitCode = 1;
      }
    };
    if (created.snapshot) step('delete_snapshot', () => cpi('delete_snapshot', [created.snapshot]));
    if (created.vm && created.disk) step('detach_disk', () => cpi('detach_disk', [created.vm, created.disk]));
    if (created.disk) step('delete_disk', () => cpi('delete_disk', [created.disk]));
    if (created.vm) step('delete_vm', () => cpi('delete_vm', [created.vm]));
    if (created.stemcell) step('delete_stemcell', () => cpi('delete_stemcell', [created.stemcell]));
    const left = (await conn.domains.listAll(0)).filter((d) => d.name.startsWith(PREFIX)).map((d) => d.name);
    console.log(left.length ? `✗ left behind: ${left.join(', ')}` : `✓ nothing left behind (no ${PREFIX}* domains)`);
    await conn.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
