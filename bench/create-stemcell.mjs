#!/usr/bin/env node
// create_stemcell throughput through bin/cpi (what the director runs; `npm run build`
// first) against `virsh vol-upload` of the same root.img into the same pool, in the same
// run, for two images:
//   stemcell  shaped like a real openstack-raw stemcell: a 3 GiB raw disk (the stemcell
//             builder's OpenStack default_disk_size, 3072 MiB) holding an ext4 filesystem
//             with ~1.5 GiB of this host's binaries, libraries and kernel modules, the
//             rest unwritten; tarred with plain `tar -czf` as the builder does, so the
//             zeros are stored in the tarball
//   dense     the worst case: a 1 GiB root.img without a single zero block, every 4 KiB
//             page 2 KiB random bytes and 2 KiB text (compresses about 2:1)
// Contenders, alternating with `sync` and a page-cache warm-up between runs (order
// reversed every round), each into a fresh volume:
//   virsh       `virsh vol-upload` of the already-extracted root.img: the target's baseline
//               (issue: cpi/virsh >= 0.9)
//   pipeline    `gzip -dc image | tar -xO root.img | virsh vol-upload /dev/stdin`: the same
//               work create_stemcell does, done with standard tools
//   cpi         create_stemcell, under /usr/bin/time for its peak RSS (target < 100 MB)
// and, for information, `virsh vol-upload --sparse` of a sparse copy of root.img (the
// floor when someone has already extracted and re-sparsified the image), and the decode
// alone (`gzip -dc | wc -c`, Node's gunzip, the CPI's openRootImage read to the end).
// Prints best and median of each and the ratios. Throughput = root.img bytes / wall time.
// Usage: node bench/create-stemcell.mjs [rounds=3] [shapes=stemcell,dense] [uri=qemu:///system]
// Everything is named t-bench-sc-*: a dir pool and a work directory under /var/tmp; all of
// it is removed at the end, also on failure. Needs ~12 GiB free under /var/tmp.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { build } from 'esbuild';

const rounds = Number(process.argv[2] ?? 3);
const shapes = (process.argv[3] ?? 'stemcell,dense').split(',');
const uri = process.argv[4] ?? 'qemu:///system';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binCpi = join(root, 'bin/cpi');
const prefix = 't-bench-sc-';
const pool = `${prefix}pool`;
const poolPath = `/var/tmp/${pool}`;
const work = mkdtempSync(`/var/tmp/${prefix}work-`);
const decodeBundle = join(work, 'decode.mjs');
const MiB = 1024 * 1024;

const virsh = (...args) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const virshOk = (...args) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const sh = (script) => execFileSync('bash', ['-o', 'pipefail', '-c', script], { encoding: 'utf8' });
const now = () => process.hrtime.bigint();
const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const best = (xs) => Math.min(...xs);

/** A raw disk shaped like a stemcell's root.img: ext4 over most of it, files from /usr, the rest never written. */
function makeStemcellShaped(dir) {
  const stage = join(dir, 'stage');
  mkdirSync(join(stage, 'usr/lib'), { recursive: true });
  // Hard links: no copy, and mke2fs -d reads the real files.
  sh(`cp -al /usr/bin "${stage}/usr/bin" && cp -al /usr/lib/x86_64-linux-gnu /usr/lib/modules "${stage}/usr/lib/"`);
  const img = join(dir, 'root.img');
  sh(`truncate -s 3072M "${img}" && mke2fs -q -F -t ext4 -L cloudimg-rootfs -d "${stage}" "${img}"`);
  rmSync(stage, { recursive: true, force: true });
  return img;
}

/** 1 GiB without zero blocks: 16 random MiB blocks reused with a stamp, every 4 KiB page half text. */
async function makeDense(dir) {
  const text = Buffer.alloc(2048, 'stemcell bench: the quick brown fox jumps over the lazy dog. ');
  const blocks = Array.from({ length: 16 }, () => {
    const b = randomBytes(MiB);
    for (let off = 2048; off < MiB; off += 4096) text.copy(b, off);
    return b;
  });
  const img = join(dir, 'root.img');
  const out = createWriteStream(img);
  for (let i = 0; i < 1024; i++) {
    const b = Buffer.from(blocks[(i * 7) % 16]);
    b.writeUInt32BE(i, 0);
    if (!out.write(b)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
  return img;
}

/** The image tarball as the stemcell builder writes it (`tar zcf`: gzip's default level), and a sparse copy of root.img. */
function packImage(dir, img) {
  sh(`tar -C "${dir}" -czf "${dir}/image" root.img && cp --sparse=always "${img}" "${dir}/root-sparse.img"`);
  return { rootImg: img, image: join(dir, 'image'), sparseImg: join(dir, 'root-sparse.img'), bytes: statSync(img).size };
}

function warm(...files) {
  for (const f of files) sh(`cat "${f}" > /dev/null`);
}

function writeConfig() {
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/qemu.json'), 'utf8'));
  const path = join(work, 'cpi.json');
  writeFileSync(path, JSON.stringify({ ...base, name_prefix: prefix, storage: { pool, path: poolPath, create_pool: true } }));
  return path;
}

/** One bin/cpi call under /usr/bin/time; returns { ms, result, maxRssKiB }. */
function cpi(config, method, args) {
  return new Promise((resolve, reject) => {
    const req = JSON.stringify({ method, arguments: args, context: { director_uuid: 'bench', request_id: `t-bench-${method}` }, api_version: 2 });
    const timeFile = join(work, 'time.out');
    const t0 = now();
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, binCpi, config], { env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', () => {
      const ms = since(t0);
      let res;
      try { res = JSON.parse(out); } catch { return reject(new Error(`${method}: no JSON response: ${out}\n${err.slice(-2000)}`)); }
      if (res.error) return reject(new Error(`${method}: ${res.error.type}: ${res.error.message}\n${err.slice(-2000)}`));
      resolve({ ms, result: res.result, maxRssKiB: Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop()) });
    });
    child.stdin.end(req);
  });
}

/** A fresh sparse volume (allocation 0, as create_stemcell makes), so every contender writes into the same kind of file. */
function freshVolume(name, bytes) {
  virsh('vol-delete', name, '--pool', pool);
  virshOk('vol-create-as', pool, name, String(bytes), '--allocation', '0', '--format', 'raw');
}

function timeVirsh(img, name, extra = []) {
  freshVolume(name, img.bytes);
  const t0 = now();
  virshOk('vol-upload', ...extra, '--pool', pool, name, extra.length ? img.sparseImg : img.rootImg);
  const ms = since(t0);
  virsh('vol-delete', name, '--pool', pool);
  return ms;
}

function timePipeline(img) {
  const name = `${prefix}pipe`;
  freshVolume(name, img.bytes);
  const t0 = now();
  sh(`gzip -dc "${img.image}" | tar -xOf - root.img | virsh -q -c ${uri} vol-upload --pool ${pool} ${name} /dev/stdin`);
  const ms = since(t0);
  virsh('vol-delete', name, '--pool', pool);
  return ms;
}

async function timeCpi(config, img) {
  const r = await cpi(config, 'create_stemcell', [img.image, { name: 'bench', version: '1', disk_format: 'raw' }]);
  const path = virshOk('vol-path', '--pool', pool, r.result).trim();
  r.allocatedMiB = Number(sh(`stat -c '%b*%B' "${path}"`).trim().split('*').reduce((a, b) => a * b)) / MiB;
  await cpi(config, 'delete_stemcell', [r.result]);
  return r;
}

/** The decode alone: how fast can each layer produce root.img's bytes? */
async function decodeOnly(img) {
  let t0 = now();
  sh(`gzip -dc "${img.image}" | wc -c > /dev/null`);
  const gzipMs = since(t0);
  t0 = now();
  await new Promise((resolve, reject) => {
    const g = createReadStream(img.image).pipe(createGunzip({ chunkSize: 256 * 1024 }));
    g.on('data', () => {}).on('end', resolve).on('error', reject);
  });
  const nodeGunzipMs = since(t0);
  const r = JSON.parse(execFileSync(process.execPath, [decodeBundle, img.image], { encoding: 'utf8' }));
  if (r.n !== img.bytes) throw new Error(`openRootImage produced ${r.n} bytes, expected ${img.bytes}`);
  return { gzipMs, nodeGunzipMs, openRootImageMs: r.ms };
}

async function bundleDecoder() {
  await build({
    stdin: {
      contents: `import { openRootImage } from '../src/driver/qemu/image.ts';
        const t0 = process.hrtime.bigint();
        const img = await openRootImage(process.argv[2]);
        let n = 0;
        for await (const c of img.stream) n += c.length;
        img.close();
        process.stdout.write(JSON.stringify({ ms: Number(process.hrtime.bigint() - t0) / 1e6, n }));`,
      resolveDir: join(root, 'bench'),
      loader: 'ts',
    },
    bundle: true, platform: 'node', format: 'esm', outfile: decodeBundle, logLevel: 'warning',
    // tar-stream is CommonJS: give the ESM bundle a require(), as scripts/build.mjs does.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
}

async function measure(shape, config) {
  const dir = join(work, shape);
  mkdirSync(dir);
  process.stderr.write(`[${shape}] writing root.img and its tgz…\n`);
  const img = packImage(dir, shape === 'stemcell' ? makeStemcellShaped(dir) : await makeDense(dir));
  const tgzMiB = statSync(img.image).size / MiB;
  const usedMiB = Number(sh(`stat -c '%b*%B' "${img.sparseImg}"`).trim().split('*').reduce((a, b) => a * b)) / MiB;
  warm(img.image, img.rootImg);
  await timeCpi(config, img); // warm-up, not counted (the first one also creates the pool)

  const runs = { virsh: [], pipeline: [], cpi: [], sparse: [] };
  let maxRssKiB = 0;
  let allocatedMiB = 0;
  const contenders = {
    virsh: async () => runs.virsh.push(timeVirsh(img, `${prefix}virsh`)),
    pipeline: async () => runs.pipeline.push(timePipeline(img)),
    cpi: async () => {
      const r = await timeCpi(config, img);
      runs.cpi.push(r.ms);
      maxRssKiB = Math.max(maxRssKiB, r.maxRssKiB);
      allocatedMiB = r.allocatedMiB;
    },
    sparse: async () => runs.sparse.push(timeVirsh(img, `${prefix}sparse`, ['--sparse'])),
  };
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? ['virsh', 'cpi', 'pipeline', 'sparse'] : ['sparse', 'pipeline', 'cpi', 'virsh'];
    for (const name of order) {
      sh('sync');
      warm(img.image, img.rootImg, img.sparseImg);
      process.stderr.write(`[${shape}] round ${i + 1}/${rounds}: ${name}\n`);
      await contenders[name]();
    }
  }
  sh('sync');
  const dec = await decodeOnly(img);
  rmSync(dir, { recursive: true, force: true });
  return { shape, img, tgzMiB, usedMiB, runs, maxRssKiB, allocatedMiB, dec };
}

function report(m) {
  const mibps = (ms) => m.img.bytes / MiB / (ms / 1000);
  const show = (label, xs) =>
    console.log(`  ${label.padEnd(44)} best ${mibps(best(xs)).toFixed(0).padStart(5)} MiB/s, median ${mibps(median(xs)).toFixed(0).padStart(5)} MiB/s  [runs ${xs.map((x) => x.toFixed(0)).join(', ')} ms]`);
  const ratio = (a, b, f) => (f(m.runs[b]) / f(m.runs[a])).toFixed(2);
  console.log(`${m.shape}: root.img ${(m.img.bytes / MiB).toFixed(0)} MiB (${m.usedMiB.toFixed(0)} MiB not zero), tgz ${m.tgzMiB.toFixed(0)} MiB`);
  show('virsh vol-upload root.img (extracted)', m.runs.virsh);
  show('gzip -dc | tar -xO | virsh vol-upload', m.runs.pipeline);
  show('cpi create_stemcell (bin/cpi)', m.runs.cpi);
  show('(info) virsh vol-upload --sparse, sparse copy', m.runs.sparse);
  console.log(`  decode only: gzip -dc | wc -c ${mibps(m.dec.gzipMs).toFixed(0)} MiB/s; Node gunzip ${mibps(m.dec.nodeGunzipMs).toFixed(0)} MiB/s; openRootImage (gunzip+tar) ${mibps(m.dec.openRootImageMs).toFixed(0)} MiB/s`);
  console.log(`  cpi peak RSS ${(m.maxRssKiB / 1024).toFixed(1)} MB (target < 100 MB); stemcell volume allocated ${m.allocatedMiB.toFixed(0)} MiB of ${(m.img.bytes / MiB).toFixed(0)} MiB`);
  console.log(`  ratio cpi/virsh:    best ${ratio('cpi', 'virsh', best)}, median ${ratio('cpi', 'virsh', median)} (target >= 0.9)`);
  console.log(`  ratio cpi/pipeline: best ${ratio('cpi', 'pipeline', best)}, median ${ratio('cpi', 'pipeline', median)}`);
}

function cleanup() {
  for (let i = 0; i < 60 && virsh('version').status !== 0; i++) spawnSync('sleep', ['0.5']);
  for (const v of virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean)) virsh('vol-delete', v, '--pool', pool);
  virsh('pool-destroy', pool);
  virsh('pool-undefine', pool);
  rmSync(poolPath, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}

try {
  readFileSync(join(root, 'dist/cpi.mjs'));
  await bundleDecoder();
  const config = writeConfig();
  const results = [];
  for (const shape of shapes) results.push(await measure(shape, config));
  console.log(`create_stemcell throughput, ${rounds} rounds, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  for (const m of results) report(m);
} finally {
  cleanup();
}
