#!/usr/bin/env node
// `info` start-up: the director calls `info` before almost every CPI call, each time in a
// new process, so it should cost little more than starting node at all. Times `info`
// through bin/cpi exactly as the director runs it (its wrapper included; `npm run build`
// first) against `node -e 0`, and, for information, the bundle alone
// (`node dist/cpi.mjs`). The contenders run in alternating rounds (order rotated every
// round) so all see the same machine load; prints each median, the ratio of medians and
// the median of the per-round ratios (issue 14, part 6: bin/cpi / node -e 0 <= 1.2).
// Usage: node bench/info-startup.mjs [rounds=21]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Number(process.argv[2] ?? 21);
const request = JSON.stringify({ method: 'info', arguments: [], context: { director_uuid: 'bench' } });
const config = join(root, 'fixtures/config/qemu.json');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function time(cmd, args, input) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { input, env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout.toString() };
}

const contenders = {
  'node -e 0': () => time(process.execPath, ['-e', '0']),
  'bin/cpi info': () => time(join(root, 'bin/cpi'), [config], request),
  'node dist/cpi.mjs info': () => time(process.execPath, [join(root, 'dist/cpi.mjs'), config], request),
};
for (const [name, run] of Object.entries(contenders)) {
  if (name === 'node -e 0') continue;
  const res = JSON.parse(run().stdout);
  if (res.error || res.result?.api_version !== 3) throw new Error(`${name} failed: ${JSON.stringify(res)}`);
}

const names = Object.keys(contenders);
const ms = Object.fromEntries(names.map((n) => [n, []]));
for (let i = 0; i < rounds; i++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(i + k) % names.length];
    ms[name].push(contenders[name]().ms);
  }
}
const base = ms['node -e 0'];
console.log(`info start-up, ${rounds} rounds, node ${process.version}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const name of names) {
  const line = `  ${name.padEnd(24)} median ${median(ms[name]).toFixed(1).padStart(6)} ms`;
  if (name === 'node -e 0') { console.log(line); continue; }
  const perRound = ms[name].map((x, i) => x / base[i]);
  console.log(`${line}  ratio to node -e 0: of medians ${(median(ms[name]) / median(base)).toFixed(2)}, median of rounds ${median(perRound).toFixed(2)}`);
}
console.log('  target: bin/cpi info / node -e 0 <= 1.2');
