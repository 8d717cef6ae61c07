// Shared structs of src/remote/remote_protocol.x, as codecs.
import type { DomainRef, NetworkRef, PoolRef, SnapshotRef, VolRef } from './api.js';
import {
  type Codec, intBool, xarray, xfixedOpaque, xhyper, xint, xmap, xoptional, xstring, xstruct, xuhyper, xuint, xunion,
} from './xdr.js';

/** REMOTE_STRING_MAX (4 MiB since libvirt 1.2.x; older daemons used 1 MiB). */
export const REMOTE_STRING_MAX = 4 * 1024 * 1024;
export const VIR_UUID_BUFLEN = 16;

// List limits from remote_protocol.x.
export const REMOTE_DOMAIN_LIST_MAX = 16384;
export const REMOTE_NETWORK_LIST_MAX = 16384;
export const REMOTE_STORAGE_POOL_LIST_MAX = 4096;
export const REMOTE_STORAGE_VOL_LIST_MAX = 16384;
export const REMOTE_AUTH_TYPE_LIST_MAX = 20;
export const REMOTE_NETWORK_DHCP_LEASES_MAX = 65536;
export const REMOTE_DOMAIN_INTERFACE_MAX = 2048;
export const REMOTE_DOMAIN_IP_ADDR_MAX = 2048;

export const nonnullString = xstring(REMOTE_STRING_MAX);
export const remoteString = xoptional(nonnullString);
export const uuid = xfixedOpaque(VIR_UUID_BUFLEN);

export const nonnullDomain: Codec<DomainRef> = xstruct({ name: nonnullString, uuid, id: xint });
export const nonnullNetwork: Codec<NetworkRef> = xstruct({ name: nonnullString, uuid });
export const nonnullPool: Codec<PoolRef> = xstruct({ name: nonnullString, uuid });
export const nonnullVol: Codec<VolRef> = xstruct({ pool: nonnullString, name: nonnullString, key: nonnullString });
export const nonnullSnapshot: Codec<SnapshotRef> = xstruct({ name: nonnullString, dom: nonnullDomain });

/** struct remote_error */
export const remoteError = xstruct({
  code: xint,
  domain: xint,
  message: remoteString,
  level: xint,
  dom: xoptional(nonnullDomain),
  str1: remoteString,
  str2: remoteString,
  str3: remoteString,
  int1: xint,
  int2: xint,
  net: xoptional(nonnullNetwork),
});

/** virNetStreamHole (virnetprotocol.x) */
export const streamHole = xstruct({ length: xhyper, flags: xuint });

/** REMOTE_DOMAIN_JOB_STATS_MAX */
export const REMOTE_DOMAIN_JOB_STATS_MAX = 64;

/** XDR double: 8 bytes, IEEE 754 big-endian. */
const xdouble: Codec<number> = xmap(
  xfixedOpaque(8),
  (b) => b.readDoubleBE(0),
  (d) => {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(d, 0);
    return b;
  },
);

export type TypedParamValue = number | bigint | boolean | string;

/** remote_typed_param: a named value whose union arm is virTypedParameterType (INT=1 … STRING=7). */
export const typedParam: Codec<{ field: string; value: { type: number; value: TypedParamValue } }> = xstruct({
  field: nonnullString,
  value: xunion<TypedParamValue>({
    1: xint as Codec<TypedParamValue>,
    2: xuint as Codec<TypedParamValue>,
    3: xhyper as Codec<TypedParamValue>,
    4: xuhyper as Codec<TypedParamValue>,
    5: xdouble as Codec<TypedParamValue>,
    6: intBool as Codec<TypedParamValue>,
    7: nonnullString as Codec<TypedParamValue>,
  }),
});

export const typedParams = (max: number) => xarray(typedParam, max);
