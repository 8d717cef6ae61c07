// `doctor` for a vbox host (libvirt's VirtualBox driver, docs/vbox.md). Read-only, like
// every doctor check: whether the daemon's vbox driver came up (it loads VirtualBox's
// C binding when the daemon starts, and answers every connection with "unable to
// initialize VirtualBox driver API" when it found none it supports), which VirtualBox it
// reports, whether the configured host-only network exists, and storage.path, where the
// vbox profile keeps stemcells, disks, ISOs and its records.
import { statfsSync, statSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { ErrorCode, isLibvirtError, type Connection } from '../libvirt/index.js';
import { formatBytes, isLocalUri, openConnection } from './common.js';

type Add = (name: string, status: 'OK' | 'WARN' | 'FAIL', message: string) => void;

/** Free space below this in storage.path is a warning: each VM copies its stemcell's disk. */
const LOW_FREE_BYTES = 5n * 1024n ** 3n;

/** What libvirt's vbox driver answers every connection with when it found no usable VirtualBox. */
const NO_DRIVER = /unable to initialize VirtualBox driver API/;

/**
 * VirtualBox versions as libvirt packs them (major * 1e6 + minor * 1e3 + micro). libvirt
 * 9.0's vbox driver returns an address instead (two of its files disagree on a struct's
 * layout: fixtures/vbox-sim/README.md), so a value no VirtualBox has is said to be that.
 */
export function describeVboxVersion(v: bigint, libvirt: bigint): { status: 'OK' | 'WARN'; message: string } {
  const n = Number(v);
  const [major, minor, micro] = [Math.floor(n / 1e6), Math.floor((n % 1e6) / 1e3), n % 1e3];
  if (major >= 4 && major <= 9) return { status: 'OK', message: `VirtualBox ${major}.${minor}.${micro}` };
  const lib = Number(libvirt);
  const libMajor = Math.floor(lib / 1e6);
  const libMinor = Math.floor((lib % 1e6) / 1e3);
  const apis = libMajor < 9 || (libMajor === 9 && libMinor === 0) ? '5.2, 6.0 and 6.1' : '6.1 and 7.0';
  return {
    status: 'WARN',
    message:
      `the vbox driver reports version ${n}, which no VirtualBox has (libvirt ${libMajor}.${libMinor}'s vbox driver is known to return an address here); ` +
      `its driver came up, so VirtualBox's API is one this libvirt speaks: ${apis}`,
  };
}

export async function vboxChecks(config: Config, add: Add): Promise<void> {
  const local = isLocalUri(config.libvirt.uri);
  if (!local) {
    add('backend', 'FAIL', `libvirt.uri ${config.libvirt.uri} is remote: the vbox backend writes its disks and ISOs into storage.path itself, so it serves local vbox:///session URIs only (docs/vbox.md)`);
    return;
  }
  let conn: Connection;
  try {
    conn = await openConnection(config);
  } catch (e) {
    const msg = (e as Error).message;
    add(
      'connection',
      'FAIL',
      NO_DRIVER.test(msg)
        ? `${config.libvirt.uri}: ${msg}. libvirtd found no VirtualBox it supports when it started: VirtualBox (libvirt 9.0: 5.2, 6.0 or 6.1) must be installed where libvirt looks ` +
            `(/usr/lib/virtualbox, /opt/VirtualBox, … or VBOX_APP_HOME in the daemon's environment, with VBoxXPCOMC.so also on its library path), ` +
            `and libvirtd restarted after installing it (docs/vbox.md)`
        : msg,
    );
    return;
  }
  try {
    add('connection', 'OK', `connected to ${config.libvirt.uri}: the daemon's vbox driver is up`);
    try {
      const libvirt = await conn.libVersion();
      const v = describeVboxVersion(await conn.version(), libvirt);
      add('hypervisor', v.status, v.message);
    } catch (e) {
      add('hypervisor', 'WARN', `cannot read the VirtualBox version: ${(e as Error).message}`);
    }
    if (config.network.name) await hostOnlyNetwork(conn, config.network.name, add);
    else add('network', 'WARN', 'no network.name: every network of a deployment must name its host-only network (cloud_properties.name)');
  } finally {
    await conn.close().catch(() => undefined);
  }
  storagePath(config.storage.path, add);
}

async function hostOnlyNetwork(conn: Connection, name: string, add: Add): Promise<void> {
  try {
    await conn.networks.lookupByName(name);
    add('network', 'OK', `host-only network ${JSON.stringify(name)} exists (libvirt names VirtualBox's host-only interfaces after themselves); static addresses reach VMs through the agent's settings only (no DHCP host entries through libvirt)`);
  } catch (e) {
    // libvirt's vbox driver answers an unknown name with an error of no particular code
    // ("An error occurred, but the cause is unknown"), not NO_NETWORK
    const lost = !isLibvirtError(e) || e.code === ErrorCode.SYSTEM_ERROR;
    add(
      'network',
      'FAIL',
      lost
        ? `cannot look up network ${JSON.stringify(name)}: ${(e as Error).message}`
        : `network.name ${JSON.stringify(name)}: VirtualBox has no host-only interface of that name (libvirt: ${(e as Error).message}); create one as the daemon's user (VBoxManage hostonlyif create, then hostonlyif ipconfig) and name it here, e.g. "vboxnet0" (docs/vbox.md)`,
    );
  }
}

function storagePath(path: string, add: Add): void {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    add('storage', 'WARN', `storage.path ${path} does not exist yet: the first call creates it (mode 0700) for stemcells, disks, ISOs and the CPI's records`);
    return;
  }
  if (!isDir) {
    add('storage', 'FAIL', `storage.path ${path} is not a directory: the vbox backend keeps its stemcells, disks, ISOs and records there`);
    return;
  }
  try {
    const s = statfsSync(path, { bigint: true });
    const free = s.bavail * s.bsize;
    add('storage', free < LOW_FREE_BYTES ? 'WARN' : 'OK', `storage.path ${path}: ${formatBytes(free)} free${free < LOW_FREE_BYTES ? ' (each VM holds a full copy of its stemcell\'s disk)' : ''}`);
  } catch (e) {
    add('storage', 'WARN', `cannot read the free space of ${path}: ${(e as Error).message}`);
  }
}
