// connect() and the Connection facade: thin wrappers over RpcClient.call() and the
// procedure table, plus the open handshake (auth, CONNECT_OPEN).
import type { Readable } from 'node:stream';
import {
  AuthType, ConnectOpenFlags, DrvFeature,
  type Connection, type ConnectOptions, type DhcpLease, type DomainRef, type InterfaceAddresses, type JobStats,
  type NetworkRef, type PoolRef, type SnapshotRef, type VolRef,
} from './api.js';
import { DEFAULT_CALL_TIMEOUT_MS, RpcClient } from './client.js';
import { AuthUnsupportedError, ConnectError, ConnectionClosedError, LibvirtError } from './errors.js';
import { Proc } from './procedures.js';
import { downloadPieces, downloadVolume, uploadPieces, uploadVolume } from './streams.js';
import type { Piece } from './holes.js';
import { openTransport } from './transports.js';
import { param, parseUri, remoteName } from './uri.js';

export const SASL_UNSUPPORTED =
  'SASL authentication is not supported by bosh-libvirt-cpi; configure auth_unix_rw/auth_tcp=none or use ssh/tls';

/** Opens a connection like libvirt's client: transport, AUTH_LIST (+ polkit), CONNECT_OPEN. */
export async function connect(uri: string, opts: ConnectOptions = {}): Promise<RemoteConnection> {
  const parsed = parseUri(uri);
  const transport = await openTransport(parsed, opts);
  const client = new RpcClient(transport, { callTimeoutMs: opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS });
  const name = remoteName(parsed);
  try {
    const { types } = await client.call(Proc.AUTH_LIST, undefined);
    await authenticate(client, types, param(parsed, 'auth'));
    const readonly = param(parsed, 'readonly') === '1';
    await client.call(Proc.CONNECT_OPEN, { name, flags: readonly ? ConnectOpenFlags.RO : 0 });
    const openedUri = name ?? (await client.call(Proc.CONNECT_GET_URI, undefined)).uri;
    return new RemoteConnection(client, openedUri);
  } catch (e) {
    client.destroy();
    if (e instanceof ConnectionClosedError) {
      throw new ConnectError(`cannot open '${uri}': ${e.message}`, { cause: e });
    }
    throw e;
  }
}

async function authenticate(client: RpcClient, types: number[], wanted: string | undefined): Promise<void> {
  if (types.length === 0) return; // no auth required
  const byName: Record<string, number> = { none: AuthType.NONE, sasl: AuthType.SASL, polkit: AuthType.POLKIT };
  let chosen: number | undefined;
  if (wanted) {
    const w = byName[wanted.split('.')[0]!.toLowerCase()];
    if (w === undefined || !types.includes(w)) {
      throw new AuthUnsupportedError(`requested authentication '${wanted}' is not offered by the daemon (offers ${types.join(', ')})`);
    }
    chosen = w;
  } else {
    // libvirt takes the daemon's first offer; skipping SASL when an alternative exists is strictly more permissive.
    chosen = types.find((t) => t !== AuthType.SASL) ?? types[0];
  }
  switch (chosen) {
    case AuthType.NONE:
      return;
    case AuthType.POLKIT: {
      const { complete } = await client.call(Proc.AUTH_POLKIT, undefined);
      if (!complete) throw new LibvirtError({ code: 45, domain: 46, level: 2, message: 'polkit authentication did not complete' });
      return;
    }
    case AuthType.SASL:
      throw new AuthUnsupportedError(SASL_UNSUPPORTED);
    default:
      throw new AuthUnsupportedError(`the daemon requires unknown authentication type ${chosen}`);
  }
}

export class RemoteConnection implements Connection {
  readonly closed: Promise<void>;
  readonly domains: ReturnType<typeof domainOps>;
  readonly pools: ReturnType<typeof poolOps>;
  readonly volumes: ReturnType<typeof volumeOps>;
  readonly networks: ReturnType<typeof networkOps>;
  private updateOrder: Promise<boolean> | undefined;

  constructor(readonly client: RpcClient, readonly uri: string) {
    this.closed = client.closed;
    this.domains = domainOps(client);
    this.pools = poolOps(client);
    this.volumes = volumeOps(client);
    this.networks = networkOps(this, client);
  }

  close(): Promise<void> {
    return this.client.close();
  }

  async nodeFreeMemory(): Promise<bigint> {
    return (await this.client.call(Proc.NODE_GET_FREE_MEMORY, undefined)).freeMem;
  }

  async libVersion(): Promise<bigint> {
    return (await this.client.call(Proc.CONNECT_GET_LIB_VERSION, undefined)).lib_ver;
  }

  async version(): Promise<bigint> {
    return (await this.client.call(Proc.CONNECT_GET_VERSION, undefined)).hv_ver;
  }

  async capabilities(): Promise<string> {
    return (await this.client.call(Proc.CONNECT_GET_CAPABILITIES, undefined)).capabilities;
  }

  async domainCapabilities(emulatorbin: string | null, arch: string | null, machine: string | null, virttype: string | null, flags = 0): Promise<string> {
    return (await this.client.call(Proc.CONNECT_GET_DOMAIN_CAPABILITIES, { emulatorbin, arch, machine, virttype, flags })).capabilities;
  }

  async supportsFeature(feature: number): Promise<boolean> {
    return (await this.client.call(Proc.CONNECT_SUPPORTS_FEATURE, { feature })).supported;
  }

  async hostname(): Promise<string> {
    return (await this.client.call(Proc.CONNECT_GET_HOSTNAME, undefined)).hostname;
  }

  /** CONNECT_SUPPORTS_FEATURE(NETWORK_UPDATE_HAS_CORRECT_ORDER), asked once per connection. */
  networkUpdateHasCorrectOrder(): Promise<boolean> {
    if (!this.updateOrder) {
      this.updateOrder = this.supportsFeature(DrvFeature.NETWORK_UPDATE_HAS_CORRECT_ORDER);
      // A failed probe (e.g. connection hiccup) must not be cached forever.
      this.updateOrder.catch(() => { this.updateOrder = undefined; });
    }
    return this.updateOrder;
  }
}

function domainOps(c: RpcClient) {
  return {
    listAll: async (flags = 0): Promise<DomainRef[]> => (await c.call(Proc.CONNECT_LIST_ALL_DOMAINS, { need_results: 1, flags })).domains,
    lookupByName: async (name: string): Promise<DomainRef> => (await c.call(Proc.DOMAIN_LOOKUP_BY_NAME, { name })).dom,
    lookupByUUID: async (uuid: Buffer): Promise<DomainRef> => (await c.call(Proc.DOMAIN_LOOKUP_BY_UUID, { uuid })).dom,
    defineXML: async (xml: string, flags = 0): Promise<DomainRef> => (await c.call(Proc.DOMAIN_DEFINE_XML_FLAGS, { xml, flags })).dom,
    create: async (dom: DomainRef, flags = 0): Promise<DomainRef> => (await c.call(Proc.DOMAIN_CREATE_WITH_FLAGS, { dom, flags })).dom,
    destroy: (dom: DomainRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_DESTROY_FLAGS, { dom, flags }),
    undefine: (dom: DomainRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_UNDEFINE_FLAGS, { dom, flags }),
    getXMLDesc: async (dom: DomainRef, flags = 0): Promise<string> => (await c.call(Proc.DOMAIN_GET_XML_DESC, { dom, flags })).xml,
    getState: (dom: DomainRef, flags = 0) => c.call(Proc.DOMAIN_GET_STATE, { dom, flags }),
    isActive: async (dom: DomainRef): Promise<boolean> => (await c.call(Proc.DOMAIN_IS_ACTIVE, { dom })).active,
    reboot: (dom: DomainRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_REBOOT, { dom, flags }),
    reset: (dom: DomainRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_RESET, { dom, flags }),
    suspend: (dom: DomainRef): Promise<void> => c.call(Proc.DOMAIN_SUSPEND, { dom }),
    resume: (dom: DomainRef): Promise<void> => c.call(Proc.DOMAIN_RESUME, { dom }),
    shutdown: (dom: DomainRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_SHUTDOWN_FLAGS, { dom, flags }),
    setMetadata: (dom: DomainRef, type: number, metadata: string | null, key: string | null, uri: string | null, flags = 0): Promise<void> =>
      c.call(Proc.DOMAIN_SET_METADATA, { dom, type, metadata, key, uri, flags }),
    getMetadata: async (dom: DomainRef, type: number, uri: string | null, flags = 0): Promise<string> =>
      (await c.call(Proc.DOMAIN_GET_METADATA, { dom, type, uri, flags })).metadata,
    attachDevice: (dom: DomainRef, xml: string, flags = 0): Promise<void> => c.call(Proc.DOMAIN_ATTACH_DEVICE_FLAGS, { dom, xml, flags }),
    detachDevice: (dom: DomainRef, xml: string, flags = 0): Promise<void> => c.call(Proc.DOMAIN_DETACH_DEVICE_FLAGS, { dom, xml, flags }),
    updateDevice: (dom: DomainRef, xml: string, flags = 0): Promise<void> => c.call(Proc.DOMAIN_UPDATE_DEVICE_FLAGS, { dom, xml, flags }),
    interfaceAddresses: async (dom: DomainRef, source: number, flags = 0): Promise<InterfaceAddresses[]> =>
      (await c.call(Proc.DOMAIN_INTERFACE_ADDRESSES, { dom, source, flags })).ifaces,
    backupBegin: (dom: DomainRef, backupXml: string, checkpointXml: string | null, flags = 0): Promise<void> =>
      c.call(Proc.DOMAIN_BACKUP_BEGIN, { dom, backup_xml: backupXml, checkpoint_xml: checkpointXml, flags }),
    getJobStats: async (dom: DomainRef, flags = 0): Promise<JobStats> => {
      const r = await c.call(Proc.DOMAIN_GET_JOB_STATS, { dom, flags });
      return { type: r.type, params: Object.fromEntries(r.params.map((p) => [p.field, p.value.value])) };
    },
    abortJob: (dom: DomainRef): Promise<void> => c.call(Proc.DOMAIN_ABORT_JOB, { dom }),
    snapshotCreateXML: async (dom: DomainRef, xml: string, flags = 0): Promise<SnapshotRef> =>
      (await c.call(Proc.DOMAIN_SNAPSHOT_CREATE_XML, { dom, xml_desc: xml, flags })).snap,
    snapshotLookupByName: async (dom: DomainRef, name: string, flags = 0): Promise<SnapshotRef> =>
      (await c.call(Proc.DOMAIN_SNAPSHOT_LOOKUP_BY_NAME, { dom, name, flags })).snap,
    snapshotDelete: (snap: SnapshotRef, flags = 0): Promise<void> => c.call(Proc.DOMAIN_SNAPSHOT_DELETE, { snap, flags }),
  };
}

function poolOps(c: RpcClient) {
  return {
    listAll: async (flags = 0): Promise<PoolRef[]> => (await c.call(Proc.CONNECT_LIST_ALL_STORAGE_POOLS, { need_results: 1, flags })).pools,
    lookupByName: async (name: string): Promise<PoolRef> => (await c.call(Proc.STORAGE_POOL_LOOKUP_BY_NAME, { name })).pool,
    defineXML: async (xml: string, flags = 0): Promise<PoolRef> => (await c.call(Proc.STORAGE_POOL_DEFINE_XML, { xml, flags })).pool,
    build: (pool: PoolRef, flags = 0): Promise<void> => c.call(Proc.STORAGE_POOL_BUILD, { pool, flags }),
    create: (pool: PoolRef, flags = 0): Promise<void> => c.call(Proc.STORAGE_POOL_CREATE, { pool, flags }),
    destroy: (pool: PoolRef): Promise<void> => c.call(Proc.STORAGE_POOL_DESTROY, { pool }),
    undefine: (pool: PoolRef): Promise<void> => c.call(Proc.STORAGE_POOL_UNDEFINE, { pool }),
    refresh: (pool: PoolRef, flags = 0): Promise<void> => c.call(Proc.STORAGE_POOL_REFRESH, { pool, flags }),
    getXMLDesc: async (pool: PoolRef, flags = 0): Promise<string> => (await c.call(Proc.STORAGE_POOL_GET_XML_DESC, { pool, flags })).xml,
    getInfo: (pool: PoolRef) => c.call(Proc.STORAGE_POOL_GET_INFO, { pool }),
    isActive: async (pool: PoolRef): Promise<boolean> => (await c.call(Proc.STORAGE_POOL_IS_ACTIVE, { pool })).active,
    setAutostart: (pool: PoolRef, autostart: boolean): Promise<void> => c.call(Proc.STORAGE_POOL_SET_AUTOSTART, { pool, autostart }),
    listAllVolumes: async (pool: PoolRef, flags = 0): Promise<VolRef[]> =>
      (await c.call(Proc.STORAGE_POOL_LIST_ALL_VOLUMES, { pool, need_results: 1, flags })).vols,
  };
}

function volumeOps(c: RpcClient) {
  return {
    lookupByName: async (pool: PoolRef, name: string): Promise<VolRef> => (await c.call(Proc.STORAGE_VOL_LOOKUP_BY_NAME, { pool, name })).vol,
    lookupByPath: async (path: string): Promise<VolRef> => (await c.call(Proc.STORAGE_VOL_LOOKUP_BY_PATH, { path })).vol,
    createXML: async (pool: PoolRef, xml: string, flags = 0): Promise<VolRef> => (await c.call(Proc.STORAGE_VOL_CREATE_XML, { pool, xml, flags })).vol,
    createXMLFrom: async (pool: PoolRef, xml: string, clone: VolRef, flags = 0, timeoutMs?: number): Promise<VolRef> =>
      (await c.call(Proc.STORAGE_VOL_CREATE_XML_FROM, { pool, xml, clonevol: clone, flags }, timeoutMs)).vol,
    delete: (vol: VolRef, flags = 0): Promise<void> => c.call(Proc.STORAGE_VOL_DELETE, { vol, flags }),
    getInfo: (vol: VolRef) => c.call(Proc.STORAGE_VOL_GET_INFO, { vol }),
    getXMLDesc: async (vol: VolRef, flags = 0): Promise<string> => (await c.call(Proc.STORAGE_VOL_GET_XML_DESC, { vol, flags })).xml,
    getPath: async (vol: VolRef): Promise<string> => (await c.call(Proc.STORAGE_VOL_GET_PATH, { vol })).name,
    resize: (vol: VolRef, capacity: bigint, flags = 0): Promise<void> => c.call(Proc.STORAGE_VOL_RESIZE, { vol, capacity, flags }),
    upload: (vol: VolRef, source: Readable, opts?: { offset?: bigint; length?: bigint; flags?: number }): Promise<void> =>
      uploadVolume(c, vol, source, opts),
    download: (vol: VolRef, opts?: { offset?: bigint; length?: bigint; flags?: number }): Readable => downloadVolume(c, vol, opts),
    uploadPieces: (vol: VolRef, pieces: AsyncIterable<Piece>, opts?: { offset?: bigint; length?: bigint; flags?: number }): Promise<void> =>
      uploadPieces(c, vol, pieces, opts),
    downloadPieces: (vol: VolRef, opts?: { offset?: bigint; length?: bigint }): Readable => downloadPieces(c, vol, opts),
  };
}

function networkOps(self: RemoteConnection, c: RpcClient) {
  return {
    listAll: async (flags = 0): Promise<NetworkRef[]> => (await c.call(Proc.CONNECT_LIST_ALL_NETWORKS, { need_results: 1, flags })).nets,
    lookupByName: async (name: string): Promise<NetworkRef> => (await c.call(Proc.NETWORK_LOOKUP_BY_NAME, { name })).net,
    defineXML: async (xml: string): Promise<NetworkRef> => (await c.call(Proc.NETWORK_DEFINE_XML, { xml })).net,
    create: (net: NetworkRef): Promise<void> => c.call(Proc.NETWORK_CREATE, { net }),
    destroy: (net: NetworkRef): Promise<void> => c.call(Proc.NETWORK_DESTROY, { net }),
    undefine: (net: NetworkRef): Promise<void> => c.call(Proc.NETWORK_UNDEFINE, { net }),
    getXMLDesc: async (net: NetworkRef, flags = 0): Promise<string> => (await c.call(Proc.NETWORK_GET_XML_DESC, { net, flags })).xml,
    isActive: async (net: NetworkRef): Promise<boolean> => (await c.call(Proc.NETWORK_IS_ACTIVE, { net })).active,
    setAutostart: (net: NetworkRef, autostart: boolean): Promise<void> => c.call(Proc.NETWORK_SET_AUTOSTART, { net, autostart }),
    update: async (net: NetworkRef, command: number, section: number, parentIndex: number, xml: string, flags = 0): Promise<void> => {
      // Daemons before the fix (libvirt b0f78d626a) read command and section swapped on the wire.
      const correct = await self.networkUpdateHasCorrectOrder();
      const [first, second] = correct ? [command, section] : [section, command];
      await c.call(Proc.NETWORK_UPDATE, { net, command: first, section: second, parentIndex, xml, flags });
    },
    getDHCPLeases: async (net: NetworkRef, mac: string | null, flags = 0): Promise<DhcpLease[]> =>
      (await c.call(Proc.NETWORK_GET_DHCP_LEASES, { net, mac, need_results: 1, flags })).leases,
  };
}
