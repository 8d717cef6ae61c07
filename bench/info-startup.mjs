#!/usr/bin/env node
// Wall time of `info` through the bundled CPI (what the director pays before almost
// every call) next to the floor, `node -e 0`, measured in the same run. Prints medians
// and the ratio; the target is <= 1.5. Usage: node bench/info-startup.mjs [runs]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 30);
const request = JSON.stringify({ method: 'info', arguments: [], context: { director_uuid: 'bench' } });

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(cmd, args, input) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { input, env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout.toString() };
}

const cpi = [join(root, 'dist/cpi.mjs'), join(root, 'fixtures/config/qemu.json')];
const check = JSON.parse(time(process.execPath, cpi, request).stdout);
if (check.error || check.result?.api_version !== 3) throw new Error(`info failed: ${JSON.stringify(check)}`);

const base = [];
const info = [];
for (let i = 0; i < runs; i++) {
  // Interleave so both see the same machine load.
  base.push(time(process.execPath, ['-e', '0']).ms);
  info.push(time(process.execPath, cpi, request).ms);
}
const b = median(base);
const c = median(info);
console.log(`node -e 0        median ${b.toFixed(1)} ms`);
console.log(`bin/cpi info     median ${c.toFixed(1)} ms`);
console.log(`ratio            ${(c / b).toFixed(2)} (target <= 1.5, ${runs} runs each)`);
