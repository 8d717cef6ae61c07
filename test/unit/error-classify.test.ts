// typedError gives what reaches the dispatcher untyped the Bosh::Clouds type the director
// acts on, naming the object: real errno errors from real file system and socket calls
// (ENOTDIR, EISDIR, ENOENT, ENOTEMPTY, EPIPE), the libvirt client's own connection
// errors. Before, all of these were CpiError "Unexpected error: …".
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile, rmdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { typedError } from '../../src/bosh-protocol/classify.js';
import { CallTimeoutError, ConnectionClosedError, errorFromRemote } from '../../src/libvirt/errors.js';
import { CloudError, CpiError, VMNotFound } from '../../src/errors.js';
import { scratchDir } from '../helpers/scratch.js';

const failureOf = async (p: Promise<unknown>): Promise<unknown> => p.then(() => { throw new Error('expected a failure'); }, (e: unknown) => e);

describe('file system errors', () => {
  const dir = scratchDir('t-errc-');
  writeFileSync(join(dir, 'file'), 'x');
  mkdirSync(join(dir, 'full'));
  writeFileSync(join(dir, 'full', 'inside'), 'x');

  it.each([
    ['ENOTDIR', () => readFile(join(dir, 'file', 'sub')), join(dir, 'file', 'sub'), 'a part of the path that should be a directory is not one'],
    ['EISDIR', () => writeFile(dir, 'x'), dir, 'it is a directory, not a file'],
    ['ENOENT', () => readFile(join(dir, 'missing')), join(dir, 'missing'), 'it does not exist'],
    ['ENOTEMPTY', () => rmdir(join(dir, 'full')), join(dir, 'full'), 'the directory is not empty'],
  ])('%s is a CloudError naming the path and the operation', async (code, op, path, meaning) => {
    const err = await failureOf(op());
    expect((err as NodeJS.ErrnoException).code).toBe(code);
    const typed = typedError(err, 'create_disk');
    expect(typed).toBeInstanceOf(CloudError);
    expect(typed.boshType).toBe('Bosh::Clouds::CloudError');
    expect(typed.message).toMatch(new RegExp(`^Cannot [a-z]+ ${JSON.stringify(path).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} during create_disk: ${meaning} \\(${code}\\)$`));
  });
});

describe('connection errors', () => {
  it('EPIPE from a socket whose peer hung up is a retryable CloudError', async () => {
    const server = net.createServer((s) => s.destroy());
    const path = join(scratchDir('t-errc-sock-'), 's.sock');
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const sock = net.createConnection(path);
      const err = await new Promise<Error>((resolve) => {
        sock.on('error', resolve);
        const write = () => sock.write(Buffer.alloc(64 * 1024), () => setImmediate(write));
        sock.on('connect', write);
      });
      expect((err as NodeJS.ErrnoException).code).toMatch(/^(EPIPE|ECONNRESET)$/);
      const typed = typedError(err, 'create_stemcell');
      expect(typed.boshType).toBe('Bosh::Clouds::CloudError');
      expect(typed.okToRetry).toBe(true);
      expect(typed.message).toMatch(/^A connection failed during create_stemcell: .*(EPIPE|ECONNRESET).*the other end went away/);
    } finally {
      server.close();
    }
  });

  it('the libvirt client\'s lost connection and timeout are retryable CloudErrors', () => {
    const lost = typedError(new ConnectionClosedError('the daemon closed the connection (unix:/run/libvirt/libvirt-sock): read ECONNRESET'), 'delete_disk');
    expect(lost).toBeInstanceOf(CloudError);
    expect(lost.okToRetry).toBe(true);
    expect(lost.message).toBe('Lost the connection to libvirt during delete_disk: the daemon closed the connection (unix:/run/libvirt/libvirt-sock): read ECONNRESET. The call did not finish; call it again once libvirt answers');
    const slow = typedError(new CallTimeoutError('STORAGE_VOL_DELETE got no reply within 60000 ms'), 'delete_disk');
    expect(slow).toBeInstanceOf(CloudError);
    expect(slow.message).toMatch(/^libvirt did not answer in time during delete_disk: STORAGE_VOL_DELETE/);
  });

  it('an error libvirt reported is a CloudError carrying its message', () => {
    const typed = typedError(errorFromRemote({ code: 1, domain: 18, message: 'internal error: pool is busy', level: 2 }), 'create_disk');
    expect(typed).toBeInstanceOf(CloudError);
    expect(typed.message).toBe('libvirt refused an operation during create_disk: internal error: pool is busy');
  });
});

describe('what stays as it is', () => {
  it('typed errors pass unchanged; a bug stays "Unexpected error"', () => {
    const vm = new VMNotFound('VM x not found');
    expect(typedError(vm, 'delete_vm')).toBe(vm);
    const bug = typedError(new TypeError("Cannot read properties of undefined (reading 'x')"), 'create_vm');
    expect(bug.boshType).toBe('Bosh::Clouds::CpiError');
    expect(bug.message).toBe("Unexpected error during create_vm: Cannot read properties of undefined (reading 'x')");
    expect(typedError(new RangeError('Maximum call stack size exceeded'), 'create_vm')).toBeInstanceOf(CpiError);
  });
});
