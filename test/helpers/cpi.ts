// Drives the built bin/cpi (dist/cpi.mjs) as a child process, the way the director does.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { scratchDir } from './scratch.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CPI_BUNDLE = join(ROOT, 'dist/cpi.mjs');

export interface CpiRun {
  stdout: string;
  stderr: string;
  code: number | null;
  /** the parsed response (throws in the test if stdout is not exactly one JSON document) */
  response: { result: unknown; error: { type: string; message: string; ok_to_retry: boolean } | null; log: string };
}

export function requireBundle(): void {
  if (!existsSync(CPI_BUNDLE)) throw new Error(`${CPI_BUNDLE} is missing: run "npm run build" (the test command does)`);
}

/** Runs one CPI call. `input` is written verbatim when it is a string, JSON-encoded otherwise. */
export async function runCpi(input: unknown, opts: { config?: string | null; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CpiRun> {
  requireBundle();
  const args = [CPI_BUNDLE];
  if (opts.config !== null) args.push(opts.config ?? join(ROOT, 'fixtures/config/qemu.json'));
  const child = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.stdin.end(typeof input === 'string' ? input : JSON.stringify(input));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
  const code = await new Promise<number | null>((res) => child.on('close', res));
  clearTimeout(timer);
  const stdout = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  const lines = stdout.split('\n').filter((l) => l !== '');
  if (lines.length !== 1) throw new Error(`expected exactly one line on stdout, got ${lines.length}:\n${stdout}\n--- stderr ---\n${stderr.slice(-4000)}`);
  return { stdout, stderr, code, response: JSON.parse(lines[0]!) };
}

/** Writes a config file (object → JSON) into a fresh temp dir and returns its path. */
export function writeConfig(config: unknown, name = 'cpi.json'): string {
  const dir = scratchDir('t-cpi-config-');
  const path = join(dir, name);
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config));
  return path;
}

export function request(method: string, args: unknown[] = [], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { method, arguments: args, context: { director_uuid: 'test-director', request_id: `t-${method}-${process.pid}` }, api_version: 2, ...extra };
}
