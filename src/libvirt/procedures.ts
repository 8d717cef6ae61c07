// The procedure table: REMOTE_PROC_* number → argument codec → result codec, with the
// layouts of remote_protocol.x. Adding a procedure is one line here plus (optionally) a
// wrapper in connection.ts; nothing else knows about individual procedures.
import {
  type Codec, xarray, xhyper, xint, xstruct, xuhyper, xuint, xvoid, intBool,
} from './xdr.js';
import {
  REMOTE_AUTH_TYPE_LIST_MAX, REMOTE_DOMAIN_INTERFACE_MAX, REMOTE_DOMAIN_IP_ADDR_MAX, REMOTE_DOMAIN_LIST_MAX,
  REMOTE_DOMAIN_JOB_STATS_MAX, REMOTE_NETWORK_DHCP_LEASES_MAX, REMOTE_NETWORK_LIST_MAX, REMOTE_STORAGE_POOL_LIST_MAX, REMOTE_STORAGE_VOL_LIST_MAX,
  nonnullDomain, nonnullNetwork, nonnullPool, nonnullSnapshot, nonnullString, nonnullVol, remoteString, typedParams, uuid,
} from './remote-types.js';

export interface ProcDef<A, R> {
  readonly proc: number;
  readonly name: string;
  readonly args: Codec<A>;
  readonly ret: Codec<R>;
}

function def<A, R>(proc: number, name: string, args: Codec<A>, ret: Codec<R>): ProcDef<A, R> {
  return { proc, name, args, ret };
}

// Argument shapes several procedures share.
const dom = xstruct({ dom: nonnullDomain });
const domFlags = xstruct({ dom: nonnullDomain, flags: xuint });
const domXmlFlags = xstruct({ dom: nonnullDomain, xml: nonnullString, flags: xuint });
const retDom = xstruct({ dom: nonnullDomain });
const net = xstruct({ net: nonnullNetwork });
const retNet = xstruct({ net: nonnullNetwork });
const pool = xstruct({ pool: nonnullPool });
const poolFlags = xstruct({ pool: nonnullPool, flags: xuint });
const retPool = xstruct({ pool: nonnullPool });
const vol = xstruct({ vol: nonnullVol });
const volFlags = xstruct({ vol: nonnullVol, flags: xuint });
const retVol = xstruct({ vol: nonnullVol });
const name = xstruct({ name: nonnullString });
const retXml = xstruct({ xml: nonnullString });
const listAll = xstruct({ need_results: xint, flags: xuint });
const volStream = xstruct({ vol: nonnullVol, offset: xuhyper, length: xuhyper, flags: xuint });

const dhcpLease = xstruct({
  iface: nonnullString,
  expirytime: xhyper,
  type: xint,
  mac: remoteString,
  iaid: remoteString,
  ipaddr: nonnullString,
  prefix: xuint,
  hostname: remoteString,
  clientid: remoteString,
});

const domainInterface = xstruct({
  name: nonnullString,
  hwaddr: remoteString,
  addrs: xarray(xstruct({ type: xint, addr: nonnullString, prefix: xuint }), REMOTE_DOMAIN_IP_ADDR_MAX),
});

export const Proc = {
  // connection
  CONNECT_OPEN: def(1, 'CONNECT_OPEN', xstruct({ name: remoteString, flags: xuint }), xvoid),
  CONNECT_CLOSE: def(2, 'CONNECT_CLOSE', xvoid, xvoid),
  CONNECT_GET_VERSION: def(4, 'CONNECT_GET_VERSION', xvoid, xstruct({ hv_ver: xuhyper })),
  CONNECT_GET_CAPABILITIES: def(7, 'CONNECT_GET_CAPABILITIES', xvoid, xstruct({ capabilities: nonnullString })),
  CONNECT_GET_HOSTNAME: def(59, 'CONNECT_GET_HOSTNAME', xvoid, xstruct({ hostname: nonnullString })),
  CONNECT_SUPPORTS_FEATURE: def(60, 'CONNECT_SUPPORTS_FEATURE', xstruct({ feature: xint }), xstruct({ supported: intBool })),
  AUTH_LIST: def(66, 'AUTH_LIST', xvoid, xstruct({ types: xarray(xint, REMOTE_AUTH_TYPE_LIST_MAX) })),
  AUTH_POLKIT: def(70, 'AUTH_POLKIT', xvoid, xstruct({ complete: xint })),
  CONNECT_GET_URI: def(110, 'CONNECT_GET_URI', xvoid, xstruct({ uri: nonnullString })),
  CONNECT_GET_LIB_VERSION: def(157, 'CONNECT_GET_LIB_VERSION', xvoid, xstruct({ lib_ver: xuhyper })),
  NODE_GET_FREE_MEMORY: def(102, 'NODE_GET_FREE_MEMORY', xvoid, xstruct({ freeMem: xuhyper })),
  CONNECT_GET_DOMAIN_CAPABILITIES: def(342, 'CONNECT_GET_DOMAIN_CAPABILITIES',
    xstruct({ emulatorbin: remoteString, arch: remoteString, machine: remoteString, virttype: remoteString, flags: xuint }),
    xstruct({ capabilities: nonnullString })),

  // listing
  CONNECT_LIST_ALL_DOMAINS: def(273, 'CONNECT_LIST_ALL_DOMAINS', listAll,
    xstruct({ domains: xarray(nonnullDomain, REMOTE_DOMAIN_LIST_MAX), ret: xuint })),
  CONNECT_LIST_ALL_STORAGE_POOLS: def(281, 'CONNECT_LIST_ALL_STORAGE_POOLS', listAll,
    xstruct({ pools: xarray(nonnullPool, REMOTE_STORAGE_POOL_LIST_MAX), ret: xuint })),
  STORAGE_POOL_LIST_ALL_VOLUMES: def(282, 'STORAGE_POOL_LIST_ALL_VOLUMES',
    xstruct({ pool: nonnullPool, need_results: xint, flags: xuint }),
    xstruct({ vols: xarray(nonnullVol, REMOTE_STORAGE_VOL_LIST_MAX), ret: xuint })),
  CONNECT_LIST_ALL_NETWORKS: def(283, 'CONNECT_LIST_ALL_NETWORKS', listAll,
    xstruct({ nets: xarray(nonnullNetwork, REMOTE_NETWORK_LIST_MAX), ret: xuint })),

  // domains
  DOMAIN_CREATE: def(9, 'DOMAIN_CREATE', dom, xvoid),
  DOMAIN_DEFINE_XML: def(11, 'DOMAIN_DEFINE_XML', xstruct({ xml: nonnullString }), retDom),
  DOMAIN_DESTROY: def(12, 'DOMAIN_DESTROY', dom, xvoid),
  DOMAIN_GET_XML_DESC: def(14, 'DOMAIN_GET_XML_DESC', domFlags, retXml),
  DOMAIN_LOOKUP_BY_NAME: def(23, 'DOMAIN_LOOKUP_BY_NAME', name, retDom),
  DOMAIN_LOOKUP_BY_UUID: def(24, 'DOMAIN_LOOKUP_BY_UUID', xstruct({ uuid }), retDom),
  DOMAIN_REBOOT: def(27, 'DOMAIN_REBOOT', domFlags, xvoid),
  DOMAIN_SUSPEND: def(34, 'DOMAIN_SUSPEND', dom, xvoid),
  DOMAIN_RESUME: def(28, 'DOMAIN_RESUME', dom, xvoid),
  DOMAIN_SHUTDOWN: def(33, 'DOMAIN_SHUTDOWN', dom, xvoid),
  DOMAIN_UNDEFINE: def(35, 'DOMAIN_UNDEFINE', dom, xvoid),
  DOMAIN_IS_ACTIVE: def(150, 'DOMAIN_IS_ACTIVE', dom, xstruct({ active: intBool })),
  DOMAIN_ATTACH_DEVICE_FLAGS: def(160, 'DOMAIN_ATTACH_DEVICE_FLAGS', domXmlFlags, xvoid),
  DOMAIN_DETACH_DEVICE_FLAGS: def(161, 'DOMAIN_DETACH_DEVICE_FLAGS', domXmlFlags, xvoid),
  DOMAIN_UPDATE_DEVICE_FLAGS: def(174, 'DOMAIN_UPDATE_DEVICE_FLAGS', domXmlFlags, xvoid),
  DOMAIN_SNAPSHOT_CREATE_XML: def(185, 'DOMAIN_SNAPSHOT_CREATE_XML',
    xstruct({ dom: nonnullDomain, xml_desc: nonnullString, flags: xuint }), xstruct({ snap: nonnullSnapshot })),
  DOMAIN_SNAPSHOT_LOOKUP_BY_NAME: def(189, 'DOMAIN_SNAPSHOT_LOOKUP_BY_NAME',
    xstruct({ dom: nonnullDomain, name: nonnullString, flags: xuint }), xstruct({ snap: nonnullSnapshot })),
  DOMAIN_SNAPSHOT_DELETE: def(193, 'DOMAIN_SNAPSHOT_DELETE', xstruct({ snap: nonnullSnapshot, flags: xuint }), xvoid),
  DOMAIN_CREATE_WITH_FLAGS: def(196, 'DOMAIN_CREATE_WITH_FLAGS', domFlags, retDom),
  DOMAIN_GET_STATE: def(212, 'DOMAIN_GET_STATE', domFlags, xstruct({ state: xint, reason: xint })),
  DOMAIN_UNDEFINE_FLAGS: def(231, 'DOMAIN_UNDEFINE_FLAGS', domFlags, xvoid),
  DOMAIN_DESTROY_FLAGS: def(234, 'DOMAIN_DESTROY_FLAGS', domFlags, xvoid),
  DOMAIN_RESET: def(245, 'DOMAIN_RESET', domFlags, xvoid),
  DOMAIN_SHUTDOWN_FLAGS: def(258, 'DOMAIN_SHUTDOWN_FLAGS', domFlags, xvoid),
  DOMAIN_SET_METADATA: def(264, 'DOMAIN_SET_METADATA',
    xstruct({ dom: nonnullDomain, type: xint, metadata: remoteString, key: remoteString, uri: remoteString, flags: xuint }), xvoid),
  DOMAIN_GET_METADATA: def(265, 'DOMAIN_GET_METADATA',
    xstruct({ dom: nonnullDomain, type: xint, uri: remoteString, flags: xuint }), xstruct({ metadata: nonnullString })),
  DOMAIN_ABORT_JOB: def(164, 'DOMAIN_ABORT_JOB', dom, xvoid),
  DOMAIN_GET_JOB_STATS: def(298, 'DOMAIN_GET_JOB_STATS', domFlags,
    xstruct({ type: xint, params: typedParams(REMOTE_DOMAIN_JOB_STATS_MAX) })),
  DOMAIN_BACKUP_BEGIN: def(421, 'DOMAIN_BACKUP_BEGIN',
    xstruct({ dom: nonnullDomain, backup_xml: nonnullString, checkpoint_xml: remoteString, flags: xuint }), xvoid),
  DOMAIN_DEFINE_XML_FLAGS: def(350, 'DOMAIN_DEFINE_XML_FLAGS', xstruct({ xml: nonnullString, flags: xuint }), retDom),
  DOMAIN_INTERFACE_ADDRESSES: def(353, 'DOMAIN_INTERFACE_ADDRESSES',
    xstruct({ dom: nonnullDomain, source: xuint, flags: xuint }),
    xstruct({ ifaces: xarray(domainInterface, REMOTE_DOMAIN_INTERFACE_MAX) })),

  // networks
  NETWORK_CREATE: def(39, 'NETWORK_CREATE', net, xvoid),
  NETWORK_DEFINE_XML: def(41, 'NETWORK_DEFINE_XML', xstruct({ xml: nonnullString }), retNet),
  NETWORK_DESTROY: def(42, 'NETWORK_DESTROY', net, xvoid),
  NETWORK_GET_XML_DESC: def(43, 'NETWORK_GET_XML_DESC', xstruct({ net: nonnullNetwork, flags: xuint }), retXml),
  NETWORK_LOOKUP_BY_NAME: def(46, 'NETWORK_LOOKUP_BY_NAME', name, retNet),
  NETWORK_SET_AUTOSTART: def(48, 'NETWORK_SET_AUTOSTART', xstruct({ net: nonnullNetwork, autostart: intBool }), xvoid),
  NETWORK_UNDEFINE: def(49, 'NETWORK_UNDEFINE', net, xvoid),
  NETWORK_IS_ACTIVE: def(152, 'NETWORK_IS_ACTIVE', net, xstruct({ active: intBool })),
  NETWORK_UPDATE: def(291, 'NETWORK_UPDATE',
    xstruct({ net: nonnullNetwork, command: xuint, section: xuint, parentIndex: xint, xml: nonnullString, flags: xuint }), xvoid),
  NETWORK_GET_DHCP_LEASES: def(341, 'NETWORK_GET_DHCP_LEASES',
    xstruct({ net: nonnullNetwork, mac: remoteString, need_results: xint, flags: xuint }),
    xstruct({ leases: xarray(dhcpLease, REMOTE_NETWORK_DHCP_LEASES_MAX), ret: xuint })),

  // storage pools
  STORAGE_POOL_DEFINE_XML: def(77, 'STORAGE_POOL_DEFINE_XML', xstruct({ xml: nonnullString, flags: xuint }), retPool),
  STORAGE_POOL_CREATE: def(78, 'STORAGE_POOL_CREATE', poolFlags, xvoid),
  STORAGE_POOL_BUILD: def(79, 'STORAGE_POOL_BUILD', poolFlags, xvoid),
  STORAGE_POOL_DESTROY: def(80, 'STORAGE_POOL_DESTROY', pool, xvoid),
  STORAGE_POOL_UNDEFINE: def(82, 'STORAGE_POOL_UNDEFINE', pool, xvoid),
  STORAGE_POOL_REFRESH: def(83, 'STORAGE_POOL_REFRESH', poolFlags, xvoid),
  STORAGE_POOL_LOOKUP_BY_NAME: def(84, 'STORAGE_POOL_LOOKUP_BY_NAME', name, retPool),
  // `unsigned char state` travels as a 4-byte XDR unit.
  STORAGE_POOL_GET_INFO: def(87, 'STORAGE_POOL_GET_INFO', pool,
    xstruct({ state: xuint, capacity: xuhyper, allocation: xuhyper, available: xuhyper })),
  STORAGE_POOL_GET_XML_DESC: def(88, 'STORAGE_POOL_GET_XML_DESC', poolFlags, retXml),
  STORAGE_POOL_SET_AUTOSTART: def(90, 'STORAGE_POOL_SET_AUTOSTART', xstruct({ pool: nonnullPool, autostart: intBool }), xvoid),
  STORAGE_POOL_IS_ACTIVE: def(154, 'STORAGE_POOL_IS_ACTIVE', pool, xstruct({ active: intBool })),

  // storage volumes
  STORAGE_VOL_CREATE_XML: def(93, 'STORAGE_VOL_CREATE_XML', xstruct({ pool: nonnullPool, xml: nonnullString, flags: xuint }), retVol),
  STORAGE_VOL_DELETE: def(94, 'STORAGE_VOL_DELETE', volFlags, xvoid),
  STORAGE_VOL_LOOKUP_BY_NAME: def(95, 'STORAGE_VOL_LOOKUP_BY_NAME', xstruct({ pool: nonnullPool, name: nonnullString }), retVol),
  STORAGE_VOL_LOOKUP_BY_PATH: def(97, 'STORAGE_VOL_LOOKUP_BY_PATH', xstruct({ path: nonnullString }), retVol),
  // `char type` travels as a 4-byte XDR unit.
  STORAGE_VOL_GET_INFO: def(98, 'STORAGE_VOL_GET_INFO', vol, xstruct({ type: xint, capacity: xuhyper, allocation: xuhyper })),
  STORAGE_VOL_GET_XML_DESC: def(99, 'STORAGE_VOL_GET_XML_DESC', volFlags, retXml),
  STORAGE_VOL_GET_PATH: def(100, 'STORAGE_VOL_GET_PATH', vol, xstruct({ name: nonnullString })),
  STORAGE_VOL_CREATE_XML_FROM: def(125, 'STORAGE_VOL_CREATE_XML_FROM',
    xstruct({ pool: nonnullPool, xml: nonnullString, clonevol: nonnullVol, flags: xuint }), retVol),
  STORAGE_VOL_UPLOAD: def(208, 'STORAGE_VOL_UPLOAD', volStream, xvoid),
  STORAGE_VOL_DOWNLOAD: def(209, 'STORAGE_VOL_DOWNLOAD', volStream, xvoid),
  STORAGE_VOL_RESIZE: def(260, 'STORAGE_VOL_RESIZE', xstruct({ vol: nonnullVol, capacity: xuhyper, flags: xuint }), xvoid),
} as const;

/** Procedure number → definition, for diagnostics ("DOMAIN_LOOKUP_BY_NAME timed out"). */
export const PROC_BY_NUMBER: ReadonlyMap<number, ProcDef<unknown, unknown>> = new Map(
  Object.values(Proc).map((d) => [d.proc, d as ProcDef<unknown, unknown>]),
);
