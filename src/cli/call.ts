// `call <method> [args..]`: one CPI call typed by a person. The request goes through
// bin/cpi's own bundle (dist/cpi.mjs) as a child process, exactly as the director runs
// it, so the response is bin/cpi's byte for byte (fast `info` path, crash handling,
// redaction and all); only its presentation differs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CliError, toJson } from './common.js';

/** Each argument is JSON when it parses as JSON, else the string as typed. */
export function parseArg(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

export interface CallOptions {
  method: string;
  args: string[];
  context: Record<string, unknown>;
  apiVersion: number;
}

export function buildRequest(o: CallOptions): Record<string, unknown> {
  return {
    method: o.method,
    arguments: o.args.map(parseArg),
    context: { director_uuid: 'bosh-libvirt-cpi-cli', request_id: `cli-${process.pid}`, ...o.context },
    api_version: o.apiVersion,
  };
}

/** dist/cpi.mjs next to this bundle (dist/cli.mjs). */
export function cpiBundle(): string {
  const path = fileURLToPath(new URL('./cpi.mjs', import.meta.url));
  if (!existsSync(path)) throw new CliError(`${path} is missing: run "npm run build" (the CLI hands calls to bin/cpi's bundle)`);
  return path;
}

export interface CpiResult {
  /** stdout as bin/cpi wrote it */
  raw: string;
  response: { result: unknown; error: { type: string; message: string; ok_to_retry: boolean } | null; log: string };
  stderr: string;
}

export async function runCpiBundle(request: unknown, configPath: string, opts: { logLevel: string; passStderr: boolean }): Promise<CpiResult> {
  const child = spawn(process.execPath, [cpiBundle(), configPath], {
    env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: opts.logLevel },
    stdio: ['pipe', 'pipe', opts.passStderr ? 'inherit' : 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr?.on('data', (d: Buffer) => err.push(d));
  child.stdin!.end(JSON.stringify(request));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const raw = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  try {
    return { raw, response: JSON.parse(raw) as CpiResult['response'], stderr };
  } catch {
    throw new CliError(`bin/cpi (exit ${code}) did not answer with JSON:\n${raw}${stderr ? `\n--- stderr ---\n${stderr.slice(-4000)}` : ''}`);
  }
}

export async function call(o: CallOptions & { configPath: string; raw: boolean; dryRun: boolean; logLevel: string; verbose: boolean }): Promise<number> {
  const request = buildRequest(o);
  if (o.dryRun) {
    process.stdout.write(`${toJson(request)}\n`);
    return 0;
  }
  const res = await runCpiBundle(request, o.configPath, { logLevel: o.logLevel, passStderr: o.verbose });
  process.stdout.write(o.raw ? res.raw : `${toJson(res.response)}\n`);
  if (res.response.error && !o.verbose && res.stderr) {
    process.stderr.write('(run again with --verbose to see the CPI\'s log lines)\n');
  }
  return res.response.error ? 1 : 0;
}
