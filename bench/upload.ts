// Child process of bench/upload.mjs: uploads one file into one volume through the
// client and reports elapsed time and peak RSS as JSON on stdout.
import { createReadStream, statSync } from 'node:fs';
import { connect } from '../src/libvirt/index.js';

const [uri, poolName, volName, file] = process.argv.slice(2);
if (!uri || !poolName || !volName || !file) throw new Error('usage: upload <uri> <pool> <vol> <file>');
const c = await connect(uri);
const pool = await c.pools.lookupByName(poolName);
const vol = await c.volumes.lookupByName(pool, volName);
const start = process.hrtime.bigint();
await c.volumes.upload(vol, createReadStream(file, { highWaterMark: 256 * 1024 }));
const ms = Number(process.hrtime.bigint() - start) / 1e6;
await c.close();
const ru = process.resourceUsage();
process.stdout.write(`${JSON.stringify({ ms, bytes: statSync(file).size, maxRssKiB: ru.maxRSS, cpuMs: (ru.userCPUTime + ru.systemCPUTime) / 1000 })}\n`);
