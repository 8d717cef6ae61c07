// A hostile container (lxc:///, the container test stemcell): root inside its own tree,
// it races, plants and locks things in the directories the CPI works in on the host —
// its root's upper layer, /warden-cpi-dev (<vm>.disks) and /var/vcap/data
// (<vm>.ephemeral). Whatever it does, no host file outside its tree is written, the
// CPI's view of its disks comes from the CPI's own records, only the directory
// attach_disk put there leaves it, errors name what the container changed, and
// delete_vm finishes.
// Commands run inside the container with `virsh lxc-enter-namespace` (tests may use virsh).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBundle, ROOT, runCpi, writeConfig } from '../helpers/cpi.js';
import { cpi, cpiError, defineIsolatedNetwork, removeNetwork } from '../helpers/driver-fixtures.js';
import { buildContainerStemcell, CONTAINER_REPORT_FILE, CONTAINER_SETTINGS_FILE, readContainerReport } from '../helpers/stemcell.js';

const PREFIX = 'lxcx-e2e-';
const POOL = `${PREFIX}pool`;
const POOL_PATH = `/var/tmp/${POOL}`;
const NET = 'lxcx-net';
const REPORT_TIMEOUT_MS = 60_000;
/** attach_disk and detach_disk calls made while the racer runs */
const RACE_CALLS = 60;

const virsh = (uri: string, ...args: string[]): string => {
  try {
    return execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', stdio: 'pipe' });
  } catch {
    return '';
  }
};
const containers = (): string[] =>
  virsh('lxc:///', 'list', '--all', '--name')
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s.startsWith(PREFIX));

/** A host directory the container tries to make the CPI write into: a settings-shaped file. */
let hostDir = '';
let hostFile = '';
const hostContent = JSON.stringify({ agent_id: 'host-file', disks: { system: '', persistent: {} } });

function cleanup(): void {
  for (const name of containers()) {
    virsh('lxc:///', 'destroy', name);
    virsh('lxc:///', 'undefine', name);
  }
  virsh('qemu:///system', 'pool-destroy', POOL);
  virsh('qemu:///system', 'pool-undefine', POOL);
  // flags a failed run may have left (chattr exits non-zero for the links it skips)
  if (existsSync(POOL_PATH)) spawnSync('chattr', ['-R', '-f', '-i', '-a', POOL_PATH], { stdio: 'ignore' });
  rmSync(POOL_PATH, { recursive: true, force: true });
}

/** Runs a shell script as root inside the running container. */
const inContainer = (vm: string, script: string): string =>
  execFileSync('virsh', ['-q', '-c', 'lxc:///', 'lxc-enter-namespace', vm, '--noseclabel', '/bin/sh', '-c', script], { encoding: 'utf8' });

let config = '';
let stemcell = '';
let vm = '';
const upper = (path: string): string => join(POOL_PATH, `${vm}.root/upper`, path);
const volumes = (): string[] => {
  virsh('qemu:///system', 'pool-refresh', POOL);
  return virsh('qemu:///system', 'vol-list', POOL)
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
};

beforeAll(async () => {
  requireBundle();
  cleanup();
  hostDir = mkdtempSync('/var/tmp/lxcx-host-');
  hostFile = join(hostDir, 'warden-cpi-agent-env.json');
  writeFileSync(hostFile, hostContent);
  defineIsolatedNetwork(NET, 'lxcx0', 213);
  const base = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/lxc.json'), 'utf8')) as Record<string, unknown>;
  config = writeConfig({ ...base, name_prefix: PREFIX, storage: { pool: POOL, path: POOL_PATH, create_pool: true }, network: { name: NET } });
  const built = await buildContainerStemcell();
  stemcell = (await cpi(config, 'create_stemcell', [built.rootfs_tgz, { name: built.name, version: built.version }, {}])) as string;
  const net = { type: 'manual', ip: '198.18.213.10', netmask: '255.255.255.0', gateway: '198.18.213.1', default: ['dns', 'gateway'], cloud_properties: {} };
  [vm] = (await cpi(config, 'create_vm', ['agent-x', stemcell, {}, { a: net }, [], {}])) as [string];
  await readContainerReport(upper(CONTAINER_REPORT_FILE), REPORT_TIMEOUT_MS);
}, 600_000);

afterAll(() => {
  cleanup();
  removeNetwork(NET);
  if (hostDir) rmSync(hostDir, { recursive: true, force: true });
});

const hostUntouched = (): void => {
  expect(readdirSync(hostDir)).toEqual(['warden-cpi-agent-env.json']);
  expect(readFileSync(hostFile, 'utf8')).toBe(hostContent);
};

describe('a container racing the settings rewrite', () => {
  it(`swapping /var/vcap/bosh for a link to a host directory during ${RACE_CALLS} attach_disk/detach_disk calls never steers a write there`, async () => {
    const mtime = statSync(hostFile).mtimeMs;
    const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
    const stopFile = join(POOL_PATH, `${vm}.ephemeral`, 'racer-stop');
    const countFile = join(POOL_PATH, `${vm}.ephemeral`, 'racer-count');
    // The racer swaps /var/vcap/bosh (the real directory) and a link to the host
    // directory with renameat2(RENAME_EXCHANGE) in a tight loop: the name is always
    // there, a directory one moment and the link the next (fixtures/racer/exchange.c,
    // built static and run inside the container from its /var/vcap/data).
    // overlayfs refuses to rename a directory of the lower layer (EXDEV): the container
    // first makes /var/vcap/bosh its own (a copy in the upper layer, the original deleted).
    inContainer(vm, 'cd /var/vcap && cp -a bosh bosh.new && rm -rf bosh && mv bosh.new bosh');
    execFileSync('gcc', ['-static', '-O2', '-o', join(POOL_PATH, `${vm}.ephemeral`, 'racer'), join(ROOT, 'fixtures/racer/exchange.c')]);
    const racer = spawn('virsh', ['-q', '-c', 'lxc:///', 'lxc-enter-namespace', vm, '--noseclabel', '/var/vcap/data/racer', '/var/vcap', 'bosh', hostDir, '/var/vcap/data/racer-stop', '/var/vcap/data/racer-count'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let racerErr = '';
    racer.stderr.on('data', (d: Buffer) => (racerErr += d.toString()));
    const exited = new Promise<void>((res) => racer.on('exit', () => res()));
    const outcomes: string[] = [];
    /** the calls after which the host file had been written  */
    const steered: string[] = [];
    let attached = false;
    let last = mtime;
    try {
      for (let i = 0; i < RACE_CALLS; i++) {
        const method = attached ? 'detach_disk' : 'attach_disk';
        const run = await runCpi({ method, arguments: [vm, disk], context: { director_uuid: 'test' }, api_version: 2 }, { config, timeoutMs: 60_000 });
        const now = statSync(hostFile).mtimeMs;
        if (now !== last) steered.push(`${method} #${i}`);
        last = now;
        if (run.response.error) outcomes.push(`${method}: ${run.response.error.type}: ${run.response.error.message}`);
        else {
          outcomes.push(`${method}: ok`);
          attached = !attached;
        }
      }
    } finally {
      writeFileSync(stopFile, '');
      await exited;
    }
    expect(racerErr).toBe('');
    const rounds = Number(readFileSync(countFile, 'utf8'));
    const refused = outcomes.filter((o) => !o.endsWith(': ok'));
    console.log(`racer: ${rounds} exchanges; CPI calls: ${outcomes.length - refused.length} ok, ${refused.length} refused; host file written after ${steered.length} calls`);
    expect(rounds).toBeGreaterThan(0);
    expect(steered).toEqual([]);
    hostUntouched();
    expect(statSync(hostFile).mtimeMs).toBe(mtime);
    expect(outcomes.length - refused.length).toBeGreaterThan(0);
    // every refusal names what the container changed, and changed nothing
    for (const o of refused) {
      expect(o).toMatch(/: Bosh::Clouds::CloudError: (attach|detach)_disk .*: the agent settings file \/var\/vcap\/bosh\/warden-cpi-agent-env.json in the container cannot be rewritten: \/var\/vcap\/bosh is (a symbolic link|missing|deleted \(an overlay whiteout\)) \(changed inside the container\); nothing was changed$/);
    }
    // records, directory and settings agree afterwards
    if (attached) await cpi(config, 'detach_disk', [vm, disk]);
    expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
    expect(lstatSync(join(POOL_PATH, disk)).isDirectory()).toBe(true);
    expect(JSON.parse(readFileSync(upper(CONTAINER_SETTINGS_FILE), 'utf8')).disks.persistent).toEqual({});
    await cpi(config, 'delete_disk', [disk]);
  }, 600_000);
});

describe('things a container plants', () => {
  /** inside the container, as its owner would (a file replaced behind a running overlay's back would confuse it) */
  const restoreSettings = (content: Buffer): void => {
    inContainer(vm, `rm ${CONTAINER_SETTINGS_FILE} && echo ${content.toString('base64')} | base64 -d > ${CONTAINER_SETTINGS_FILE}`);
  };
  it('a FIFO as the settings file: attach_disk and detach_disk refuse at once naming it, and change nothing', async () => {
    const disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
    const saved = readFileSync(upper(CONTAINER_SETTINGS_FILE));
    inContainer(vm, `rm ${CONTAINER_SETTINGS_FILE} && mkfifo ${CONTAINER_SETTINGS_FILE}`);
    expect(statSync(upper(CONTAINER_SETTINGS_FILE)).isFIFO()).toBe(true);
    // the old code opened it and waited for a writer forever; a bounded wait here
    const run = await runCpi({ method: 'attach_disk', arguments: [vm, disk], context: { director_uuid: 'test' }, api_version: 2 }, { config, timeoutMs: 60_000 });
    expect(run.response.error).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining(`${CONTAINER_SETTINGS_FILE} is a FIFO (changed inside the container); nothing was changed`) });
    expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
    expect(lstatSync(join(POOL_PATH, disk)).isDirectory()).toBe(true);
    // put the file back (as the container's owner would) and attach; a FIFO again blocks detach the same way
    restoreSettings(saved);
    await cpi(config, 'attach_disk', [vm, disk]);
    inContainer(vm, `rm ${CONTAINER_SETTINGS_FILE} && mkfifo ${CONTAINER_SETTINGS_FILE}`);
    const detach = await runCpi({ method: 'detach_disk', arguments: [vm, disk], context: { director_uuid: 'test' }, api_version: 2 }, { config, timeoutMs: 60_000 });
    expect(detach.response.error?.message).toContain('is a FIFO');
    expect(await cpi(config, 'get_disks', [vm])).toEqual([disk]);
    restoreSettings(Buffer.from(JSON.stringify({ ...JSON.parse(saved.toString()), disks: { system: '', persistent: { [disk]: `/warden-cpi-dev/${disk}` } } })));
    await cpi(config, 'detach_disk', [vm, disk]);
    expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
    await cpi(config, 'delete_disk', [disk]);
  }, 300_000);

  describe('/warden-cpi-dev', () => {
    const forged = `${PREFIX}disk-00000000-0000-4000-8000-000000000001`;
    const forgedLink = `${PREFIX}disk-00000000-0000-4000-8000-000000000002`;
    let disk = '';

    it('forged disk directories and links there are not disks: get_disks and has_disk answer from the CPI\'s records', async () => {
      inContainer(vm, `mkdir /warden-cpi-dev/${forged} /warden-cpi-dev/junk && touch /warden-cpi-dev/junkfile && ln -s ${hostDir} /warden-cpi-dev/${forgedLink}`);
      expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      expect(await cpi(config, 'has_disk', [forged])).toBe(false);
      expect(await cpi(config, 'has_disk', [forgedLink])).toBe(false);
      expect(await cpiError(config, 'delete_disk', [forged])).toMatchObject({ type: 'Bosh::Clouds::DiskNotFound' });
    });

    it('detach_disk moves only the directory attach_disk put there: not a link the container swapped in', async () => {
      disk = (await cpi(config, 'create_disk', [16, {}, vm])) as string;
      await cpi(config, 'attach_disk', [vm, disk]);
      expect(await cpi(config, 'get_disks', [vm])).toContain(disk); // exactly [disk]: the test above
      inContainer(vm, `echo kept > /warden-cpi-dev/${disk}/data && mv /warden-cpi-dev/${disk} /warden-cpi-dev/renamed && ln -s / /warden-cpi-dev/${disk}`);
      await cpi(config, 'detach_disk', [vm, disk]);
      // the disk is back in the pool, a real directory with its data; the link stays in the container
      expect(lstatSync(join(POOL_PATH, disk)).isDirectory()).toBe(true);
      expect(readFileSync(join(POOL_PATH, disk, 'data'), 'utf8')).toBe('kept\n');
      expect(lstatSync(join(POOL_PATH, `${vm}.disks`, disk)).isSymbolicLink()).toBe(true);
      expect(existsSync(join(POOL_PATH, `${vm}.disks`, 'renamed'))).toBe(false);
      expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      expect(await cpi(config, 'has_disk', [disk])).toBe(true);
    });

    it('attach_disk refuses while the container has planted something at the disk\'s name, changing nothing', async () => {
      const err = await cpiError(config, 'attach_disk', [vm, disk]);
      expect(err).toMatchObject({ type: 'Bosh::Clouds::CloudError', message: expect.stringContaining(`/warden-cpi-dev/${disk} exists inside the container already (a symbolic link, made there)`) });
      expect(await cpi(config, 'get_disks', [vm])).toEqual([]);
      expect(lstatSync(join(POOL_PATH, disk)).isDirectory()).toBe(true);
      inContainer(vm, `rm /warden-cpi-dev/${disk}`);
    });

    it('delete_vm finishes whatever the container did: a disk moved deep inside goes back, planted entries, links and immutable files go', async () => {
      await cpi(config, 'attach_disk', [vm, disk]);
      inContainer(
        vm,
        `mkdir -p /warden-cpi-dev/deep/er && mv /warden-cpi-dev/${disk} /warden-cpi-dev/deep/er/moved && ` +
          `ln -s ${hostDir} /var/vcap/data/hostlink && touch /var/vcap/data/locked /var/vcap/data/appendonly && mkdir /var/vcap/data/lockeddir && touch /var/vcap/data/lockeddir/f`,
      );
      // busybox in the test stemcell has no chattr: the host's sets the same inode flags
      // the container's root could set (a privileged container keeps CAP_LINUX_IMMUTABLE)
      const eph = join(POOL_PATH, `${vm}.ephemeral`);
      execFileSync('chattr', ['+i', join(eph, 'locked'), join(eph, 'lockeddir'), join(POOL_PATH, `${vm}.disks`, 'junkfile')]);
      execFileSync('chattr', ['+a', join(eph, 'appendonly')]);
      // and /var/vcap/data itself (the mount point: the flag lands on <vm>.ephemeral)
      execFileSync('chattr', ['+i', eph]);
      await cpi(config, 'delete_vm', [vm]);
      expect(await cpi(config, 'has_vm', [vm])).toBe(false);
      expect(readdirSync(POOL_PATH).filter((n) => n.startsWith(vm))).toEqual([]);
      expect(volumes().filter((n) => n.startsWith(vm))).toEqual([]);
      // the disk came back from where the container had moved it, with its data
      expect(lstatSync(join(POOL_PATH, disk)).isDirectory()).toBe(true);
      expect(readFileSync(join(POOL_PATH, disk, 'data'), 'utf8')).toBe('kept\n');
      // nothing forged became a disk
      expect(existsSync(join(POOL_PATH, forged))).toBe(false);
      expect(existsSync(join(POOL_PATH, forgedLink))).toBe(false);
      hostUntouched();
      await cpi(config, 'delete_disk', [disk]);
      await cpi(config, 'delete_stemcell', [stemcell]);
      expect(volumes()).toEqual([]);
    }, 120_000);
  });
});
