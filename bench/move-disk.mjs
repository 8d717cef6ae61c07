#!/usr/bin/env node
// Cross-host disk move (src/hosts/move.ts: sparse stream A → B, verified by reading B's
// copy back) vs `virsh vol-download --sparse` + `virsh vol-upload --sparse` of the same
// volume through a local file, measured side by side in the same run, between the two
// daemons of this machine (scripts/second-libvirtd.sh start).
// Usage: node bench/move-disk.mjs [capacityMiB=4096] [dataMiB=512]
// Creates dir pools mh-bench-* under /var/tmp on both daemons and removes them afterwards.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const capacityMiB = Number(process.argv[2] ?? 4096);
const dataMiB = Number(process.argv[3] ?? 512);
const here = dirname(fileURLToPath(import.meta.url));
const A = 'qemu:///system';
const B = execFileSync(join(here, '../scripts/second-libvirtd.sh'), ['uri'], { encoding: 'utf8' }).trim();
const tag = `mh-bench-${process.pid}`;
const poolA = `${tag}-a`;
const poolB = `${tag}-b`;
const dirA = `/var/tmp/${poolA}`;
const dirB = `/var/tmp/${poolB}`;
const staged = `/var/tmp/${tag}.staged`;
const bundle = `/tmp/${tag}-move.mjs`;
const MiB = 1024 * 1024;
const EXTENT = 8;

const virsh = (uri, ...args) => execFileSync('virsh', ['-c', uri, '-q', ...args], { encoding: 'utf8' });

/** A sparse raw file: `dataMiB` of random data in 8 MiB extents spread over the capacity. */
function makeVolume(dir, name) {
  const fd = openSync(join(dir, name), 'w');
  const extents = Math.max(1, Math.floor(dataMiB / EXTENT));
  const stride = Math.floor(capacityMiB / extents);
  const chunk = randomBytes(EXTENT * MiB);
  for (let i = 0; i < extents; i++) {
    chunk.writeUInt32BE(i, 0);
    writeSync(fd, chunk, 0, chunk.length, i * stride * MiB);
  }
  ftruncateSync(fd, capacityMiB * MiB);
  closeSync(fd);
}

function runClient(fromUri, fromPool, toUri, toPool, vol) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundle, fromUri, fromPool, toUri, toPool, vol], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client move exited with ${code}`))));
  });
}

/** What an operator would do with virsh: download to a file, create, upload, delete the original. */
function timeVirsh(vol) {
  const start = process.hrtime.bigint();
  virsh(A, 'vol-download', '--sparse', '--pool', poolA, vol, staged);
  virsh(B, 'vol-create-as', poolB, vol, `${capacityMiB}M`, '--format', 'raw');
  virsh(B, 'vol-upload', '--sparse', '--pool', poolB, vol, staged);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  rmSync(staged, { force: true });
  virsh(B, 'vol-delete', '--pool', poolB, vol);
  return ms;
}

function definePool(uri, name, dir) {
  virsh(uri, 'pool-define-as', name, 'dir', '--target', dir);
  virsh(uri, 'pool-build', name);
  virsh(uri, 'pool-start', name);
}

function removePool(uri, name, dir) {
  try { virsh(uri, 'pool-destroy', name); } catch {}
  try { virsh(uri, 'pool-undefine', name); } catch {}
  rmSync(dir, { recursive: true, force: true });
}

try {
  await build({ entryPoints: [join(here, 'move-disk.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'warning',
    // xmlbuilder2 is CommonJS: give the ESM bundle a require()
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } });
  definePool(A, poolA, dirA);
  definePool(B, poolB, dirB);
  process.stderr.write(`writing a ${capacityMiB} MiB sparse volume with ${dataMiB} MiB of data…\n`);
  makeVolume(dirA, 'disk.raw');
  virsh(A, 'pool-refresh', poolA);

  // Alternate the order (virsh, client, client, virsh) and flush between runs; the client
  // moves A → B, then B → A so the volume is back where virsh reads it.
  const sync = () => execFileSync('sync');
  sync();
  const v1 = timeVirsh('disk.raw');
  sync();
  const c1 = await runClient(A, poolA, B, poolB, 'disk.raw');
  sync();
  const c2 = await runClient(B, poolB, A, poolA, 'disk.raw');
  sync();
  const v2 = timeVirsh('disk.raw');
  process.stderr.write(`runs (ms): virsh ${v1.toFixed(0)}, ${v2.toFixed(0)}; client ${c1.ms.toFixed(0)}, ${c2.ms.toFixed(0)}\n`);
  const virshMs = Math.min(v1, v2);
  const client = c1.ms <= c2.ms ? c1 : c2;
  const result = {
    capacityMiB,
    dataMiB,
    movedDataMiB: Number((client.dataBytes / MiB).toFixed(1)),
    virshMs: Math.round(virshMs),
    clientMs: Math.round(client.ms),
    ratio: Number((virshMs / client.ms).toFixed(3)),
    clientPeakRssMB: Number((Math.max(c1.maxRssKiB, c2.maxRssKiB) / 1024).toFixed(1)),
    clientCpuMs: Math.round(client.cpuMs),
  };
  console.log(`virsh download+upload (--sparse): ${result.virshMs} ms`);
  console.log(`client move (verified)          : ${result.clientMs} ms, ${result.movedDataMiB} MiB of data moved of ${capacityMiB} MiB`);
  console.log(`ratio virsh/client: ${result.ratio} (goal >= 1.0)`);
  console.log(JSON.stringify(result));
} finally {
  removePool(A, poolA, dirA);
  removePool(B, poolB, dirB);
  rmSync(staged, { force: true });
  rmSync(bundle, { force: true });
}
