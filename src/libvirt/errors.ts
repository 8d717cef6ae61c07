// Errors from the daemon keep libvirt's numeric code/domain so callers can branch on
// them (`isLibvirtError(e, ErrorCode.NO_DOMAIN)`); failures on the client side (transport
// gone, timeout, bad packet) are LibvirtErrors too, with the codes libvirt's own C client
// would report, so one check covers both.
import { ErrorCode } from './api.js';

/** virErrorDomain values the client itself reports. */
export const ErrorDomain = {
  NONE: 0, DOM: 6, RPC: 7, QEMU: 10, NET: 11, TEST: 12, REMOTE: 13, STORAGE: 18, NETWORK: 19,
  DOMAIN: 20, DOMAIN_SNAPSHOT: 35, STREAMS: 38, AUTH: 46, SSH: 50,
} as const;

export interface RemoteErrorFields {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  str1?: string | null;
  str2?: string | null;
  str3?: string | null;
  int1?: number;
  int2?: number;
}

export class LibvirtError extends Error {
  override name = 'LibvirtError';
  readonly code: number;
  readonly domain: number;
  readonly level: number;
  readonly str1: string | null;
  readonly str2: string | null;
  readonly str3: string | null;
  readonly int1: number;
  readonly int2: number;

  constructor(fields: RemoteErrorFields, options?: { cause?: unknown }) {
    super(fields.message ?? `libvirt error code ${fields.code}`, options);
    this.code = fields.code;
    this.domain = fields.domain;
    this.level = fields.level;
    this.str1 = fields.str1 ?? null;
    this.str2 = fields.str2 ?? null;
    this.str3 = fields.str3 ?? null;
    this.int1 = fields.int1 ?? 0;
    this.int2 = fields.int2 ?? 0;
  }
}

export class NoDomainError extends LibvirtError { override name = 'NoDomainError'; }
export class NoNetworkError extends LibvirtError { override name = 'NoNetworkError'; }
export class NoStoragePoolError extends LibvirtError { override name = 'NoStoragePoolError'; }
export class NoStorageVolError extends LibvirtError { override name = 'NoStorageVolError'; }
export class NoDomainMetadataError extends LibvirtError { override name = 'NoDomainMetadataError'; }
export class NoDomainSnapshotError extends LibvirtError { override name = 'NoDomainSnapshotError'; }
export class StorageVolExistError extends LibvirtError { override name = 'StorageVolExistError'; }
export class OperationDeniedError extends LibvirtError { override name = 'OperationDeniedError'; }
export class NoSupportError extends LibvirtError { override name = 'NoSupportError'; }

const BY_CODE: Record<number, new (f: RemoteErrorFields) => LibvirtError> = {
  [ErrorCode.NO_DOMAIN]: NoDomainError,
  [ErrorCode.NO_NETWORK]: NoNetworkError,
  [ErrorCode.NO_STORAGE_POOL]: NoStoragePoolError,
  [ErrorCode.NO_STORAGE_VOL]: NoStorageVolError,
  [ErrorCode.NO_DOMAIN_METADATA]: NoDomainMetadataError,
  [ErrorCode.NO_DOMAIN_SNAPSHOT]: NoDomainSnapshotError,
  [ErrorCode.STORAGE_VOL_EXIST]: StorageVolExistError,
  [ErrorCode.OPERATION_DENIED]: OperationDeniedError,
  [ErrorCode.NO_SUPPORT]: NoSupportError,
};

/** Builds the most specific error class for a daemon's `remote_error`. */
export function errorFromRemote(fields: RemoteErrorFields): LibvirtError {
  const Cls = BY_CODE[fields.code] ?? LibvirtError;
  return new Cls(fields);
}

/** True when `e` is a LibvirtError (and, if given, carries one of `codes`). */
export function isLibvirtError(e: unknown, ...codes: number[]): e is LibvirtError {
  return e instanceof LibvirtError && (codes.length === 0 || codes.includes(e.code));
}

// ---- client-side failures ----------------------------------------------------

/** The transport could not be opened (no socket, refused, ssh failed, TLS handshake). */
export class ConnectError extends LibvirtError {
  override name = 'ConnectError';
  constructor(message: string, options?: { cause?: unknown }) {
    super({ code: ErrorCode.NO_CONNECT, domain: ErrorDomain.REMOTE, message, level: 2 }, options);
  }
}

/** The daemon hung up (or the transport broke) while calls were pending or afterwards. */
export class ConnectionClosedError extends LibvirtError {
  override name = 'ConnectionClosedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super({ code: ErrorCode.RPC, domain: ErrorDomain.RPC, message, level: 2 }, options);
  }
}

/** A call got no reply within ConnectOptions.callTimeoutMs. */
export class CallTimeoutError extends LibvirtError {
  override name = 'CallTimeoutError';
  constructor(message: string) {
    super({ code: ErrorCode.OPERATION_TIMEOUT, domain: ErrorDomain.RPC, message, level: 2 });
  }
}

/** Malformed, oversized or unexpected packet; the connection is unusable afterwards. */
export class ProtocolError extends LibvirtError {
  override name = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super({ code: ErrorCode.RPC, domain: ErrorDomain.RPC, message, level: 2 }, options);
  }
}

/** The daemon requires an authentication scheme this client does not implement. */
export class AuthUnsupportedError extends LibvirtError {
  override name = 'AuthUnsupportedError';
  constructor(message: string) {
    super({ code: ErrorCode.AUTH_UNAVAILABLE, domain: ErrorDomain.AUTH, message, level: 2 });
  }
}

/** A bad URI or option, detected before anything is sent. */
export class InvalidArgError extends LibvirtError {
  override name = 'InvalidArgError';
  constructor(message: string) {
    super({ code: ErrorCode.INVALID_ARG, domain: ErrorDomain.REMOTE, message, level: 2 });
  }
}
