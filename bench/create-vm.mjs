#!/usr/bin/env node
// create_vm wall time through the bundled CPI (dist/cpi.mjs; `npm run build` first) for
// stemcells of very different size, in one run. The root disk is a qcow2 overlay backed
// by the stemcell volume, so create_vm must not depend on the stemcell's size: neither
// its virtual size (100 MiB vs 4 GiB, both empty qcow2) nor the data it holds (100 MiB vs
// 1 GiB of written, allocated clusters). Runs are interleaved (order reversed every
// round) and each VM is deleted (delete_vm, untimed) before the next; prints medians,
// the median of each `step_ms` key of the CPI's 'VM created' log line, and the ratios
// (target <= 1.1) of medians, of minimums (the least disturbed run: the host is shared)
// and of the root-disk step alone. Usage: node bench/create-vm.mjs [runs=5] [uri=qemu:///system]
// Everything is named t-bench-vm-*: a dir pool under /var/tmp and an isolated network
// (198.18.91.0/24, no DHCP, no forward); all of it is removed at the end, also on failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpiCall, median } from './cpi-call.mjs';

const runs = Number(process.argv[2] ?? 5);
const uri = process.argv[3] ?? 'qemu:///system';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist/cpi.mjs');
const prefix = 't-bench-vm-';
const pool = `${prefix}pool`;
const poolPath = `/var/tmp/${pool}`;
const net = `${prefix}net`;
const bridge = 't-bench-br91';
const work = mkdtempSync('/var/tmp/t-bench-vm-work-');

const virsh = (...args) => spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
const virshOk = (...args) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

const cpi = (config, method, args) => cpiCall(bundle, config, method, args, 't-bench');

/** A stemcell image tgz holding a qcow2 root.img of `virtualMiB`, with `dataMiB` written (pattern 0xab). */
function stemcellImage(name, virtualMiB, dataMiB) {
  const dir = join(work, name);
  execFileSync('mkdir', ['-p', dir]);
  const img = join(dir, 'root.img');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, `${virtualMiB}M`]);
  if (dataMiB > 0) execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 0xab 0 ${dataMiB}M`, img], { stdio: 'ignore' });
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', img], { encoding: 'utf8' }));
  execFileSync('tar', ['-C', dir, '-czf', join(dir, 'image'), 'root.img']);
  rmSync(img);
  return { path: join(dir, 'image'), virtualMiB, allocatedMiB: Math.round(info['actual-size'] / 2 ** 20) };
}

function defineNetwork() {
  virsh('net-destroy', net);
  virsh('net-undefine', net);
  const file = join(work, 'net.xml');
  writeFileSync(file, `<network><name>${net}</name><bridge name='${bridge}' stp='on' delay='0'/><dns enable='no'/>
    <ip address='198.18.91.1' prefix='24'/><ip family='ipv6' address='fd00:91::1' prefix='64'/></network>`);
  virshOk('net-define', file);
  virshOk('net-start', net);
}

function writeConfig() {
  const base = JSON.parse(readFileSync(join(root, 'fixtures/config/qemu.json'), 'utf8'));
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

/** Waits (up to 30 s) for libvirtd to answer: another job on the host may be restarting it. */
function waitDaemon() {
  for (let i = 0; i < 60; i++) {
    if (virsh('version').status === 0) return;
    spawnSync('sleep', ['0.5']);
  }
}

function cleanup() {
  waitDaemon();
  for (const name of virsh('list', '--all', '--name').stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix))) {
    virsh('destroy', name);
    virsh('undefine', name, '--nvram', '--snapshots-metadata');
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
  default: { type: 'manual', ip: '198.18.91.10', netmask: '255.255.255.0', gateway: '198.18.91.1', default: ['dns', 'gateway'], cloud_properties: { name: net } },
};

try {
  readFileSync(bundle);
  cleanup();
  execFileSync('mkdir', ['-p', work]);
  process.stderr.write('building stemcell images…\n');
  const kinds = [
    { label: 'empty, 100 MiB virtual', ...stemcellImage('v100', 100, 0) },
    { label: 'empty, 4 GiB virtual', ...stemcellImage('v4096', 4096, 0) },
    { label: '100 MiB written', ...stemcellImage('d100', 100, 100) },
    { label: '1 GiB written', ...stemcellImage('d1024', 1024, 1024) },
  ];
  defineNetwork();
  const config = writeConfig();
  for (const k of kinds) {
    k.cid = (await cpi(config, 'create_stemcell', [k.path, { name: 'bench', version: '1', disk_format: 'qcow2' }])).result;
    k.ms = [];
    k.steps = [];
  }
  // Warm-up (not counted): first use of the pool, the network and qemu's binaries.
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

  const pad = (s, n) => String(s).padEnd(n);
  const min = (xs) => Math.min(...xs);
  for (const k of kinds) {
    console.log(`${pad(`create_vm, stemcell ${k.label}`, 44)} (${k.virtualMiB} MiB virtual, ${k.allocatedMiB} MiB allocated): median ${median(k.ms).toFixed(0)} ms, min ${min(k.ms).toFixed(0)} ms  [runs ${k.ms.map((m) => m.toFixed(0)).join(', ')}]`);
  }
  // The 'VM created' line's step_ms, median per step, one column per stemcell.
  const keys = Object.keys(kinds[0].steps[0] ?? {});
  console.log(`per-step median (step_ms, ms)      ${kinds.map((k) => pad(k.label, 24)).join('')}`);
  for (const key of keys) console.log(`  ${pad(key, 32)} ${kinds.map((k) => pad(median(k.steps.map((s) => s[key] ?? 0)), 24)).join('')}`);
  const stepSum = (k) => median(k.steps.map((s) => Object.values(s).reduce((a, b) => a + b, 0)));
  console.log(`  ${pad('sum of steps', 32)} ${kinds.map((k) => pad(stepSum(k), 24)).join('')}`);
  const root = (k) => median(k.steps.map((s) => s['creating the root disk'] ?? NaN));
  const ratios = (a, b) => `median ${(median(a.ms) / median(b.ms)).toFixed(3)}, min ${(min(a.ms) / min(b.ms)).toFixed(3)}, root-disk step ${(root(a) / root(b)).toFixed(3)}`;
  console.log(`ratio virtual size 4 GiB / 100 MiB:  ${ratios(kinds[1], kinds[0])} (target <= 1.1, ${runs} runs each, interleaved)`);
  console.log(`ratio written data 1 GiB / 100 MiB:  ${ratios(kinds[3], kinds[2])} (target <= 1.1, ${runs} runs each, interleaved)`);
} finally {
  cleanup();
}
