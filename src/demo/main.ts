// The demo lifecycle, driving the built bin/cpi exactly as a director would: one
// process per call, JSON on stdin, JSON on stdout.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const config = join(root, 'fixtures/config/qemu.json');

function cpi(method: string, args: unknown[] = []): unknown {
  const req = { method, arguments: args, context: { director_uuid: 'demo', request_id: `demo-${method}` }, api_version: 2 };
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(root, 'dist/cpi.mjs'), config], {
    input: JSON.stringify(req),
    env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'warn' },
  });
  const res = JSON.parse(r.stdout.toString()) as { result: unknown; error: { type: string; message: string } | null; log: string };
  const ms = Date.now() - t0;
  if (res.error) {
    console.log(`✗ ${method} (${ms} ms): ${res.error.type}: ${res.error.message}`);
    process.exitCode = 1;
    throw new Error(`${method} failed`);
  }
  console.log(`✓ ${method} (${ms} ms) → ${JSON.stringify(res.result)}`);
  return res.result;
}

console.log(`bosh-libvirt-cpi demo against qemu:///system (config ${config})`);
cpi('info');
const libvirt = spawnSync('virsh', ['-c', 'qemu:///system', 'version'], { encoding: 'utf8' });
console.log(libvirt.status === 0 ? `✓ libvirt reachable:\n${libvirt.stdout.trim()}` : `✗ libvirt unreachable: ${libvirt.stderr}`);
if (libvirt.status !== 0) process.exitCode = 1;
