#!/usr/bin/env node
// Upload throughput of the libvirt client vs `virsh vol-upload`, same file, same run.
// Usage: node bench/upload.mjs [sizeMiB=1024] [uri=qemu:///system]
// Creates a dir pool t-rpc-bench-* under /var/tmp and removes it (and the file) afterwards.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const sizeMiB = Number(process.argv[2] ?? 1024);
const uri = process.argv[3] ?? 'qemu:///system';
const here = dirname(fileURLToPath(import.meta.url));
const tag = `t-rpc-bench-${process.pid}`;
const dir = `/var/tmp/${tag}`;
const file = `/var/tmp/${tag}.img`;
const bundle = `/tmp/${tag}-upload.mjs`;
const MiB = 1024 * 1024;

const virsh = (...args) => execFileSync('virsh', ['-c', uri, '-q', ...args], { encoding: 'utf8' });

async function makeFile() {
  // Non-sparse, non-constant content: 16 random MiB blocks, each stamped with its index.
  const blocks = Array.from({ length: 16 }, () => randomBytes(MiB));
  const out = createWriteStream(file);
  for (let i = 0; i < sizeMiB; i++) {
    const b = Buffer.from(blocks[(i * 7) % 16]);
    b.writeUInt32BE(i, 0);
    if (!out.write(b)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
  // Warm the page cache so both contenders read the file from memory.
  for await (const _ of createReadStream(file, { highWaterMark: 4 * MiB })) { /* discard */ }
}

function peakRss(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

function runClient(vol) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundle, uri, tag, vol, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let hwm = 0;
    const poll = setInterval(() => { hwm = Math.max(hwm, peakRss(child.pid)); }, 100);
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code) => {
      clearInterval(poll);
      if (code !== 0) return reject(new Error(`client upload exited with ${code}`));
      const r = JSON.parse(out);
      resolve({ ...r, maxRssKiB: Math.max(r.maxRssKiB, hwm) });
    });
  });
}

function timeVirsh(vol) {
  const start = process.hrtime.bigint();
  virsh('vol-upload', '--pool', tag, vol, file);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

try {
  await build({ entryPoints: [join(here, 'upload.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'warning' });
  process.stderr.write(`writing ${sizeMiB} MiB test file…\n`);
  await makeFile();
  virsh('pool-define-as', tag, 'dir', '--target', dir);
  virsh('pool-build', tag);
  virsh('pool-start', tag);
  for (const v of ['client.raw', 'virsh.raw']) virsh('vol-create-as', tag, v, `${sizeMiB}M`, '--format', 'raw');

  // Dirty pages of one run slow down the next, so flush between runs and alternate the
  // order (virsh, client, client, virsh); each contender's best run counts.
  const sync = () => execFileSync('sync');
  sync();
  const v1 = timeVirsh('virsh.raw');
  sync();
  const c1 = await runClient('client.raw');
  sync();
  const c2 = await runClient('client.raw');
  sync();
  const v2 = timeVirsh('virsh.raw');
  const virshMs = Math.min(v1, v2);
  const client = c1.ms <= c2.ms ? { ...c1, maxRssKiB: Math.max(c1.maxRssKiB, c2.maxRssKiB) } : { ...c2, maxRssKiB: Math.max(c1.maxRssKiB, c2.maxRssKiB) };
  process.stderr.write(`runs (ms): virsh ${v1.toFixed(0)}, ${v2.toFixed(0)}; client ${c1.ms.toFixed(0)}, ${c2.ms.toFixed(0)}\n`);
  const bytes = sizeMiB * MiB;
  const mbps = (ms) => bytes / MiB / (ms / 1000);
  const result = {
    sizeMiB,
    virshMiBps: Number(mbps(virshMs).toFixed(1)),
    clientMiBps: Number(mbps(client.ms).toFixed(1)),
    ratio: Number((virshMs / client.ms).toFixed(3)),
    clientPeakRssMB: Number((client.maxRssKiB / 1024).toFixed(1)),
    clientCpuMs: Math.round(client.cpuMs),
  };
  console.log(`virsh vol-upload : ${result.virshMiBps} MiB/s`);
  console.log(`client upload    : ${result.clientMiBps} MiB/s`);
  console.log(`ratio client/virsh: ${result.ratio} (target >= 0.9)`);
  console.log(`client peak RSS  : ${result.clientPeakRssMB} MB (target < 100 MB)`);
  console.log(JSON.stringify(result));
} finally {
  try { virsh('pool-destroy', tag); } catch {}
  try { virsh('pool-undefine', tag); } catch {}
  rmSync(dir, { recursive: true, force: true });
  rmSync(file, { force: true });
  rmSync(bundle, { force: true });
}
