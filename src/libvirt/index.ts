// The libvirt RPC client's public entry point; other code imports only from here.
export * from './api.js';
export { connect, RemoteConnection, SASL_UNSUPPORTED } from './connection.js';
export {
  LibvirtError, isLibvirtError, errorFromRemote, ErrorDomain,
  NoDomainError, NoNetworkError, NoStoragePoolError, NoStorageVolError, NoDomainMetadataError,
  NoDomainSnapshotError, StorageVolExistError, OperationDeniedError, NoSupportError,
  ConnectError, ConnectionClosedError, CallTimeoutError, ProtocolError, AuthUnsupportedError, InvalidArgError,
} from './errors.js';
export type { RemoteErrorFields } from './errors.js';
export type { Piece } from './holes.js';
export { parseUri, remoteName } from './uri.js';
export type { ParsedUri, TransportKind } from './uri.js';
export { DEFAULT_CALL_TIMEOUT_MS } from './client.js';
