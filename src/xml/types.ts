// Typed descriptions of what the CPI asks libvirt for. The driver builds these plain
// objects; the renderers in this folder turn them into XML (xmlbuilder2, never string
// concatenation) and the parsers turn libvirt's XML back into them.

export const BOSH_METADATA_NS = 'urn:bosh-libvirt-cpi:vm:1';
export const BOSH_METADATA_PREFIX = 'bosh';
/** Namespace of the <fence> element in a fence domain's <metadata> (see renderFenceDomain). */
export const FENCE_NS = 'urn:bosh-libvirt-cpi:fence:1';

export type DiskFormat = 'qcow2' | 'raw' | 'vdi' | 'vmdk' | 'vhd';

export interface DiskDevice {
  device: 'disk' | 'cdrom';
  /** absolute path of the volume file on the host */
  file: string;
  format: DiskFormat;
  bus: 'virtio' | 'sata' | 'scsi' | 'ide';
  /** e.g. vda, vdb, sda: only an ordering hint inside the guest */
  target: string;
  /** virtio: at most 20 characters, shows up as /dev/disk/by-id/virtio-<serial> */
  serial?: string;
  readonly?: boolean;
  /** driver cache mode; default: none for writable disks, omitted for cdroms and read-only disks */
  cache?: 'none' | 'writeback' | 'unsafe' | 'directsync' | 'writethrough';
}

/**
 * Addresses and routes libvirt itself sets on the interface inside an LXC container
 * (QEMU guests configure their own): `<ip>` and `<route>` children of `<interface>`.
 */
export interface InterfaceAddressing {
  ips?: Array<{ family: 'ipv4' | 'ipv6'; address: string; prefix: number }>;
  routes?: Array<{ family: 'ipv4' | 'ipv6'; address: string; prefix: number; gateway: string }>;
}

/** `model` is the emulated NIC of a QEMU guest; a container's veth has none. */
export type InterfaceDevice =
  | ({ kind: 'network'; network: string; mac: string; model?: string } & InterfaceAddressing)
  | ({ kind: 'bridge'; bridge: string; mac: string; model?: string } & InterfaceAddressing);

export interface DomainSpec {
  name: string;
  uuid?: string;
  /** human-readable title, e.g. deployment/instance_group/index */
  title?: string;
  description?: string;
  type: 'kvm' | 'qemu';
  memoryMiB: number;
  vcpus: number;
  arch: 'x86_64';
  machine: 'pc' | 'q35';
  firmware: 'bios' | 'efi';
  emulator?: string;
  disks: DiskDevice[];
  interfaces: InterfaceDevice[];
  /** host file receiving the guest's serial console output (<serial type='file'>... with a <console>) */
  serialLogFile?: string;
  metadata?: VmMetadata;
}

/** A host directory mounted into a container (`<filesystem type='mount'>`). */
export interface FilesystemMount {
  /** absolute directory on the host */
  source: string;
  /** absolute directory inside the container; '/' is its root filesystem */
  target: string;
  readonly?: boolean;
}

/** A system container of libvirt's LXC driver: `<domain type='lxc'>` running `init`. */
export interface LxcDomainSpec {
  name: string;
  uuid?: string;
  title?: string;
  description?: string;
  type: 'lxc';
  memoryMiB: number;
  vcpus: number;
  /** absolute path inside the container of the first process (`<os><init>`) */
  init: string;
  initArgs?: string[];
  /** mounts in order; one of them has target '/' */
  filesystems: FilesystemMount[];
  interfaces: InterfaceDevice[];
  metadata?: VmMetadata;
}

/** What the CPI records inside <metadata><bosh:vm xmlns:bosh=BOSH_METADATA_NS>. */
export interface VmMetadata {
  agentId: string;
  stemcellCid: string;
  /** names of the volumes this VM owns (root overlay, ephemeral, config drive) */
  volumes: string[];
  /** persistent disks attached: `cid` is the disk's volume name; `as`, with several hosts, the CID the director attached it with (`<cid>@<host>` or bare) */
  disks: Array<{ cid: string; serial: string; target: string; as?: string }>;
  /** NIC MACs in order, so they stay stable across the VM's life */
  macs: string[];
  /** delegated IPv6/IPv4 prefixes routed to this VM: "2001:db8::/80" via the VM's address */
  prefixes: Array<{ prefix: string; via: string; network: string }>;
  /** DHCP host reservations added for this VM, removed on delete */
  reservations: Array<{ network: string; family: 'ipv4' | 'ipv6'; mac?: string; name?: string; ip: string }>;
  /**
   * static addresses the VM holds on libvirt networks, with or without DHCP, so another
   * create_vm (of any director) can see they are taken; absent in VMs made before.
   * With `prefix`: a delegated prefix (on-link or routed) whose base is `ip`.
   */
  addresses?: Array<{ network: string; ip: string; prefix?: number }>;
  /** set_vm_metadata tags */
  tags: Record<string, string>;
  /** stemcell api_version the VM was created with (drives config-drive rewrites) */
  stemcellApiVersion?: number;
  /**
   * Set while create_vm runs (it defines the domain with it and clears it as its last
   * step): a domain still carrying it after its creator is gone is an unfinished
   * create_vm the director never heard of (`orphans` lists it).
   */
  creating?: { host: string; pid: number; start: string; at: string };
}

export interface VolumeSpec {
  name: string;
  capacityBytes: bigint;
  /** 0 for sparse volumes; omitted = libvirt's default */
  allocationBytes?: bigint;
  /** `dir`: a directory in a directory pool (containers' root filesystems and disks) */
  format: DiskFormat | 'dir';
  /** permissions of the file or directory libvirt creates, e.g. 0o755 */
  mode?: number;
  backing?: { path: string; format: DiskFormat };
}

export interface DirPoolSpec { name: string; path: string }

export interface NetworkIpSpec {
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
  dhcp?: {
    ranges: Array<{ start: string; end: string }>;
    hosts?: Array<{ mac?: string; id?: string; name?: string; ip: string }>;
  };
}

/** An isolated libvirt network (no <forward>): what tests, the demo and `doctor` define. */
export interface NetworkSpec {
  name: string;
  bridge: string;
  mac?: string;
  ips: NetworkIpSpec[];
  routes?: Array<{ family: 'ipv4' | 'ipv6'; address: string; prefix: number; gateway: string }>;
  /** libvirt sends router advertisements on IPv6 networks with DHCPv6/RA; false keeps them quiet */
  ipv6RouterAdvertisements?: boolean;
  /** whether the network permits guest-to-guest IPv6 (ipv6='yes' attribute); default true when an ipv6 <ip> exists */
  ipv6?: boolean;
}

/** One <host> element for NETWORK_UPDATE IP_DHCP_HOST (IPv6 hosts have no mac). */
export type DhcpHostSpec =
  | { family: 'ipv4'; mac: string; ip: string; name?: string }
  | { family: 'ipv6'; ip: string; name?: string; id?: string };

/** A disk as seen in an existing domain's XML. */
export interface ParsedDisk {
  device: string;
  file?: string;
  target: string;
  bus?: string;
  serial?: string;
  format?: string;
}

export interface ParsedDomain {
  name: string;
  uuid: string;
  title?: string;
  disks: ParsedDisk[];
  interfaces: Array<{ kind: string; source: string; mac: string; model?: string }>;
  /** `<filesystem type='mount'>` entries (containers), when there are any; other types are left out */
  filesystems?: Array<{ source: string; target: string }>;
  serialLogFile?: string;
}

export interface ParsedNetwork {
  name: string;
  bridge?: string;
  forwardMode?: string;
  ips: Array<{
    family: 'ipv4' | 'ipv6';
    address: string;
    prefix: number;
    hasDhcp: boolean;
    /** DHCP reservations (<dhcp><host>) on this <ip>, in document order */
    hosts?: Array<{ mac?: string; id?: string; name?: string; ip: string }>;
  }>;
}

/** A volume as seen in STORAGE_VOL_GET_XML_DESC output. */
export interface ParsedVolume {
  name: string;
  capacityBytes: bigint;
  allocationBytes: bigint;
  format: string;
  path: string;
  backing?: { path: string; format: string };
}

/** A storage pool as seen in STORAGE_POOL_GET_XML_DESC output. */
export interface ParsedPool {
  name: string;
  type: string;
  path: string;
}

/** A push-mode backup of one disk of a running domain into an existing file (virDomainBackupBegin). */
export interface BackupSpec {
  /** the disk's target in the domain, e.g. `vdc` */
  disk: string;
  /** an existing file of the same virtual size (the snapshot volume) */
  targetFile: string;
  format: 'qcow2' | 'raw';
}

/** What a fence domain records in <metadata><fence xmlns=FENCE_NS>: whose define it settles, why, and who made it when. */
export interface FenceRecord {
  /** the VM name it fences (also the fence domain's name) */
  of: string;
  /** why it exists, in words */
  reason: string;
  host: string;
  pid: number;
  /** `<boot id>/<start ticks>` of the process that made it; may be empty */
  start: string;
  /** ISO time it was made */
  at: string;
}

/** A fence domain: no disks, no NICs, never started; `type` is the driver's domain type. */
export interface FenceDomainSpec {
  type: string;
  uuid: string;
  record: FenceRecord;
}
