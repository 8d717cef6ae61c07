#!/usr/bin/env node
// create_stemcell throughput through the bundled CPI (dist/cpi.mjs; `npm run build`
// first) against `virsh vol-upload` into the same pool, in the same run. The image is a
// stemcell tarball (tgz) holding a non-sparse raw root.img of `sizeMiB`, filled like a
// disk that compresses about 2:1 (each 4 KiB page: 2 KiB random bytes, 2 KiB text), so
// gunzip does real work as with a real stemcell. Contenders, alternating with `sync`
// between runs (order reversed every round), each run into a fresh volume:
//   virsh      `virsh vol-upload` of the already-extracted root.img (page cache warm):
//              the floor, no decompression at all
//   pipeline   `gzip -dc image | tar -xO root.img | virsh vol-upload /dev/stdin`: the
//              same work create_stemcell does, done with standard tools
//   cpi        create_stemcell (gunzip → tar → upload, streaming), under /usr/bin/time
//              for its peak RSS (target < 100 MB)
// and, once each, the decode alone (`gzip -dc | wc -c`; Node's gunzip; the CPI's
// openRootImage read to the end) to show where the time goes. Prints best and median of
// each and the ratios cpi/virsh (target >= 0.9) and cpi/pipeline.
// Usage: node bench/create-stemcell.mjs [sizeMiB=1024] [rounds=3] [uri=qemu:///system]
// Everything is named t-bench-sc-*: a dir pool under /var/tmp, files under /var/tmp; all
// of it is removed at the end, also on failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { build } from 'esbuild';

const sizeMiB = Number(process.argv[2] ?? 1024);
const rounds = Number(process.argv[3] ?? 3);
const uri = process.argv[4] ?? 'qemu:///system';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist/cpi.mjs');
const prefix = 't-bench-sc-';
const pool = `${prefix}pool`;
const poolPath = `/var/tmp/${pool}`;
const work = mkdtempSync(`/var/tmp/${prefix}work-`);
const rootImg = join(work, 'root.img');
const image = join(work, 'image');
const decodeBundle = join(work, 'decode.mjs');
const MiB = 1024 * 1024;
const bytes = sizeMiB * MiB;

const virsh = (...args) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const virshOk = (...args) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const now = () => process.hrtime.bigint();
const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mibps = (ms) => bytes / MiB / (ms / 1000);

async function makeImage() {
  // 16 random MiB blocks, reused with a stamp; in every 4 KiB page the second half is text.
  const text = Buffer.alloc(2048, 'stemcell bench: the quick brown fox jumps over the lazy dog. ');
  const blocks = Array.from({ length: 16 }, () => {
    const b = randomBytes(MiB);
    for (let off = 2048; off < MiB; off += 4096) text.copy(b, off);
    return b;
  });
  const out = createWriteStream(rootImg);
  for (let i = 0; i < sizeMiB; i++) {
    const b = Buffer.from(blocks[(i * 7) % 16]);
    b.writeUInt32BE(i, 0);
    if (!out.write(b)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
  execFileSync('sh', ['-c', `tar -C "${work}" -cf - root.img | gzip -1 > "${image}"`]);
}

function warm(...files) {
  for (const f of files) execFileSync('sh', ['-c', `cat "${f}" > /dev/null`]);
}

function writeConfig() {
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/qemu.json'), 'utf8'));
  const path = join(work, 'cpi.json');
  writeFileSync(path, JSON.stringify({ ...base, name_prefix: prefix, storage: { pool, path: poolPath, create_pool: true } }));
  return path;
}

/** One CPI call under /usr/bin/time; returns { ms, result, maxRssKiB }. */
function cpi(config, method, args) {
  return new Promise((resolve, reject) => {
    const req = JSON.stringify({ method, arguments: args, context: { director_uuid: 'bench', request_id: `t-bench-${method}` }, api_version: 2 });
    const timeFile = join(work, 'time.out');
    const t0 = now();
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, process.execPath, bundle, config], { env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
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

function freshVolume(name) {
  virsh('vol-delete', name, '--pool', pool);
  virshOk('vol-create-as', pool, name, String(bytes), '--format', 'raw');
}

function timeVirsh() {
  freshVolume(`${prefix}virsh`);
  const t0 = now();
  virshOk('vol-upload', '--pool', pool, `${prefix}virsh`, rootImg);
  const ms = since(t0);
  virsh('vol-delete', `${prefix}virsh`, '--pool', pool);
  return ms;
}

function timePipeline() {
  freshVolume(`${prefix}pipe`);
  const t0 = now();
  execFileSync('bash', ['-o', 'pipefail', '-c', `gzip -dc "${image}" | tar -xOf - root.img | virsh -q -c ${uri} vol-upload --pool ${pool} ${prefix}pipe /dev/stdin`]);
  const ms = since(t0);
  virsh('vol-delete', `${prefix}pipe`, '--pool', pool);
  return ms;
}

async function timeCpi(config) {
  const r = await cpi(config, 'create_stemcell', [image, { name: 'bench', version: '1', disk_format: 'raw' }]);
  await cpi(config, 'delete_stemcell', [r.result]);
  return r;
}

/** The decode alone: how fast can each layer produce root.img's bytes? */
async function decodeOnly() {
  let t0 = now();
  execFileSync('sh', ['-c', `gzip -dc "${image}" | wc -c > /dev/null`]);
  const gzipMs = since(t0);
  t0 = now();
  await new Promise((resolve, reject) => {
    const g = createReadStream(image).pipe(createGunzip());
    g.on('data', () => {}).on('end', resolve).on('error', reject);
  });
  const nodeGunzipMs = since(t0);
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
  const r = JSON.parse(execFileSync(process.execPath, [decodeBundle, image], { encoding: 'utf8' }));
  if (r.n !== bytes) throw new Error(`openRootImage produced ${r.n} bytes, expected ${bytes}`);
  return { gzipMs, nodeGunzipMs, openRootImageMs: r.ms };
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
  readFileSync(bundle);
  process.stderr.write(`writing a ${sizeMiB} MiB root.img and its tgz…\n`);
  await makeImage();
  const tgzMiB = statSync(image).size / MiB;
  const config = writeConfig();
  // The first create_stemcell creates the pool (create_pool); it is a warm-up, not counted.
  warm(image, rootImg);
  await timeCpi(config);

  const runs = { virsh: [], pipeline: [], cpi: [] };
  let maxRssKiB = 0;
  const contenders = {
    virsh: async () => runs.virsh.push(timeVirsh()),
    pipeline: async () => runs.pipeline.push(timePipeline()),
    cpi: async () => {
      const r = await timeCpi(config);
      runs.cpi.push(r.ms);
      maxRssKiB = Math.max(maxRssKiB, r.maxRssKiB);
    },
  };
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? ['virsh', 'cpi', 'pipeline'] : ['pipeline', 'cpi', 'virsh'];
    for (const name of order) {
      execFileSync('sync');
      warm(image, rootImg);
      await contenders[name]();
    }
  }
  execFileSync('sync');
  const dec = await decodeOnly();

  const show = (label, xs) =>
    console.log(`${label.padEnd(40)} best ${mibps(Math.min(...xs)).toFixed(1)} MiB/s, median ${mibps(median(xs)).toFixed(1)} MiB/s  [runs ${xs.map((m) => m.toFixed(0)).join(', ')} ms]`);
  console.log(`image: ${sizeMiB} MiB raw root.img, tgz ${tgzMiB.toFixed(0)} MiB (gzip -1); throughput = root.img bytes / wall time`);
  show('virsh vol-upload root.img (extracted)', runs.virsh);
  show('gzip -dc | tar -xO | virsh vol-upload', runs.pipeline);
  show('cpi create_stemcell', runs.cpi);
  console.log(`decode only: gzip -dc | wc -c ${mibps(dec.gzipMs).toFixed(1)} MiB/s; Node gunzip ${mibps(dec.nodeGunzipMs).toFixed(1)} MiB/s; openRootImage (gunzip+tar) ${mibps(dec.openRootImageMs).toFixed(1)} MiB/s`);
  console.log(`cpi peak RSS (/usr/bin/time %M)         ${(maxRssKiB / 1024).toFixed(1)} MB (target < 100 MB)`);
  const ratio = (a, b, f) => (f(runs[b]) / f(runs[a])).toFixed(3);
  console.log(`ratio cpi/virsh (extracted root.img):    best ${ratio('cpi', 'virsh', (x) => Math.min(...x))}, median ${ratio('cpi', 'virsh', median)} (target >= 0.9)`);
  console.log(`ratio cpi/pipeline (same gunzip work):   best ${ratio('cpi', 'pipeline', (x) => Math.min(...x))}, median ${ratio('cpi', 'pipeline', median)}`);
} finally {
  cleanup();
}
