// bin/cpi: read one JSON request from stdin, write one JSON response to stdout, exit 0.
// Whatever happens (a crash, an unhandled rejection, a broken config), the caller gets a
// response with all three keys: the director treats anything else as InvalidResponse.
//
// Only light modules are imported statically; the dispatcher (zod schemas, handlers,
// the libvirt client) and pino live in dist/cpi-core.mjs, loaded on demand, so `info`
// stays cheap (bench/info-startup.mjs).
import { readSync, writeSync } from 'node:fs';
import { createLineLogger, type LineLogger } from './log/line.js';
import { redact } from './log/redact.js';
import { tryFastInfo } from './bosh-protocol/fast-info.js';
import { failure, serialize, type CpiResponse } from './bosh-protocol/response.js';
import { CpiError } from './errors.js';

let responded = false;

function respond(res: CpiResponse): void {
  if (responded) return;
  responded = true;
  // Written straight to fd 1: creating process.stdout costs `info` a noticeable share of
  // its start-up. A non-blocking stdout that is full (EAGAIN) takes the rest as a stream.
  const data = Buffer.from(`${serialize(res)}\n`);
  let off = 0;
  try {
    while (off < data.length) off += writeSync(1, data, off);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    process.stdout.write(data.subarray(off), () => process.exit(0));
    return;
  }
  process.exit(0);
}

function crash(kind: string, err: unknown): void {
  try {
    logger.fatal({ err: redact(err) }, kind);
  } catch {
    /* logging must not prevent the response */
  }
  respond(failure(err, `${kind}: the CPI failed unexpectedly`));
}

// pino comes with the core; until then the entry writes pino-shaped lines itself.
let logger: LineLogger = createLineLogger();
process.on('uncaughtException', (err) => crash('uncaught exception', err));
process.on('unhandledRejection', (err) => crash('unhandled rejection', err));

/**
 * The largest BOSH request, create_vm with many networks and a big env, is a few MB:
 * 16 MiB leaves room for that. Beyond it the CPI stops reading and refuses the request,
 * rather than holding whatever arrives in memory (300 MB once took 10 s and ~1 GB).
 */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

/**
 * Reads fd 0 with blocking reads (the director hands the CPI a pipe), which spares
 * creating process.stdin; a non-blocking stdin (EAGAIN) is read as a stream instead.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(0, buf, 0, buf.length, null);
      if (n === 0) return Buffer.concat(chunks).toString('utf8');
      size += n;
      if (size > MAX_REQUEST_BYTES) throw tooLarge();
      chunks.push(buf.subarray(0, n));
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
  }
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function tooLarge(): CpiError {
  return new CpiError(`Request too large: more than ${MAX_REQUEST_BYTES} bytes (${MAX_REQUEST_BYTES / 1024 / 1024} MiB) on stdin, expected one JSON request of at most that size; the rest was not read`);
}

try {
  const raw = await readStdin();
  const argv = process.argv.slice(2);
  const fast = process.env.BOSH_LIBVIRT_CPI_FAULTS ? undefined : tryFastInfo(raw, argv, process.env);
  if (fast) {
    logger.debug({ method: 'info', result: fast.result }, 'response (fast path)');
    respond(fast);
  } else {
    // dist/cpi-core.mjs sits next to this file (src/core.ts); the path is computed so the
    // entry bundle does not pull it in.
    const core = new URL('./cpi-core.mjs', import.meta.url).href;
    const { handleRequest, createLogger } = (await import(core)) as typeof import('./core.js');
    const full = createLogger();
    logger = full;
    const res = await handleRequest(raw, { argv, env: process.env, logger: full });
    // Give injected/late crashes a tick to land before answering, so tests see them.
    setImmediate(() => respond(res));
  }
} catch (err) {
  if (err instanceof CpiError) {
    logger.error({ err: err.message }, 'request refused');
    respond(failure(err, err.message));
  } else {
    crash('dispatch failure', err);
  }
}
