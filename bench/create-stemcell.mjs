#!/usr/bin/env node
// create_stemcell through bin/cpi (what the director runs; `npm run build` first) against
// its floor: a plain node process (no flags) inflating the same tarball to /dev/null,
// `pipeline(createReadStream(f, 1 MiB reads), createGunzip({ chunkSize: 1 MiB }),
// createWriteStream('/dev/null'))` — the fastest plain gunzip stream here (zlib's default
// 16 KiB chunks are 2-4x slower, which would flatter the CPI; it is printed for
// information). Inflating the director's tarball is the one step create_stemcell cannot
// skip or parallelise (one deflate stream), so the ratio says what the rest costs: tar,
// hole detection, the upload to libvirt and the CPI process itself (issue 14, part 5:
// target <= 1.15, peak RSS <= 128 MB). Two images, built in the run:
//   stemcell        shaped like a real openstack-raw stemcell: a 3 GiB raw disk (the
//                   stemcell builder's OpenStack default_disk_size) holding an ext4
//                   filesystem with ~1.4 GiB of this host's binaries, libraries and
//                   kernel modules, the rest never written; tarred with plain `tar -czf`
//                   as the builder does, so the zeros are stored in the tarball
//   incompressible  512 MiB of random bytes: inflate is nearly a copy, so every other
//                   cost of the pipeline shows
// Contenders alternate (order reversed every round) with `sync` and a page-cache warm-up
// of the tarball before each run; every create_stemcell gets a fresh volume (deleted
// again, untimed). Prints both medians, the ratio of medians and the median of the
// per-round ratios, bin/cpi's peak RSS (/usr/bin/time -f %M) and how much of the volume
// was allocated (sparse import).
// Usage: node bench/create-stemcell.mjs [rounds=5] [shapes=stemcell,incompressible] [uri=qemu:///system]
// Everything is named t-bench-sc-*: a dir pool and a work directory under /var/tmp; all of
// it is removed at the end, also on failure. BENCH_IMAGES=<dir> keeps the generated images
// there and reuses them in later runs (building them takes minutes).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomFillSync } from 'node:crypto';

const rounds = Number(process.argv[2] ?? 5);
const shapes = (process.argv[3] ?? 'stemcell,incompressible').split(',');
const uri = process.argv[4] ?? 'qemu:///system';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binCpi = join(root, 'bin/cpi');
const prefix = 't-bench-sc-';
const pool = `${prefix}pool`;
const poolPath = `/var/tmp/${pool}`;
const work = mkdtempSync(`/var/tmp/${prefix}work-`);
const images = process.env.BENCH_IMAGES ?? join(work, 'images');
const MiB = 1024 * 1024;

// argv: the tarball, then the read and inflate chunk size (0: node's defaults).
const GUNZIP = `const { createReadStream, createWriteStream } = require('node:fs');
const { createGunzip } = require('node:zlib');
const { pipeline } = require('node:stream');
const size = Number(process.argv[2]);
pipeline(createReadStream(process.argv[1], size ? { highWaterMark: size } : {}), createGunzip(size ? { chunkSize: size } : {}), createWriteStream('/dev/null'),
  (e) => { if (e) { console.error(e); process.exit(1); } });`;

const virsh = (...args) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const virshOk = (...args) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const sh = (script) => execFileSync('bash', ['-o', 'pipefail', '-c', script], { encoding: 'utf8' });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const allocatedMiB = (path) => Number(sh(`stat -c '%b*%B' "${path}"`).trim().split('*').reduce((a, b) => a * b)) / MiB;

/** A raw disk shaped like a stemcell's root.img: ext4 over most of it, files from /usr, the rest never written. */
function makeStemcellShaped(dir) {
  const stage = join(dir, 'stage');
  mkdirSync(join(stage, 'usr/lib'), { recursive: true });
  // Hard links: no copy, and mke2fs -d reads the real files.
  sh(`cp -al /usr/bin "${stage}/usr/bin" && cp -al /usr/lib/x86_64-linux-gnu /usr/lib/modules "${stage}/usr/lib/"`);
  const img = join(dir, 'root.img');
  sh(`truncate -s 3072M "${img}" && mke2fs -q -F -t ext4 -L cloudimg-rootfs -d "${stage}" "${img}"`);
  rmSync(stage, { recursive: true, force: true });
}

/** 512 MiB that deflate cannot shrink. */
async function makeIncompressible(dir) {
  const out = createWriteStream(join(dir, 'root.img'));
  const block = Buffer.alloc(MiB);
  for (let i = 0; i < 512; i++) {
    if (!out.write(Buffer.from(randomFillSync(block)))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
}

/** The image tarball as the stemcell builder writes it (`tar -czf`: gzip's default level); built once per BENCH_IMAGES. */
async function image(shape) {
  const dir = join(images, shape);
  const tgz = join(dir, 'image');
  if (!existsSync(tgz)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`[${shape}] writing root.img and its tgz…\n`);
    if (shape === 'stemcell') makeStemcellShaped(dir);
    else if (shape === 'incompressible') await makeIncompressible(dir);
    else throw new Error(`unknown shape ${shape} (expected stemcell or incompressible)`);
    const rootImg = join(dir, 'root.img');
    const meta = { bytes: statSync(rootImg).size, usedMiB: allocatedMiB(rootImg) };
    sh(`tar -C "${dir}" -czf "${tgz}.part" root.img && rm "${rootImg}"`);
    writeFileSync(join(dir, 'meta.json'), JSON.stringify(meta));
    renameSync(`${tgz}.part`, tgz);
  }
  return { path: tgz, tgzMiB: statSync(tgz).size / MiB, ...JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) };
}

function writeConfig() {
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/qemu.json'), 'utf8'));
  const path = join(work, 'cpi.json');
  writeFileSync(path, JSON.stringify({ ...base, name_prefix: prefix, storage: { pool, path: poolPath, create_pool: true } }));
  return path;
}

/** Runs a command under /usr/bin/time; resolves { ms, stdout, maxRssKiB } once it exited 0. */
function timed(cmd, args, input = '') {
  return new Promise((resolve, reject) => {
    const timeFile = join(work, 'time.out');
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, cmd, ...args], { env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}\n${err.slice(-2000)}`));
      resolve({ ms, stdout: out, stderr: err, maxRssKiB: Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop()) });
    });
    child.stdin.end(input);
  });
}

async function cpi(config, method, args) {
  const req = JSON.stringify({ method, arguments: args, context: { director_uuid: 'bench', request_id: `t-bench-${method}` }, api_version: 2 });
  const r = await timed(binCpi, [config], req);
  let res;
  try { res = JSON.parse(r.stdout); } catch { throw new Error(`${method}: no JSON response: ${r.stdout}\n${r.stderr.slice(-2000)}`); }
  if (res.error) throw new Error(`${method}: ${res.error.type}: ${res.error.message}\n${r.stderr.slice(-2000)}`);
  return { ...r, result: res.result };
}

async function timeCpi(config, img) {
  const r = await cpi(config, 'create_stemcell', [img.path, { name: 'bench', version: '1', disk_format: 'raw' }]);
  r.allocatedMiB = allocatedMiB(virshOk('vol-path', '--pool', pool, r.result).trim());
  await cpi(config, 'delete_stemcell', [r.result]);
  return r;
}

const timeGunzip = (img, size = MiB) => timed(process.execPath, ['-e', GUNZIP, img.path, String(size)]);

async function measure(shape, config) {
  const img = await image(shape);
  const settle = () => { sh('sync'); sh(`cat "${img.path}" > /dev/null`); };
  settle();
  await timeCpi(config, img); // warm-up, not counted (the first one also creates the pool)
  const runs = { gunzip: [], cpi: [], defaults: [] };
  const rss = { gunzip: 0, cpi: 0, defaults: 0 };
  let allocated = 0;
  const run = { gunzip: () => timeGunzip(img), cpi: () => timeCpi(config, img), defaults: () => timeGunzip(img, 0) };
  for (let i = 0; i < rounds; i++) {
    for (const name of i % 2 === 0 ? ['gunzip', 'cpi', 'defaults'] : ['defaults', 'cpi', 'gunzip']) {
      settle();
      process.stderr.write(`[${shape}] round ${i + 1}/${rounds}: ${name}\n`);
      const r = await run[name]();
      runs[name].push(r.ms);
      rss[name] = Math.max(rss[name], r.maxRssKiB);
      if (name === 'cpi') allocated = r.allocatedMiB;
    }
  }
  return { shape, img, runs, rss, allocated };
}

function report(m) {
  const show = (label, xs) => console.log(`  ${label.padEnd(40)} median ${median(xs).toFixed(0).padStart(6)} ms  [runs ${xs.map((x) => x.toFixed(0)).join(', ')} ms]`);
  const ratios = m.runs.cpi.map((c, i) => c / m.runs.gunzip[i]);
  const mib = (kib) => (kib / 1024).toFixed(1);
  console.log(`${m.shape}: root.img ${(m.img.bytes / MiB).toFixed(0)} MiB (${m.img.usedMiB.toFixed(0)} MiB allocated), tgz ${m.img.tgzMiB.toFixed(0)} MiB`);
  show('node gunzip > /dev/null, 1 MiB (floor)', m.runs.gunzip);
  show('create_stemcell (bin/cpi)', m.runs.cpi);
  show('(info) node gunzip, zlib defaults', m.runs.defaults);
  console.log(`  peak RSS: bin/cpi ${mib(m.rss.cpi)} MB (target <= 128 MB), node gunzip ${mib(m.rss.gunzip)} MB; volume allocated ${m.allocated.toFixed(0)} MiB of ${(m.img.bytes / MiB).toFixed(0)} MiB`);
  console.log(`  ratio create_stemcell / gunzip: of medians ${(median(m.runs.cpi) / median(m.runs.gunzip)).toFixed(2)}, median of rounds ${median(ratios).toFixed(2)} [${ratios.map((r) => r.toFixed(2)).join(', ')}] (target <= 1.15)`);
  console.log(`  (info) ratio create_stemcell / gunzip with zlib defaults: of medians ${(median(m.runs.cpi) / median(m.runs.defaults)).toFixed(2)}`);
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
  const config = writeConfig();
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const results = [];
  for (const shape of shapes) results.push(await measure(shape, config));
  const load1 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`create_stemcell vs node gunzip, ${rounds} rounds, node ${process.version}, load average ${load0} at the start, ${load1} at the end`);
  for (const m of results) report(m);
} finally {
  cleanup();
}
