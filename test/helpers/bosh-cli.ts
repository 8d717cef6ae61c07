// The real bosh CLI for tests: where it is, how to run it, and how to build the two
// releases the create-env example deploys (the CPI release and fixtures/keeper-release).
//
// The CLI is not in any package registry these machines reach: CI provides the build in
// ../shared/tools (next to the checkout, README there), or BOSH_CLI_BIN names one. Without
// either the tests that need it are skipped and say why; a CLI that is there but fails
// fails them.
import { spawn } from 'node:child_process';
import { accessSync, constants, cpSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT } from './cpi.js';
import { SHARED_TOOLS_DIR } from './real-tools.js';
import { scratchDir } from './scratch.js';

export type BoshCli = { bin: string; skip?: undefined } | { bin?: undefined; skip: string };

/** The CLI to use, or why there is none. A BOSH_CLI_BIN that is not executable throws. */
export function findBoshCli(): BoshCli {
  const named = process.env.BOSH_CLI_BIN;
  if (named) {
    try {
      accessSync(named, constants.X_OK);
    } catch {
      throw new Error(`BOSH_CLI_BIN=${named} is not an executable file`);
    }
    return { bin: resolve(named) };
  }
  const shared = join(SHARED_TOOLS_DIR, 'bosh');
  if (existsSync(shared)) return { bin: shared };
  return { skip: `no bosh CLI: neither BOSH_CLI_BIN nor ${shared} (the CI provides it there; see its README)` };
}

export interface BoshRun {
  code: number | null;
  /** stdout and stderr interleaved as the CLI wrote them */
  output: string;
}

/**
 * Runs the CLI with HOME set to `home` (it caches compiled packages and installations
 * under ~/.bosh). Throws with the output's tail when it exits non-zero, unless `allowFail`.
 */
export async function bosh(cli: string, home: string, args: string[], opts: { cwd?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<BoshRun> {
  return runLogged(cli, args, { ...opts, env: { ...process.env, HOME: home, ...opts.env } });
}

async function runLogged(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv }): Promise<BoshRun> {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.on('data', (d: Buffer) => chunks.push(d));
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGTERM'); }, opts.timeoutMs ?? 600_000);
  const code = await new Promise<number | null>((res) => child.on('close', res));
  clearTimeout(timer);
  const output = Buffer.concat(chunks).toString('utf8');
  if ((code !== 0 || timedOut) && !opts.allowFail) {
    throw new Error(`${[cmd, ...args].join(' ')} ${timedOut ? 'timed out' : `exited ${code}`}; last output:\n${output.slice(-6000)}`);
  }
  return { code, output };
}

/**
 * The CPI release, built by scripts/prepare-release.sh from dist/ (built beforehand) and
 * the cached Node.js. `offline` runs it in a new network namespace with nothing but a
 * loopback, so nothing outside this machine can be reached.
 */
export async function buildCpiRelease(cli: string, home: string, tarball: string, opts: { offline?: boolean; env?: NodeJS.ProcessEnv; allowFail?: boolean } = {}): Promise<BoshRun> {
  const script = join(ROOT, 'scripts/prepare-release.sh');
  const args = ['--skip-build', '--tarball', tarball];
  const env = { ...process.env, HOME: home, BOSH_CLI_BIN: cli, ...opts.env };
  return opts.offline
    ? runLogged('unshare', ['--net', script, ...args], { env, allowFail: opts.allowFail })
    : runLogged(script, args, { env, allowFail: opts.allowFail });
}

/**
 * fixtures/keeper-release as a dev release tarball, as docs/deploying.md builds it, but from
 * a copy: create-release writes .dev_builds/ and dev_releases/ into the release directory.
 */
export async function buildKeeperRelease(cli: string, home: string, tarball: string): Promise<BoshRun> {
  const dir = join(scratchDir('t-keeper-release-'), 'keeper-release');
  cpSync(join(ROOT, 'fixtures/keeper-release'), dir, { recursive: true });
  return bosh(cli, home, ['create-release', '--dir', dir, '--force', '--tarball', tarball]);
}

export interface LocalRelease {
  name: string;
  version: string;
  jobs: string[];
  packages: string[];
}

/** `bosh inspect-local-release`: what the CLI itself reads from a tarball. */
export async function inspectLocalRelease(cli: string, home: string, tarball: string): Promise<LocalRelease> {
  const { output } = await bosh(cli, home, ['inspect-local-release', tarball, '--json']);
  const tables = (JSON.parse(output) as { Tables: { Header: Record<string, string>; Rows: Record<string, string>[] }[] }).Tables;
  const release = tables[0]!.Rows[0]!;
  const names = (t: { Rows: Record<string, string>[] }) => t.Rows.map((r) => String(r.job ?? r.package ?? '').split('/')[0]!).sort();
  return {
    name: release.name!,
    version: release.version!,
    jobs: names(tables.find((t) => 'job' in t.Header)!),
    packages: names(tables.find((t) => 'package' in t.Header)!),
  };
}
