#!/usr/bin/env bash
# A libvirtd whose vbox driver runs over the SIMULATED VirtualBox of fixtures/vbox-sim
# (libvirt's real vbox driver, never a real VirtualBox): for tests of the VirtualBox
# backend on machines where VirtualBox cannot be installed. Like
# scripts/second-libvirtd.sh it runs in its own mount namespace in which /run/libvirt,
# /var/lib/libvirt, /var/cache/libvirt, /etc/libvirt and /var/log/libvirt are private
# directories under $VBOX_LIBVIRTD_DIR, so it has its own socket, pid file, domains,
# pools and networks, and never touches the system daemon or the second one.
#
#   scripts/vbox-host.sh start|stop|status|uri
#
# start builds the simulation when needed (fixtures/vbox-sim/build.sh into $D/vbox-sim)
# and starts the daemon with VBOX_APP_HOME=$D/vbox-sim, where libvirt's vbox driver
# loads VBoxXPCOMC.so at daemon start. The simulated VirtualBox writes its state to
# $D/vbox-sim/state.json (VBOX_SIM_STATE) after every change and reads it back when the
# daemon starts, so machines, media and networks survive a restart (as with VBoxSVC);
# remove that file while the daemon is stopped to begin anew.
# start and stop are idempotent. Reach it at `vbox:///session?socket=$D/run/libvirt-sock`.
# The daemon logs the vbox driver (and the simulation's "not implemented" notes) to
# $D/log/libvirtd.log.
set -euo pipefail
. "$(dirname "$0")/reaper.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

D=${VBOX_LIBVIRTD_DIR:-/var/lib/bosh-cpi-vbox-libvirtd}
SOCK=$D/run/libvirt-sock
URI="vbox:///session?socket=$SOCK"
SIM=$D/vbox-sim
# vboxnet0 gets no DHCP server here (VirtualBox creates one with the interface): libvirt
# 9.0's net-dumpxml fails on a host-only network that has one ("Cannot convert socket
# address to string"), and BOSH gives its VMs static addresses. VBOX_SIM_DHCP=
# "server,lower,upper" (e.g. 198.18.240.2,198.18.240.100,198.18.240.199) adds one.
VBOX_SIM_DHCP=${VBOX_SIM_DHCP:-none}

log() { printf '[vbox-host] %s\n' "$*" >&2; }

running() { pid_alive "$D/libvirtd.pid" libvirtd && [ -S "$SOCK" ]; }

# The private /etc/libvirt: the system daemon's settings files, but none of its domains,
# networks, pools or secrets (empty qemu/, storage/, networks/ here), so this daemon
# autostarts nothing of the others'. Its libvirtd.conf adds a log file for the vbox driver.
prepare_dirs() {
  mkdir -p "$D"/run "$D"/lib "$D"/cache "$D"/log "$D"/etc/qemu "$D"/etc/storage "$D"/etc/networks
  if [ ! -f "$D/etc/.copied" ]; then
    cp -a /etc/libvirt/*.conf "$D/etc/"
    [ -d /etc/libvirt/nwfilter ] && cp -a /etc/libvirt/nwfilter "$D/etc/"
    {
      echo
      echo '# scripts/vbox-host.sh: the vbox driver and the simulated VirtualBox, in a log file'
      echo 'log_filters="1:vbox 3:*"'
      echo "log_outputs=\"1:file:$D/log/libvirtd.log\""
    } >> "$D/etc/libvirtd.conf"
    touch "$D/etc/.copied"
  fi
}

inner_script() {
  cat <<EOF2
set -e
mount --bind '$D/run' /run/libvirt
mount --bind '$D/lib' /var/lib/libvirt
mount --bind '$D/cache' /var/cache/libvirt
mount --bind '$D/etc' /etc/libvirt
mount --bind '$D/log' /var/log/libvirt
rm -f '$SOCK' '$D/run/libvirt-sock-ro' '$D/run/libvirt-admin-sock'
# libvirt 9.0 loads VBoxXPCOMC.so from VBOX_APP_HOME but then goes on searching (its
# VBoxCGlueInit does not return after that success) and succeeds only if it also finds
# the library in a known VirtualBox directory or on the linker's search path: hence
# LD_LIBRARY_PATH, which holds nothing but the simulation.
export VBOX_APP_HOME='$SIM' VBOX_SIM_STATE='$SIM/state.json' LD_LIBRARY_PATH='$SIM'
export VBOX_SIM_DHCP='$VBOX_SIM_DHCP'
exec libvirtd "\$@" -p '$D/libvirtd.pid'
EOF2
}

# What the daemon's vbox driver says: the hypervisor line of `virsh version`.
driver_version() { virsh -q -c "$URI" version 2>/dev/null | grep -i 'hypervisor' || true; }

start() {
  if [ "$(id -u)" != 0 ]; then echo "run as root (it starts a libvirtd)" >&2; exit 1; fi
  if [ ! -f /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_vbox.so ]; then
    log "installing libvirt's vbox driver (Debian package libvirt-daemon-driver-vbox)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvirt-daemon-driver-vbox >/dev/null
  fi
  local reaps=true; pid1_reaps || reaps=false
  if ! $reaps && running && ! under_subreaper "$(cat "$D/libvirtd.pid")"; then
    log "PID 1 ($(cat /proc/1/comm)) does not reap orphans promptly: restarting the vbox libvirtd under tini -s"
    stop
  fi
  mkdir -p "$D"
  chmod 0711 "$D"
  local before; before=$(cat "$SIM/.build-hash" 2>/dev/null || true)
  "$ROOT/fixtures/vbox-sim/build.sh" "$SIM" >/dev/null
  if running && [ "$before" != "$(cat "$SIM/.build-hash")" ]; then
    log "the simulation was rebuilt: restarting the vbox libvirtd to load it"
    stop
  fi
  if ! running; then
    prepare_dirs
    local launch=(unshare -m --propagation private sh -c "$(inner_script)" sh)
    if $reaps; then
      log "starting libvirtd over the simulated VirtualBox in a private mount namespace ($D)"
      "${launch[@]}" -d
    else
      log "starting libvirtd over the simulated VirtualBox under tini -s in a private mount namespace ($D)"
      setsid tini -s -- "${launch[@]}" </dev/null >>"$D/log/stderr.log" 2>&1 &
    fi
    for _ in $(seq 1 100); do running && break; sleep 0.1; done
    running || { echo "the vbox libvirtd did not create $SOCK within 10 s (see $D/log)" >&2; exit 1; }
  fi
  local v=""
  for _ in $(seq 1 100); do v=$(driver_version); [ -n "$v" ] && break; sleep 0.1; done
  if [ -z "$v" ]; then
    echo "the vbox libvirtd runs but its vbox driver did not initialise: $(virsh -q -c "$URI" version 2>&1 | tail -1) (see $D/log/libvirtd.log)" >&2
    exit 1
  fi
  log "up: $URI ($v)"
}

stop() {
  if pid_alive "$D/libvirtd.pid" libvirtd; then
    local pid; pid=$(cat "$D/libvirtd.pid")
    log "stopping libvirtd $pid"
    kill "$pid"
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then echo "libvirtd $pid did not stop within 10 s" >&2; exit 1; fi
  fi
  rm -f "$SOCK"
}

status() {
  if ! running; then echo "stopped"; exit 3; fi
  local v; v=$(driver_version)
  if [ -n "$v" ]; then
    # (libvirt 9.0 reports no real VirtualBox version: fixtures/vbox-sim/README.md)
    local simver; simver=$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$SIM/state.json" 2>/dev/null | head -1)
    echo "running: $URI (vbox driver initialised: virsh says \"${v#*: }\"; simulated VirtualBox ${simver:-?})"
  else
    echo "running: $URI, but the vbox driver did not initialise: $(virsh -q -c "$URI" version 2>&1 | tail -1)"
    exit 4
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  uri) echo "$URI" ;;
  *) echo "usage: $0 start|stop|status|uri" >&2; exit 2 ;;
esac
