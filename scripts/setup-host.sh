#!/usr/bin/env bash
# Prepares a Debian 12 host (as root) for the CPI's demo and tests: Debian packages,
# node modules, the build, and running libvirt daemons. Idempotent: every step checks
# first. No init system runs in CI containers, so the daemons are started by hand
# (libvirtd under the subreaper tini where PID 1 does not reap orphans: scripts/reaper.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

APT_PACKAGES=(
  # libvirt and QEMU (TCG works everywhere; KVM when /dev/kvm is usable)
  libvirt-daemon-system libvirt-clients libvirt-daemon-driver-lxc qemu-system-x86 qemu-utils
  dnsmasq-base iproute2 ovmf libxml2-utils
  # transports tested against loopback: ssh (virt-ssh-helper / nc -U) and tcp
  openssh-server openssh-client netcat-openbsd
  # config-drive checks and the test stemcell recipe (no loop devices or mounts needed)
  xorriso genisoimage busybox-static syslinux syslinux-common mtools dosfstools
  # the test stemcell's default kernel (its cloud-kernel variant fetches
  # linux-image-cloud-amd64 with apt-get download into .cache/, installing nothing)
  linux-image-amd64 jq
  # BOSH release template tests render ERB with Ruby
  ruby
  # the hostile-container test builds its racer with gcc -static (libc6-dev has libc.a)
  gcc libc6-dev
  # a subreaper for libvirtd where PID 1 does not reap orphans (see below)
  tini
  # the stemcell around the real BOSH agent (fixtures/real-stemcell) and the Level 1
  # tier, which pings the guests' addresses from the host
  debootstrap e2fsprogs openssl iputils-ping
  # the vbox backend's tests: libvirt's own vbox driver, in a libvirtd of its own over a
  # simulated VirtualBox built from libvirt's Debian source tarball (scripts/vbox-host.sh)
  libvirt-daemon-driver-vbox curl xz-utils
)

if [ "$(id -u)" != 0 ]; then echo "run as root (it installs Debian packages and starts libvirtd)" >&2; exit 1; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# (a node_modules that is a symbolic link is another checkout's, shared with this one:
# npm ci would empty that one and put a directory of its own in the link's place)
if [ -L node_modules ]; then
  log "node_modules links to $(readlink node_modules): left as it is"
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

log "building dist/"
npm run -s build

# The system daemons only: a second libvirtd/virtlogd for multi-host tests
# (scripts/second-libvirtd.sh) runs under the same names with pid files of its own, so
# these go by the system daemons' pid files (/run/<name>.pid), never by name alone.
system_pid() { # name → pid of the system daemon, if it runs
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}
running() { system_pid "$1" >/dev/null; }
stop_system_libvirtd() {
  local pid; pid=$(system_pid libvirtd) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  echo "libvirtd $pid did not stop within 30 s" >&2; exit 1
}

# Where PID 1 does not reap orphans promptly, libvirtd runs under `tini -s`, a child
# subreaper, so the zombies of the QEMU processes it runs daemonized are reaped at once
# (scripts/reaper.sh says why that matters).
. scripts/reaper.sh
if pid1_reaps; then subreaper=(); else subreaper=(tini -s --); fi
libvirtd_has_subreaper() { local pid; pid=$(system_pid libvirtd) && under_subreaper "$pid"; }
# Starts the system libvirtd with the given command in front of it (empty, or the
# mount-namespace wrapper below), under the subreaper when there is one; the daemon
# writes /run/libvirtd.pid itself in the foreground as with -d.
launch_libvirtd() {
  if [ ${#subreaper[@]} -gt 0 ]; then
    setsid "${subreaper[@]}" "$@" libvirtd </dev/null >/dev/null 2>&1 &
  else
    "$@" libvirtd -d
  fi
}

start_daemon() { # name socket
  local name=$1 sock=$2
  if [ -S "$sock" ] && running "$name"; then return 0; fi
  log "starting $name"
  rm -f "$sock"
  "$name" -d
  for _ in $(seq 1 100); do [ -S "$sock" ] && return 0; sleep 0.1; done
  echo "$name did not create $sock within 10 s" >&2; exit 1
}
# The hooks: qemu routes delegated prefixes to VMs (docs/networking.md); lxc mounts each
# container's root filesystem overlay and reuses the qemu hook for routes (docs/lxc.md).
# libvirtd looks for hook files only when it starts (it runs each one afresh on every
# call): a changed hook is replaced in place, a hook the running daemon has not seen
# needs a restart.
restart_libvirtd=false
for hook in qemu lxc; do
  if ! cmp -s "scripts/libvirt-hook-$hook" "/etc/libvirt/hooks/$hook" 2>/dev/null; then
    log "installing /etc/libvirt/hooks/$hook"
    [ -e "/etc/libvirt/hooks/$hook" ] || restart_libvirtd=true
    install -D -m 0755 "scripts/libvirt-hook-$hook" "/etc/libvirt/hooks/$hook"
  fi
done

mkdir -p /var/run/libvirt
# libvirt writes each network's MAC map into its dnsmasq state directory whenever a VM
# joins the network, but creates that directory only when a network with DHCP or DNS
# first starts. The quiet network below has neither, so on a fresh host every VM start
# would fail with "Failed to create file '/var/lib/libvirt/dnsmasq/bosh-cpi0.macs.new'".
install -d -m 0755 /var/lib/libvirt/dnsmasq
start_daemon virtlogd /var/run/libvirt/virtlogd-sock
if $restart_libvirtd && running libvirtd; then
  log "restarting libvirtd so it picks up the new hook"
  stop_system_libvirtd
fi
# libvirt 9.0's LXC driver cannot start a container on a hybrid cgroup host (cgroup v1
# controllers plus a cgroup2 mount at /sys/fs/cgroup/unified): it fails in
# virCgroupV2BindMount. Started in a private mount namespace without that one mount,
# libvirtd sees a pure v1 host; QEMU guests are unaffected (docs/lxc.md). Only on that
# layout: a pure v1 or pure v2 host gets a plain daemon.
hybrid_cgroups() {
  findmnt -n -t cgroup2 /sys/fs/cgroup/unified >/dev/null 2>&1 &&
    findmnt -n -t tmpfs /sys/fs/cgroup >/dev/null 2>&1
}
# A daemon that still has the cgroup2 mount in its namespace is the plain one.
libvirtd_sees_unified() {
  local pid; pid=$(system_pid libvirtd) || true
  [ -n "$pid" ] && grep -q ' /sys/fs/cgroup/unified ' "/proc/$pid/mountinfo" 2>/dev/null
}
if hybrid_cgroups && libvirtd_sees_unified; then
  log "restarting libvirtd in a private mount namespace without /sys/fs/cgroup/unified (for LXC)"
  stop_system_libvirtd
fi
if [ ${#subreaper[@]} -gt 0 ] && running libvirtd && ! libvirtd_has_subreaper; then
  log "PID 1 ($(cat /proc/1/comm)) does not reap orphans promptly: restarting libvirtd under tini -s"
  stop_system_libvirtd
fi
if ! { [ -S /var/run/libvirt/libvirt-sock ] && running libvirtd; }; then
  rm -f /var/run/libvirt/libvirt-sock
  if hybrid_cgroups; then
    log "starting libvirtd${subreaper:+ under tini -s} (private mount namespace, pure cgroup v1 view)"
    # (unshare and sh exec, so the subreaper's child is libvirtd itself)
    launch_libvirtd unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh
  else
    log "starting libvirtd${subreaper:+ under tini -s}"
    launch_libvirtd
  fi
  for _ in $(seq 1 100); do [ -S /var/run/libvirt/libvirt-sock ] && running libvirtd && break; sleep 0.1; done
  { [ -S /var/run/libvirt/libvirt-sock ] && running libvirtd; } ||
    { echo "libvirtd did not create its socket within 10 s (see /var/log/libvirt/libvirtd.log)" >&2; exit 1; }
fi

# Safety net for tests and the demo: addresses in the isolated test ranges that are not
# on a test bridge (or routed to a VM by the prefix hook) are unreachable here, so a
# stray packet fails locally instead of following the host's default route. More
# specific routes (each bridge's subnet, each delegated prefix) still win.
ip route replace unreachable 198.18.0.0/15 2>/dev/null || true
ip -6 route replace unreachable fd00::/8 2>/dev/null || true

# The network fixtures/config/qemu.json (and so the demo) uses: isolated (no <forward>),
# dual stack, no DHCP and no DNS, so libvirt runs no dnsmasq and sends no router
# advertisements (docs/networking.md). Defined once; never libvirt's NAT `default`.
if ! virsh -q -c qemu:///system net-info bosh-cpi >/dev/null 2>&1; then
  log "defining the isolated libvirt network bosh-cpi (198.18.250.0/24, fd00:250::/64)"
  net_xml=$(mktemp)
  cat > "$net_xml" <<'XML'
<network>
  <name>bosh-cpi</name>
  <bridge name='bosh-cpi0' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='198.18.250.1' prefix='24'/>
  <ip family='ipv6' address='fd00:250::1' prefix='64'/>
</network>
XML
  virsh -q -c qemu:///system net-define "$net_xml" >/dev/null
  rm -f "$net_xml"
fi
# (read into a variable: `| grep -q` would end the pipe early and pipefail would call
# the SIGPIPE a failure)
net_info=$(virsh -q -c qemu:///system net-info bosh-cpi)
case "$net_info" in
  *"Active:"*yes*) ;;
  *) virsh -q -c qemu:///system net-start bosh-cpi >/dev/null ;;
esac

virsh -q -c qemu:///system version >/dev/null
log "libvirtd is up: $(virsh -c qemu:///system version 2>/dev/null | grep -i 'running hypervisor' | sed 's/.*: //')"
