// The public surface of the libvirt RPC client, as the driver layer sees it.
// `connect()` in ./index.ts returns a `Connection`; everything else in src/libvirt/
// is an implementation detail (XDR, framing, transports, the procedure table).
import type { Readable } from 'node:stream';
import type { Piece } from './holes.js';

/** remote_nonnull_domain */
export interface DomainRef { name: string; uuid: Buffer; id: number }
/** remote_nonnull_network */
export interface NetworkRef { name: string; uuid: Buffer }
/** remote_nonnull_storage_pool */
export interface PoolRef { name: string; uuid: Buffer }
/** remote_nonnull_storage_vol */
export interface VolRef { pool: string; name: string; key: string }
/** remote_nonnull_domain_snapshot */
export interface SnapshotRef { name: string; dom: DomainRef }

export interface DomainState { state: number; reason: number }
export interface VolInfo { type: number; capacity: bigint; allocation: bigint }
export interface PoolInfo { state: number; capacity: bigint; allocation: bigint; available: bigint }
export interface DhcpLease {
  iface: string; expirytime: bigint; type: number; mac: string | null; iaid: string | null;
  ipaddr: string; prefix: number; hostname: string | null; clientid: string | null;
}
export interface InterfaceAddresses {
  name: string; hwaddr: string | null;
  addrs: Array<{ type: number; addr: string; prefix: number }>;
}

export interface ConnectOptions {
  /** per-call timeout; default 120 s */
  callTimeoutMs?: number;
  ssh?: { privateKey?: string; knownHosts?: string; strictHostKeyChecking?: boolean; extraArgs?: string[] };
  tls?: { caCert?: string; clientCert?: string; clientKey?: string; verify?: boolean };
}

export interface UploadOptions { offset?: bigint; length?: bigint; flags?: number }
export interface DownloadOptions { offset?: bigint; length?: bigint; flags?: number }

export interface Connection {
  /** the URI the daemon was opened with (transport-less, e.g. qemu:///system) */
  readonly uri: string;
  close(): Promise<void>;
  /** Resolves/rejects when the transport closes (daemon hang-up, close()). */
  readonly closed: Promise<void>;

  libVersion(): Promise<bigint>;
  /** the host's free memory in bytes (virNodeGetFreeMemory) */
  nodeFreeMemory(): Promise<bigint>;
  version(): Promise<bigint>;
  capabilities(): Promise<string>;
  domainCapabilities(emulatorbin: string | null, arch: string | null, machine: string | null, virttype: string | null, flags?: number): Promise<string>;
  supportsFeature(feature: number): Promise<boolean>;

  domains: {
    listAll(flags?: number): Promise<DomainRef[]>;
    lookupByName(name: string): Promise<DomainRef>;
    lookupByUUID(uuid: Buffer): Promise<DomainRef>;
    defineXML(xml: string, flags?: number): Promise<DomainRef>;
    create(dom: DomainRef, flags?: number): Promise<DomainRef>;
    destroy(dom: DomainRef, flags?: number): Promise<void>;
    undefine(dom: DomainRef, flags?: number): Promise<void>;
    getXMLDesc(dom: DomainRef, flags?: number): Promise<string>;
    getState(dom: DomainRef, flags?: number): Promise<DomainState>;
    reboot(dom: DomainRef, flags?: number): Promise<void>;
    reset(dom: DomainRef, flags?: number): Promise<void>;
    /** pauses the vCPUs (QEMU drains in-flight I/O first) */
    suspend(dom: DomainRef): Promise<void>;
    resume(dom: DomainRef): Promise<void>;
    /** starts a backup job (virDomainBackupBegin); it runs in libvirtd, watch it with getJobStats */
    backupBegin(dom: DomainRef, backupXml: string, checkpointXml: string | null, flags?: number): Promise<void>;
    /** the active job (flags 0) or, with JobStatsFlags.COMPLETED, the last finished one */
    getJobStats(dom: DomainRef, flags?: number): Promise<JobStats>;
    abortJob(dom: DomainRef): Promise<void>;
    shutdown(dom: DomainRef, flags?: number): Promise<void>;
    setMetadata(dom: DomainRef, type: number, metadata: string | null, key: string | null, uri: string | null, flags?: number): Promise<void>;
    getMetadata(dom: DomainRef, type: number, uri: string | null, flags?: number): Promise<string>;
    attachDevice(dom: DomainRef, xml: string, flags?: number): Promise<void>;
    detachDevice(dom: DomainRef, xml: string, flags?: number): Promise<void>;
    updateDevice(dom: DomainRef, xml: string, flags?: number): Promise<void>;
    interfaceAddresses(dom: DomainRef, source: number, flags?: number): Promise<InterfaceAddresses[]>;
    snapshotCreateXML(dom: DomainRef, xml: string, flags?: number): Promise<SnapshotRef>;
    snapshotLookupByName(dom: DomainRef, name: string, flags?: number): Promise<SnapshotRef>;
    snapshotDelete(snap: SnapshotRef, flags?: number): Promise<void>;
  };

  pools: {
    listAll(flags?: number): Promise<PoolRef[]>;
    lookupByName(name: string): Promise<PoolRef>;
    defineXML(xml: string, flags?: number): Promise<PoolRef>;
    build(pool: PoolRef, flags?: number): Promise<void>;
    create(pool: PoolRef, flags?: number): Promise<void>;
    destroy(pool: PoolRef): Promise<void>;
    undefine(pool: PoolRef): Promise<void>;
    refresh(pool: PoolRef, flags?: number): Promise<void>;
    getXMLDesc(pool: PoolRef, flags?: number): Promise<string>;
    getInfo(pool: PoolRef): Promise<PoolInfo>;
    setAutostart(pool: PoolRef, autostart: boolean): Promise<void>;
    listAllVolumes(pool: PoolRef, flags?: number): Promise<VolRef[]>;
  };

  volumes: {
    lookupByName(pool: PoolRef, name: string): Promise<VolRef>;
    lookupByPath(path: string): Promise<VolRef>;
    createXML(pool: PoolRef, xml: string, flags?: number): Promise<VolRef>;
    /** a server-side copy in one call; `timeoutMs` overrides the call timeout (the copy takes as long as the data) */
    createXMLFrom(pool: PoolRef, xml: string, clone: VolRef, flags?: number, timeoutMs?: number): Promise<VolRef>;
    delete(vol: VolRef, flags?: number): Promise<void>;
    getInfo(vol: VolRef): Promise<VolInfo>;
    getXMLDesc(vol: VolRef, flags?: number): Promise<string>;
    getPath(vol: VolRef): Promise<string>;
    resize(vol: VolRef, capacity: bigint, flags?: number): Promise<void>;
    /**
     * Streams `source` into the volume (STORAGE_VOL_UPLOAD) with backpressure; resolves
     * after the daemon confirms. With `flags: VolStreamFlags.SPARSE_STREAM`, runs of
     * zeros in `source` (>= 64 KiB) are sent as holes: the daemon skips them, so a file
     * volume created sparse stays sparse.
     */
    upload(vol: VolRef, source: Readable, opts?: UploadOptions): Promise<void>;
    /** A readable of the volume's bytes (STORAGE_VOL_DOWNLOAD); errors surface as stream errors. */
    download(vol: VolRef, opts?: DownloadOptions): Readable;
    /** An upload of data and holes as they come (e.g. from downloadPieces of another host); holes need SPARSE_STREAM. */
    uploadPieces(vol: VolRef, pieces: AsyncIterable<Piece>, opts?: UploadOptions): Promise<void>;
    /** A sparse download as an object-mode readable of `{ data }` / `{ hole }` pieces (holes stay holes). */
    downloadPieces(vol: VolRef, opts?: Omit<DownloadOptions, 'flags'>): Readable;
  };

  networks: {
    listAll(flags?: number): Promise<NetworkRef[]>;
    lookupByName(name: string): Promise<NetworkRef>;
    defineXML(xml: string): Promise<NetworkRef>;
    create(net: NetworkRef): Promise<void>;
    destroy(net: NetworkRef): Promise<void>;
    undefine(net: NetworkRef): Promise<void>;
    getXMLDesc(net: NetworkRef, flags?: number): Promise<string>;
    isActive(net: NetworkRef): Promise<boolean>;
    /** NETWORK_UPDATE with the command/section wire-order compatibility check (go-libvirt NetworkUpdateCompat). */
    update(net: NetworkRef, command: number, section: number, parentIndex: number, xml: string, flags?: number): Promise<void>;
    getDHCPLeases(net: NetworkRef, mac: string | null, flags?: number): Promise<DhcpLease[]>;
  };
}

// Constants the driver uses (libvirt's public headers).
export const DomainState = { NOSTATE: 0, RUNNING: 1, BLOCKED: 2, PAUSED: 3, SHUTDOWN: 4, SHUTOFF: 5, CRASHED: 6, PMSUSPENDED: 7 } as const;
export const MetadataType = { DESCRIPTION: 0, TITLE: 1, ELEMENT: 2 } as const;
export const AffectFlags = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
export const UndefineFlags = { MANAGED_SAVE: 1, SNAPSHOTS_METADATA: 2, NVRAM: 4, KEEP_NVRAM: 8, CHECKPOINTS_METADATA: 16, KEEP_TPM: 32, TPM: 64 } as const;
export const NetworkUpdateCommand = { NONE: 0, MODIFY: 1, DELETE: 2, ADD_LAST: 3, ADD_FIRST: 4 } as const;
export const NetworkUpdateSection = { NONE: 0, BRIDGE: 1, DOMAIN: 2, IP: 3, IP_DHCP_HOST: 4, IP_DHCP_RANGE: 5, FORWARD: 6, FORWARD_INTERFACE: 7, FORWARD_PF: 8, PORTGROUP: 9, DNS_HOST: 10, DNS_TXT: 11, DNS_SRV: 12 } as const;
export const NetworkUpdateFlags = { AFFECT_CURRENT: 0, AFFECT_LIVE: 1, AFFECT_CONFIG: 2 } as const;
export const VolResizeFlags = { ALLOCATE: 1, DELTA: 2, SHRINK: 4 } as const;
export const DomainSnapshotCreateFlags = { REDEFINE: 1, CURRENT: 2, NO_METADATA: 4, HALT: 8, DISK_ONLY: 16, REUSE_EXT: 32, QUIESCE: 64, ATOMIC: 128, LIVE: 256, VALIDATE: 512 } as const;
/** virErrorNumber (include/libvirt/virterror.h). */
export const ErrorCode = {
  INTERNAL_ERROR: 1, NO_SUPPORT: 3, NO_CONNECT: 5, INVALID_ARG: 8, OPERATION_FAILED: 9, XML_ERROR: 27,
  DOM_EXIST: 28, OPERATION_DENIED: 29, NETWORK_EXIST: 37, SYSTEM_ERROR: 38, RPC: 39, NO_DOMAIN: 42,
  NO_NETWORK: 43, AUTH_FAILED: 45, NO_STORAGE_POOL: 49, NO_STORAGE_VOL: 50, OPERATION_INVALID: 55,
  CONFIG_UNSUPPORTED: 67, OPERATION_TIMEOUT: 68, NO_DOMAIN_SNAPSHOT: 72, ARGUMENT_UNSUPPORTED: 74,
  STORAGE_POOL_BUILT: 76, NO_DOMAIN_METADATA: 80, OPERATION_UNSUPPORTED: 84, RESOURCE_BUSY: 87,
  ACCESS_DENIED: 88, STORAGE_VOL_EXIST: 90, AUTH_UNAVAILABLE: 94,
} as const;

// Added beyond the original surface (same sources: libvirt-domain.h, libvirt-storage.h,
// libvirt-network.h, libvirt-host.h, src/libvirt_internal.h).
export const DomainXMLFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;
export const ListAllDomainsFlags = { ACTIVE: 1, INACTIVE: 2, PERSISTENT: 4, TRANSIENT: 8, RUNNING: 16, PAUSED: 32, SHUTOFF: 64, OTHER: 128 } as const;
export const DomainDestroyFlags = { DEFAULT: 0, GRACEFUL: 1 } as const;
export const DomainShutdownFlags = { DEFAULT: 0, ACPI_POWER_BTN: 1, GUEST_AGENT: 2, INITCTL: 4, SIGNAL: 8, PARAVIRT: 16 } as const;
export const DomainSnapshotDeleteFlags = { CHILDREN: 1, METADATA_ONLY: 2, CHILDREN_ONLY: 4 } as const;
export const InterfaceAddressesSource = { LEASE: 0, AGENT: 1, ARP: 2 } as const;
export const IPAddrType = { IPV4: 0, IPV6: 1 } as const;
export const StoragePoolState = { INACTIVE: 0, BUILDING: 1, RUNNING: 2, DEGRADED: 3, INACCESSIBLE: 4 } as const;
export const StoragePoolBuildFlags = { NEW: 0, REPAIR: 1, RESIZE: 2, NO_OVERWRITE: 4, OVERWRITE: 8 } as const;
export const StorageVolType = { FILE: 0, BLOCK: 1, DIR: 2, NETWORK: 3, NETDIR: 4, PLOOP: 5 } as const;
export const StorageVolCreateFlags = { PREALLOC_METADATA: 1, REFLINK: 2, VALIDATE: 4 } as const;
export const StorageVolDeleteFlags = { NORMAL: 0, ZEROED: 1, WITH_SNAPSHOTS: 2 } as const;
/** VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM / VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM */
export const VolStreamFlags = { SPARSE_STREAM: 1 } as const;
/** virDomainJobType, the `type` of getJobStats */
export const DomainJobType = { NONE: 0, BOUNDED: 1, UNBOUNDED: 2, COMPLETED: 3, FAILED: 4, CANCELLED: 5 } as const;
/** virDomainGetJobStatsFlags */
export const JobStatsFlags = { COMPLETED: 1, KEEP_COMPLETED: 2 } as const;
/** virDomainJobOperation, the job stats' `operation` value */
export const DomainJobOperation = { BACKUP: 9 } as const;
/** virDomainBackupBeginFlags */
export const BackupBeginFlags = { REUSE_EXTERNAL: 1 } as const;

/** A job's type and its typed parameters by field name (operation, time_elapsed, disk_processed, errmsg…). */
export interface JobStats {
  type: number;
  params: Record<string, number | bigint | boolean | string>;
}
export const ConnectOpenFlags = { RO: 1, NO_ALIASES: 2 } as const;
/** virDrvFeature (src/libvirt_internal.h), for supportsFeature(). */
export const DrvFeature = { REMOTE: 2, FD_PASSING: 8, TYPED_PARAM_STRING: 9, PROGRAM_KEEPALIVE: 10, NETWORK_UPDATE_HAS_CORRECT_ORDER: 16 } as const;
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;
