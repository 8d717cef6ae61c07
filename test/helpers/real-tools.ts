// The real BOSH tools (the `bosh` CLI, bosh-agent builds, monit 5.2.5) and the stemcell
// built around a real agent (fixtures/real-stemcell/build.sh), for tests that run them.
//
// Interface (stable; the Level 1 tier and `bosh create-env` tests use it):
//
//   resolveRealTools(): RealToolsResolution
//     { ok: true, tools } or { ok: false, reason } when a tool is absent; a test tier
//     prints the reason and skips. Where the tools are looked for:
//       BOSH_CLI_BIN     the bosh CLI
//       BOSH_AGENT_BIN   one agent binary, or several separated by ':'
//       MONIT_BIN        monit 5.2.5 (prefix /var/vcap/bosh)
//     each variable that is unset falls back to <checkout>/../shared/tools/ (`bosh`,
//     `bosh-agent-*`, `monit-5.2.5`): CI clones the repo into a folder with shared/
//     beside it. A variable that is set but names no file is an error (thrown), not a
//     skip: the tools are meant to be there.
//   buildRealStemcell(agentBin, monitBin): Promise<RealStemcell>
//     runs build.sh (cached under .cache/real-stemcell; the first build of the Debian
//     base takes minutes, each agent's stemcells about a minute) and returns the paths
//     of the openstack-qcow2 and warden-tar tarballs and of their info.json.
//   unpackStemcellImage(tarball, dir): the tarball's `image` and stemcell.MF unpacked.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './cpi.js';

const run = promisify(execFile);

export const REAL_STEMCELL_BUILD_SCRIPT = join(ROOT, 'fixtures/real-stemcell/build.sh');
/** `../shared/tools` beside the checkout (where CI puts the tools). */
export const SHARED_TOOLS_DIR = resolve(ROOT, '..', 'shared', 'tools');

export interface RealAgent {
  /** the file's name without `bosh-agent-` (e.g. `2025-08`), or the whole name */
  label: string;
  path: string;
}

export interface RealTools {
  cli: string;
  agents: RealAgent[];
  monit: string;
}

export type RealToolsResolution = { ok: true; tools: RealTools } | { ok: false; reason: string };

function fromEnv(name: string): string[] | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const paths = v.split(':').filter((p) => p !== '');
  for (const p of paths) if (!existsSync(p)) throw new Error(`${name}=${v}: ${p} does not exist (unset ${name} to use ${SHARED_TOOLS_DIR})`);
  return paths;
}

const agentLabel = (path: string): string => basename(path).replace(/^bosh-agent-/, '');

/** Finds the tools (environment first, then ../shared/tools); says which is missing. */
export function resolveRealTools(): RealToolsResolution {
  const shared = (file: string): string | undefined => {
    const p = join(SHARED_TOOLS_DIR, file);
    return existsSync(p) ? p : undefined;
  };
  const cli = fromEnv('BOSH_CLI_BIN')?.[0] ?? shared('bosh');
  const monit = fromEnv('MONIT_BIN')?.[0] ?? shared('monit-5.2.5');
  let agentPaths = fromEnv('BOSH_AGENT_BIN');
  if (!agentPaths && existsSync(SHARED_TOOLS_DIR)) {
    agentPaths = readdirSync(SHARED_TOOLS_DIR).filter((f) => f.startsWith('bosh-agent-')).sort().map((f) => join(SHARED_TOOLS_DIR, f));
  }
  const missing: string[] = [];
  if (!cli) missing.push('the bosh CLI (BOSH_CLI_BIN)');
  if (!agentPaths?.length) missing.push('a bosh-agent binary (BOSH_AGENT_BIN)');
  if (!monit) missing.push('monit 5.2.5 (MONIT_BIN)');
  if (missing.length) return { ok: false, reason: `missing ${missing.join(', ')}: set in the environment or put in ${SHARED_TOOLS_DIR}` };
  return { ok: true, tools: { cli: cli!, monit: monit!, agents: agentPaths!.map((path) => ({ label: agentLabel(path), path })) } };
}

export interface RealStemcellInfo {
  name: string;
  version: string;
  hash: string;
  operating_system: string;
  agent: { path: string; sha256: string };
  monit: { path: string; sha256: string };
  openstack_qcow2: string;
  warden_tar: string;
  kernel_release: string;
  disk_mib: number;
  mirror: string;
  packages: Record<string, string>;
}

export interface RealStemcell {
  /** BOSH stemcell tarball (stemcell.MF + image) for qemu */
  openstackQcow2: string;
  /** BOSH stemcell tarball for lxc */
  wardenTar: string;
  info: RealStemcellInfo;
}

const building = new Map<string, Promise<RealStemcell>>();

/** Builds (cached) the stemcells around one agent binary; one build per agent and process. */
export function buildRealStemcell(agentBin: string, monitBin: string): Promise<RealStemcell> {
  const key = `${agentBin}\0${monitBin}`;
  let pending = building.get(key);
  if (!pending) {
    pending = run(REAL_STEMCELL_BUILD_SCRIPT, [agentBin, monitBin], { maxBuffer: 64 * 1024 * 1024, timeout: 1_800_000 })
      .then(({ stdout }) => {
        const [openstackQcow2, wardenTar] = stdout.trim().split('\n').slice(-2);
        if (!openstackQcow2 || !wardenTar) throw new Error(`${REAL_STEMCELL_BUILD_SCRIPT} printed no tarball paths`);
        const info = JSON.parse(readFileSync(join(openstackQcow2, '..', 'info.json'), 'utf8')) as RealStemcellInfo;
        return { openstackQcow2, wardenTar, info };
      })
      .catch((err: unknown) => {
        building.delete(key);
        const e = err as { stderr?: string; message?: string };
        throw new Error(`building the real-agent stemcell around ${agentBin} failed: ${e.message ?? err}\n${(e.stderr ?? '').slice(-6000)}`);
      });
    building.set(key, pending);
  }
  return pending;
}

/** Unpacks a stemcell tarball's `image` and `stemcell.MF` into dir. */
export function unpackStemcellImage(tarball: string, dir: string): { image: string; manifest: string } {
  execFileSync('tar', ['-xzf', tarball, '-C', dir, 'image', 'stemcell.MF']);
  return { image: join(dir, 'image'), manifest: readFileSync(join(dir, 'stemcell.MF'), 'utf8') };
}
