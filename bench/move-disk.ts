// Child process of bench/move-disk.mjs: moves one volume from one host to another with
// the CPI's stream client (src/hosts/move.ts) and reports time and bytes as JSON.
import { connect } from '../src/libvirt/index.js';
import { moveVolume } from '../src/hosts/move.js';

const [fromUri, fromPool, toUri, toPool, vol] = process.argv.slice(2);
if (!fromUri || !fromPool || !toUri || !toPool || !vol) throw new Error('usage: move-disk <from-uri> <from-pool> <to-uri> <to-pool> <vol>');
const a = await connect(fromUri);
const b = await connect(toUri);
const from = { host: 'from', conn: a, pool: await a.pools.lookupByName(fromPool) };
const to = { host: 'to', conn: b, pool: await b.pools.lookupByName(toPool) };
const start = process.hrtime.bigint();
const r = await moveVolume(vol, from, to);
const ms = Number(process.hrtime.bigint() - start) / 1e6;
await a.close();
await b.close();
const ru = process.resourceUsage();
process.stdout.write(`${JSON.stringify({ ms, dataBytes: r.dataBytes, lengthBytes: r.lengthBytes, maxRssKiB: ru.maxRSS, cpuMs: (ru.userCPUTime + ru.systemCPUTime) / 1000 })}\n`);
