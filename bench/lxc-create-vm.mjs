#!/usr/bin/env node
// create_vm wall time on lxc:/// through the bundled CPI (dist/cpi.mjs; `npm run build`
// first) for two container stemcells that differ only in the size of their root
// filesystem: the container test stemcell (fixtures/stemcell/build-container.sh) plus
// 50 MB, and plus 500 MB, of incompressible filler in /opt/filler (1 MB files). A
// container's root is an overlay whose lower layer is the stemcell's directory, so
// create_vm must not copy the rootfs and must not grow with its size. Runs are
// interleaved (order reversed every round); each container is deleted (delete_vm,
// untimed) before the next. Prints the medians, minimums, the median of each step of
// the CPI's 'VM created' log line, and the ratios (500 MB / 50 MB, target <= 1.2).
// Usage: node bench/lxc-create-vm.mjs [runs=5]
// Everything is named lxcs-bench-*: a dir pool under /var/tmp and an isolated network
// (198.18.220.0/24 + fd00:220::/64, no DHCP, no forward); all removed at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpiCall, median } from './cpi-call.mjs';

const runs = Number(process.argv[2] ?? 5);
const uri = 'lxc:///';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist/cpi.mjs');
const prefix = 'lxcs-bench-';
const pool = `${prefix}pool`;
const poolPath = `/var/tmp/${pool}`;
const net = `${prefix}net`;
const bridge = 'lxcs-br220';
const work = mkdtempSync('/var/tmp/lxcs-bench-work-');

const virsh = (...args) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const virshOk = (...args) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

const cpi = (config, method, args) => cpiCall(bundle, config, method, args, 'lxcs-bench');

/** The container test stemcell's root filesystem directory (built and cached by its script). */
function testRootfs() {
  const tarball = execFileSync(join(root, 'fixtures/stemcell/build-container.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop();
  return JSON.parse(readFileSync(join(dirname(tarball), 'info.json'), 'utf8')).rootfs;
}

/** A plain rootfs tar (the importer reads plain or gzipped): the test rootfs plus `fillerMB` 1 MB files. */
function rootfsImage(name, rootfs, fillerMB) {
  const filler = join(work, `${name}-filler`);
  mkdirSync(join(filler, 'opt/filler'), { recursive: true });
  for (let i = 0; i < fillerMB; i++) writeFileSync(join(filler, 'opt/filler', `f${String(i).padStart(4, '0')}`), randomBytes(1024 * 1024));
  const image = join(work, `${name}.tar`);
  execFileSync('tar', ['--numeric-owner', '-cf', image, '-C', rootfs, '.', '-C', filler, './opt']);
  rmSync(filler, { recursive: true, force: true });
  return image;
}

function defineNetwork() {
  virsh('net-destroy', net);
  virsh('net-undefine', net);
  const file = join(work, 'net.xml');
  writeFileSync(file, `<network><name>${net}</name><bridge name='${bridge}' stp='on' delay='0'/><dns enable='no'/>
    <ip address='198.18.220.1' prefix='24'/><ip family='ipv6' address='fd00:220::1' prefix='64'/></network>`);
  virshOk('net-define', file);
  virshOk('net-start', net);
}

function writeConfig() {
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/lxc.json'), 'utf8'));
  const config = {
    ...base,
    name_prefix: prefix,
    storage: { pool, path: poolPath, create_pool: true },
    network: { ...base.network, name: net },
    vm: { ...base.vm, ram: 256, ephemeral_disk_size: 64 },
  };
  const path = join(work, 'cpi.json');
  writeFileSync(path, JSON.stringify(config));
  return path;
}

function cleanup(config) {
  // Through the CPI first: container roots and disks are non-empty directories virsh cannot delete.
  for (const name of virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix))) {
    if (config) spawnSync(process.execPath, [bundle, config], { input: JSON.stringify({ method: 'delete_vm', arguments: [name], context: { director_uuid: 'bench' }, api_version: 2 }) });
    virsh('destroy', name);
    virsh('undefine', name);
  }
  for (const v of virsh('vol-list', pool).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean)) virsh('vol-delete', v, '--pool', pool);
  virsh('pool-destroy', pool);
  virsh('pool-undefine', pool);
  virsh('net-destroy', net);
  virsh('net-undefine', net);
  rmSync(poolPath, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}

const networks = {
  default: { type: 'manual', ip: '198.18.220.10', netmask: '255.255.255.0', gateway: '198.18.220.1', default: ['dns', 'gateway'], cloud_properties: { name: net } },
};

let config;
try {
  readFileSync(bundle);
  cleanup();
  mkdirSync(work, { recursive: true });
  process.stderr.write('building the container test stemcell and two rootfs images…\n');
  const rootfs = testRootfs();
  const kinds = [
    { label: '+50 MB rootfs', mb: 50, path: rootfsImage('r50', rootfs, 50) },
    { label: '+500 MB rootfs', mb: 500, path: rootfsImage('r500', rootfs, 500) },
  ];
  defineNetwork();
  config = writeConfig();
  for (const k of kinds) {
    const r = await cpi(config, 'create_stemcell', [k.path, { name: 'lxcs-bench', version: '1' }]);
    k.cid = r.result;
    k.importMs = r.ms;
    k.ms = [];
    k.steps = [];
    rmSync(k.path);
  }
  // Warm-up (not counted): first use of the pool, the network and the LXC driver.
  const warm = await cpi(config, 'create_vm', ['bench-agent', kinds[0].cid, {}, networks, null, {}]);
  await cpi(config, 'delete_vm', [warm.result[0]]);

  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? kinds : [...kinds].reverse();
    for (const k of order) {
      const r = await cpi(config, 'create_vm', ['bench-agent', k.cid, {}, networks, null, {}]);
      k.ms.push(r.ms);
      const line = r.stderr.split('\n').filter((l) => l.includes('"VM created"')).map((l) => JSON.parse(l))[0];
      if (line?.step_ms) k.steps.push(line.step_ms);
      await cpi(config, 'delete_vm', [r.result[0]]);
    }
  }

  const min = (xs) => Math.min(...xs);
  for (const k of kinds) {
    console.log(`create_vm, stemcell ${k.label.padEnd(16)} median ${median(k.ms).toFixed(0)} ms, min ${min(k.ms).toFixed(0)} ms  [runs ${k.ms.map((m) => m.toFixed(0)).join(', ')}]  (create_stemcell ${k.importMs.toFixed(0)} ms)`);
  }
  // The 'VM created' line's step_ms (create_vm's own steps), median per step.
  const keys = Object.keys(kinds[0].steps[0] ?? {});
  console.log(`per-step median (step_ms, ms)                  ${kinds.map((k) => k.label.padEnd(18)).join('')}`);
  for (const key of keys) console.log(`  ${key.padEnd(46)} ${kinds.map((k) => String(median(k.steps.map((st) => st[key] ?? 0))).padEnd(18)).join('')}`);
  const [small, large] = kinds;
  const rootStep = (k) => median(k.steps.map((st) => st['creating the root filesystem'] ?? NaN));
  console.log(`ratio 500 MB / 50 MB: median ${(median(large.ms) / median(small.ms)).toFixed(3)}, min ${(min(large.ms) / min(small.ms)).toFixed(3)}, root-filesystem step ${(rootStep(large) / rootStep(small)).toFixed(3)} (target <= 1.2, ${runs} runs each, interleaved)`);
} finally {
  cleanup(config);
}
