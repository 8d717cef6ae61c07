// Every value the renderers choose on the caller's behalf lives here, so a change of
// policy (a cache mode, a CPU mode, a timer) is one edit with one reason next to it.

export const DOMAIN_DEFAULTS = {
  memoryUnit: 'MiB',
  /**
   * TCG cannot pass the host CPU through; `maximum` asks QEMU for `-cpu max`, every
   * feature TCG emulates (SSE4.2, POPCNT, …). Stemcells built for x86-64-v2 do not
   * boot on the `qemu64` model QEMU picks when <cpu> is omitted.
   */
  cpuModeQemu: 'maximum',
  /** Under KVM the guest sees the host CPU unchanged; the CPI does not live-migrate. */
  cpuModeKvm: 'host-passthrough',
  /** BOSH stemcells ship without enrolled keys: pick OVMF firmware that does not enforce them. */
  efiSecureBoot: false,
  bootDevice: 'hd',
  features: ['acpi', 'apic'] as const,
  clockOffset: 'utc',
  /** The usual QEMU timer set: rtc catches up after a stall, no hpet. */
  timers: [
    { name: 'rtc', tickpolicy: 'catchup' },
    { name: 'pit', tickpolicy: 'delay' },
    { name: 'hpet', present: 'no' },
  ] as ReadonlyArray<Record<string, string>>,
  /** A guest that powers itself off is gone for good (BOSH recreates it); a reboot stays a reboot. */
  onPoweroff: 'destroy',
  onReboot: 'restart',
  onCrash: 'destroy',
  /** Host page cache off: a crashed host cannot lose writes the guest believed were on disk. */
  diskCache: 'none',
  diskDriver: 'qemu',
  rngBackend: '/dev/urandom',
  memballoonModel: 'virtio',
  /** Keep the whole console history across reboots of the same domain. */
  serialLogAppend: 'on',
  /**
   * On q35 every hot-plugged device needs a free PCIe root port, and libvirt adds only
   * one spare beyond the devices a domain starts with: a second live attach_disk failed
   * with "No more available PCI slots". This many empty ports are declared on top of
   * the ports the domain's own devices take. (`pc` hot-plugs into the 32 slots of its
   * PCI bus and needs nothing.)
   */
  q35HotplugPorts: 8,
  /** Devices besides disks and NICs that take a root port on q35: rng, balloon, USB controller. */
  q35OtherPciDevices: 3,
} as const;

export const LXC_DOMAIN_DEFAULTS = {
  /** libvirt's LXC driver runs an executable as the container's first process. */
  osType: 'exe',
  arch: 'x86_64',
  /**
   * An init that exits ends the container: BOSH recreates a VM that powered itself off,
   * and a reboot of the container (SIGINT to init, or reboot_vm) starts it again.
   */
  onPoweroff: 'destroy',
  onReboot: 'restart',
  onCrash: 'destroy',
  /** `virsh console` for people debugging a container; nothing reads it otherwise. */
  consoleType: 'pty',
} as const;

export const NETWORK_DEFAULTS = {
  /** Guests come up immediately: no STP listening/learning delay on the bridge. */
  bridgeStp: 'on',
  bridgeDelay: '0',
} as const;

export const VOLUME_DEFAULTS = {
  type: 'file',
  unit: 'bytes',
} as const;
