// What reaches the dispatcher without a BOSH type gets one here, by what it is, before
// `failure` writes it out: a lost or silent libvirt connection, an error libvirt
// reported, a file system error on a path the request or the config named. Each becomes
// the type the director acts on and names the object; only what is none of these (a bug)
// stays "Unexpected error". Handlers that know more (create_vm's undo, create_stemcell's
// partial volume) throw their own typed errors first and are passed through unchanged.
import { CloudError, CpiError, NoDiskSpace } from '../errors.js';
import { CallTimeoutError, ConnectError, ConnectionClosedError, LibvirtError, ProtocolError } from '../libvirt/errors.js';

/** Socket errors: the peer (libvirtd, an ssh or tcp hop) went away or never answered. */
const CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN']);

/** What a file system errno means, in words. */
const ERRNO_MEANING: Record<string, string> = {
  ENOENT: 'it does not exist',
  ENOTDIR: 'a part of the path that should be a directory is not one',
  EISDIR: 'it is a directory, not a file',
  ENOTEMPTY: 'the directory is not empty',
  EEXIST: 'it already exists',
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted',
  ELOOP: 'it is (or passes through) a symbolic link loop, or a link where none is followed',
  ENAMETOOLONG: 'the path is too long',
  EROFS: 'the file system is read-only',
  EBUSY: 'it is busy',
  EXDEV: 'it lies on another file system',
  EMFILE: 'too many open files',
  EINVAL: 'the path or argument is invalid for this operation',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  EIO: 'an input/output error occurred',
};

interface ErrnoLike {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
  message: string;
}

function errnoOf(e: unknown): ErrnoLike | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as NodeJS.ErrnoException).code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? (e as unknown as ErrnoLike) : undefined;
}

/**
 * The typed error for `err`, raised while `method` ran. CpiErrors pass unchanged; a
 * plain Error that is none of the known kinds is a CpiError "Unexpected error".
 */
export function typedError(err: unknown, method: string | undefined): CpiError {
  if (err instanceof CpiError) return err;
  const during = method ? ` during ${method}` : '';
  if (err instanceof ConnectionClosedError || err instanceof ProtocolError) {
    return new CloudError(`Lost the connection to libvirt${during}: ${err.message}. The call did not finish; call it again once libvirt answers`, { okToRetry: true, cause: err });
  }
  if (err instanceof CallTimeoutError) {
    return new CloudError(`libvirt did not answer in time${during}: ${err.message}. The call did not finish; call it again once libvirt answers`, { okToRetry: true, cause: err });
  }
  if (err instanceof ConnectError) return new CloudError(`Cannot connect to libvirt${during}: ${err.message}`, { okToRetry: true, cause: err });
  if (err instanceof LibvirtError) return new CloudError(`libvirt refused an operation${during}: ${err.message}`, { cause: err });
  const errno = errnoOf(err);
  if (errno) {
    if (CONNECTION_CODES.has(errno.code) && errno.path === undefined) {
      return new CloudError(`A connection failed${during}: ${errno.message} (${errno.code}: the other end went away or did not answer). The call did not finish; call it again`, { okToRetry: true, cause: err });
    }
    if (errno.path !== undefined) {
      const what = `${errno.syscall ? `${errno.syscall} ` : ''}${JSON.stringify(errno.path)}${errno.dest !== undefined ? ` -> ${JSON.stringify(errno.dest)}` : ''}`;
      const meaning = ERRNO_MEANING[errno.code] ?? errno.message;
      const message = `Cannot ${what}${during}: ${meaning} (${errno.code})`;
      return errno.code === 'ENOSPC' || errno.code === 'EDQUOT' ? new NoDiskSpace(message, { cause: err }) : new CloudError(message, { cause: err });
    }
  }
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return new CpiError(`The CPI ran out of stack${during} (${err.message}): some value in the request is nested too deeply to handle`, { cause: err });
  }
  return new CpiError(`Unexpected error${during}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
