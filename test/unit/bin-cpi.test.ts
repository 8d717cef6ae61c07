// Black-box tests of bin/cpi's wire protocol: whatever the input, exactly one
// response with all three keys on stdout, the right error type, exit code 0.
import { describe, expect, it } from 'vitest';
import { runCpi, request, writeConfig, ROOT, CPI_BUNDLE } from '../helpers/cpi.js';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const qemuConfig = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/qemu.json'), 'utf8')) as Record<string, unknown>;

function expectEnvelope(run: Awaited<ReturnType<typeof runCpi>>) {
  expect(run.code).toBe(0);
  expect(Object.keys(run.response).sort()).toEqual(['error', 'log', 'result']);
  expect(typeof run.response.log).toBe('string');
}

async function expectError(input: unknown, type: string, message: RegExp, opts: Parameters<typeof runCpi>[1] = {}) {
  const run = await runCpi(input, opts);
  expectEnvelope(run);
  expect(run.response.result).toBeNull();
  expect(run.response.error?.type).toBe(type);
  expect(run.response.error?.message).toMatch(message);
  expect(typeof run.response.error?.ok_to_retry).toBe('boolean');
  return run;
}

describe('info', () => {
  it('answers without api_version (the director\'s first call)', async () => {
    const run = await runCpi({ method: 'info', arguments: [], context: { director_uuid: 'x' } });
    expectEnvelope(run);
    expect(run.response.error).toBeNull();
    expect(run.response.result).toEqual({ api_version: 3, stemcell_formats: ['openstack-qcow2', 'openstack-raw'] });
  });

  it.each([1, 2, 3])('answers with api_version %i', async (v) => {
    const run = await runCpi({ method: 'info', arguments: [], context: { director_uuid: 'x' }, api_version: v });
    expect(run.response.error).toBeNull();
    expect((run.response.result as { api_version: number }).api_version).toBe(3);
  });

  it('answers info for the ready VirtualBox config with the stemcell formats the vbox backend imports', async () => {
    // The config that reaches the simulated VirtualBox of scripts/vbox-host.sh as it is.
    const run = await runCpi(request('info'), { config: join(ROOT, 'fixtures/config/vbox.json') });
    expect(run.response.error).toBeNull();
    expect(run.response.result).toEqual({ api_version: 3, stemcell_formats: ['openstack-qcow2', 'openstack-raw', 'general-ovf', 'vsphere-ovf'] });
  });

  it('refuses a vbox URI that reaches libvirt but not the host\'s files (tcp) before connecting: NotSupported naming the URI and why', async () => {
    const vbox = JSON.parse(readFileSync(join(ROOT, 'fixtures/config/vbox.json'), 'utf8')) as Record<string, unknown>;
    const remote = writeConfig({ ...vbox, libvirt: { uri: 'vbox+tcp://vbox-host.invalid/session' } });
    const run = await runCpi(request('has_vm', ['t-vm-00000000-0000-4000-8000-000000000000']), { config: remote });
    expect(run.response.result).toBeNull();
    expect(run.response.error).toMatchObject({
      type: 'Bosh::Clouds::NotSupported',
      message: expect.stringMatching(/libvirt\.uri "vbox\+tcp:\/\/vbox-host\.invalid\/session" is not local and not ssh: the vbox backend writes .* into storage\.path on the VirtualBox host .*a tcp connection reaches only libvirt/),
    });
  });

  it('several hosts are qemu hosts: a config listing an lxc host answers NotSupported naming it, from info on', async () => {
    const mixed = writeConfig({ ...qemuConfig, hosts: [{ name: 'kvm-1' }, { name: 'box', libvirt: { uri: 'lxc:///' } }] });
    const run = await runCpi(request('info'), { config: mixed });
    expect(run.response.result).toBeNull();
    expect(run.response.error).toMatchObject({ type: 'Bosh::Clouds::NotSupported', message: expect.stringMatching(/host "box" has libvirt\.uri "lxc:\/\/\/" \(the lxc backend\).*qemu\/kvm hosts only/) });
  });

  it('gives the same answer through the full path (cpi-config properties in the context)', async () => {
    const run = await runCpi(request('info', [], { context: { director_uuid: 'x', domain_type: 'qemu' } }));
    expect(run.response.error).toBeNull();
    expect(run.response.result).toEqual({ api_version: 3, stemcell_formats: ['openstack-qcow2', 'openstack-raw'] });
    expect(run.response.log).toMatch(/info: api_version 3/);
  });

  it('reads the config from BOSH_LIBVIRT_CPI_CONFIG when no argument is given', async () => {
    const run = await runCpi(request('info'), { config: null, env: { BOSH_LIBVIRT_CPI_CONFIG: join(ROOT, 'fixtures/config/qemu.json') } });
    expect(run.response.error).toBeNull();
  });

  it('is answered by the entry bundle without pino (most of what info cost beyond node itself)', () => {
    expect(readFileSync(CPI_BUNDLE, 'utf8').includes('pino'), `${CPI_BUNDLE} bundles pino`).toBe(false);
  });

  it('still logs a pino-shaped line, at the level BOSH_LIBVIRT_CPI_LOG_LEVEL sets', async () => {
    const run = await runCpi(request('info'), { env: { BOSH_LIBVIRT_CPI_LOG_LEVEL: 'debug' } });
    const lines = run.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([{ level: 'debug', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/), pid: expect.any(Number), method: 'info', result: run.response.result, msg: 'response (fast path)' }]);
    expect((await runCpi(request('info'), { env: { BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } })).stderr).toBe('');
  });

  it('answers through the bin/cpi wrapper from any directory, also run as `sh cpi` inside bin/', () => {
    const input = JSON.stringify(request('info'));
    const config = join(ROOT, 'fixtures/config/qemu.json');
    for (const [cmd, args, cwd] of [[join(ROOT, 'bin/cpi'), [config], tmpdir()], ['sh', ['cpi', config], join(ROOT, 'bin')]] as const) {
      const r = spawnSync(cmd, [...args], { cwd, input, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout), r.stderr).toMatchObject({ error: null, result: { api_version: 3 } });
    }
  });
});

describe('malformed requests', () => {
  it('empty stdin is a CpiError', () => expectError('', 'Bosh::Clouds::CpiError', /Empty request/));
  it('stdin that is not JSON is a CpiError', () => expectError('{"method": "info", ', 'Bosh::Clouds::CpiError', /not valid JSON/));
  it('a JSON array is a CpiError', () => expectError('[1,2]', 'Bosh::Clouds::CpiError', /must be a JSON object, got an array/));
  it('a JSON string is a CpiError', () => expectError('"info"', 'Bosh::Clouds::CpiError', /must be a JSON object, got "info"/));
  it('a missing method is a CpiError', () => expectError({ arguments: [] }, 'Bosh::Clouds::CpiError', /field "method" is missing/));
  it('arguments that are not an array are a CpiError', () =>
    expectError({ method: 'has_vm', arguments: { vm_cid: 'x' } }, 'Bosh::Clouds::CpiError', /field "arguments" is \{"vm_cid":"x"\}, expected an array/));
  it('an unsupported api_version is a CpiError', () =>
    expectError({ method: 'info', arguments: [], api_version: 9 }, 'Bosh::Clouds::CpiError', /api_version.*expected 1, 2 or 3/));
  it('an unknown method is NotImplemented', () => expectError(request('make_coffee'), 'Bosh::Clouds::NotImplemented', /Unknown method "make_coffee"/));
});

describe('argument validation', () => {
  it('names the argument, the value and the expectation', () =>
    expectError(request('create_disk', [-5, {}, null]), 'Bosh::Clouds::CloudError', /argument 1 "size" of create_disk: got -5, expected a positive whole number of MiB/));
  it('rejects missing arguments', () => expectError(request('delete_vm', []), 'Bosh::Clouds::CloudError', /delete_vm: got 0 arguments, expected 1 \(vm_cid\)/));
  it('rejects extra arguments', () => expectError(request('has_vm', ['a', 'b']), 'Bosh::Clouds::CloudError', /has_vm: got 2 arguments, expected 1/));
  it('rejects wrongly typed nested values with their path', () =>
    expectError(
      request('calculate_vm_cloud_properties', [{ cpu: 2, ram: 'lots', ephemeral_disk_size: 1 }]),
      'Bosh::Clouds::CloudError',
      /"desired_instance_size.ram" of calculate_vm_cloud_properties: got "lots"/,
    ));
  it('accepts create_stemcell with and without the v3 env argument count', async () => {
    await expectError(request('create_stemcell', ['/x']), 'Bosh::Clouds::CloudError', /expected 2 to 3/);
  });
  it('managed networks are NotImplemented with a reason', () =>
    expectError(request('create_network', [{}, {}]), 'Bosh::Clouds::NotImplemented', /define the libvirt network on the host/));
});

describe('configuration errors', () => {
  it('a missing file names the file', () =>
    expectError(request('has_vm', ['vm-x']), 'Bosh::Clouds::CloudError', /Cannot read configuration file \/nonexistent\/cpi\.json: ENOENT/, { config: '/nonexistent/cpi.json' }));
  it('invalid JSON names the file', async () => {
    const path = writeConfig('{ "libvirt": ');
    await expectError(request('info'), 'Bosh::Clouds::CloudError', new RegExp(`${path} is not valid JSON`), { config: path });
  });
  it('a wrong value names the key, the problem and the value', async () => {
    const path = writeConfig({ ...qemuConfig, storage: { pool: 7 } });
    await expectError(request('has_vm', ['vm-x']), 'Bosh::Clouds::CloudError', /key storage\.pool: expected string, received number, got 7/, { config: path });
  });
  it('an unknown key is named', async () => {
    const path = writeConfig({ ...qemuConfig, domian_type: 'qemu' });
    await expectError(request('info'), 'Bosh::Clouds::CloudError', /unknown key domian_type/, { config: path });
  });
  it('a missing required key is named', async () => {
    const { agent: _a, ...rest } = qemuConfig;
    await expectError(request('info'), 'Bosh::Clouds::CloudError', /key agent: .*got nothing/, { config: writeConfig(rest) });
  });
  it('no config at all says how to give one', () =>
    expectError(request('info'), 'Bosh::Clouds::CloudError', /BOSH_LIBVIRT_CPI_CONFIG/, { config: null, env: { BOSH_LIBVIRT_CPI_CONFIG: '' } }));
  it('context properties from a cpi-config override the file and are validated too', () =>
    expectError(request('has_vm', ['vm-x'], { context: { director_uuid: 'x', domain_type: 'xen' } }), 'Bosh::Clouds::CloudError', /with cpi-config properties.*key domain_type/));
  it('an unknown libvirt driver in the URI is named', async () => {
    const path = writeConfig({ ...qemuConfig, libvirt: { uri: 'xen:///system' } });
    await expectError(request('info'), 'Bosh::Clouds::CloudError', /Invalid libvirt\.uri: got "xen:\/\/\/system"/, { config: path });
  });
});

describe('crashes still answer', () => {
  it('an error thrown inside a handler', () =>
    expectError(request('info'), 'Bosh::Clouds::CpiError', /injected fault at handler:info/, { env: { BOSH_LIBVIRT_CPI_FAULTS: 'handler:info' } }));
  it('an uncaught exception', () =>
    expectError(request('info'), 'Bosh::Clouds::CpiError', /injected uncaught exception/, { env: { BOSH_LIBVIRT_CPI_FAULTS: 'crash:info' } }));
  it('an unhandled rejection', () =>
    expectError(request('info'), 'Bosh::Clouds::CpiError', /injected unhandled rejection/, { env: { BOSH_LIBVIRT_CPI_FAULTS: 'reject:info' } }));
});

describe('logging', () => {
  it('writes pino JSON lines with request_id and method to stderr only', async () => {
    const run = await runCpi(request('has_vm', [{}]));
    const lines = run.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(0);
    const tagged = lines.filter((l) => l.request_id === `t-has_vm-${process.pid}` && l.method === 'has_vm');
    expect(tagged.length).toBeGreaterThan(0);
    expect(lines.some((l) => l.msg === 'request failed')).toBe(true);
  });

  it('redacts every secret in requests, config and errors', async () => {
    const secrets = {
      mbusPassword: 'MBUS-PASSWORD-1a2b',
      envPassword: 'ENV-BOSH-PASSWORD-3c4d',
      privateKey: '-----BEGIN RSA PRIVATE KEY-----\nPRIVATE-KEY-BODY-5e6f\n-----END RSA PRIVATE KEY-----',
      certificate: '-----BEGIN CERTIFICATE-----\nCERT-BODY-7a8b\n-----END CERTIFICATE-----',
      blobstorePassword: 'BLOBSTORE-PASSWORD-9c0d',
      s3Secret: 'S3-SECRET-ACCESS-KEY-1e2f',
      natsUrlPassword: 'NATS-URL-PASSWORD-3a4b',
    };
    const config = writeConfig({
      ...qemuConfig,
      agent: { mbus: `https://mbus:${secrets.mbusPassword}@0.0.0.0:6868`, ntp: [], blobstore: { provider: 'dav', options: { user: 'agent', password: secrets.blobstorePassword } } },
    });
    const env = {
      bosh: {
        password: secrets.envPassword,
        mbus: { cert: { ca: secrets.certificate, certificate: secrets.certificate, private_key: secrets.privateKey }, urls: [`nats://nats:${secrets.natsUrlPassword}@10.0.0.6:4222`] },
        blobstores: [{ provider: 's3', options: { access_key_id: 'AKIA', secret_access_key: secrets.s3Secret } }],
      },
    };
    const run = await runCpi(request('create_vm', ['agent-1', 'sc-x', {}, {}, [], env]), { config });
    for (const [name, secret] of Object.entries(secrets)) {
      const needle = secret.includes('BEGIN') ? secret.split('\n')[1]! : secret;
      expect(run.stderr, `${name} leaked to stderr`).not.toContain(needle);
      expect(run.stdout, `${name} leaked to stdout`).not.toContain(needle);
    }
    // The request was logged (so redaction, not silence, kept the secrets out).
    expect(run.stderr).toContain('agent-1');
    expect(run.stderr).toContain('<redacted>');
  });
});
