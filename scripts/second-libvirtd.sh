#!/usr/bin/env bash
# A second, independent libvirtd on this machine, for multi-host tests (docs/multi-host.md):
# its own mount namespace in which /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
# /etc/libvirt and /var/log/libvirt are private directories under $SECOND_LIBVIRTD_DIR, so
# it has its own domains, pools, networks, virtlogd and socket. The first daemon is never
# touched (no signal, no file of its own).
#
#   scripts/second-libvirtd.sh start|stop|status|uri
#
# start and stop are idempotent. stop ends only this daemon (by its pid file); its
# virtlogd keeps running so guests it started keep their console logs, as on a host
# whose libvirtd crashed. Where PID 1 does not reap orphans, the daemon runs under
# `tini -s` (scripts/reaper.sh says why), and start restarts one found without it.
# Reach it at `qemu:///system?socket=$D/run/libvirt-sock`.
# Its isolated network `bosh-cpi` (bridge mh1, 198.18.231.0/24, fd00:231::/64, no
# <forward>, no DHCP/DNS) is what fixtures/config/two-hosts.json uses on that host.
set -euo pipefail
. "$(dirname "$0")/reaper.sh"

D=${SECOND_LIBVIRTD_DIR:-/var/lib/bosh-cpi-second-libvirtd}
SOCK=$D/run/libvirt-sock
URI="qemu:///system?socket=$SOCK"
NET_NAME=bosh-cpi
BRIDGE=mh1

log() { printf '[second-libvirtd] %s\n' "$*" >&2; }

running() { pid_alive "$D/libvirtd.pid" libvirtd && [ -S "$SOCK" ]; }

# The private /etc/libvirt: the daemon settings, hooks and nwfilters of the first daemon,
# but none of its domains, networks, pools or secrets (the second daemon would otherwise
# autostart the first one's pools and networks on shared directories and bridges).
prepare_dirs() {
  mkdir -p "$D"/run "$D"/lib/dnsmasq "$D"/lib/qemu "$D"/cache "$D"/log/qemu "$D"/etc
  if [ ! -f "$D/etc/.copied" ]; then
    cp -a /etc/libvirt/*.conf "$D/etc/"
    for sub in hooks nwfilter; do
      [ -d "/etc/libvirt/$sub" ] && cp -a "/etc/libvirt/$sub" "$D/etc/"
    done
    touch "$D/etc/.copied"
  fi
}

# On a hybrid cgroup host the main daemon runs without the cgroup2 mount so LXC works
# (scripts/setup-host.sh); the second one gets the same view. Arguments go to libvirtd
# (-d, or none when it runs in the foreground under the subreaper).
inner_script() {
  cat <<EOF
set -e
mount --bind '$D/run' /run/libvirt
mount --bind '$D/lib' /var/lib/libvirt
mount --bind '$D/cache' /var/cache/libvirt
mount --bind '$D/etc' /etc/libvirt
mount --bind '$D/log' /var/log/libvirt
if findmnt -n -t cgroup2 /sys/fs/cgroup/unified >/dev/null 2>&1; then umount /sys/fs/cgroup/unified; fi
if ! { [ -f '$D/virtlogd.pid' ] && [ "\$(cat /proc/\$(cat '$D/virtlogd.pid')/comm 2>/dev/null)" = virtlogd ]; }; then
  rm -f '$D/run/virtlogd-sock' '$D/run/virtlogd-admin-sock'
  virtlogd -d -p '$D/virtlogd.pid'
fi
rm -f '$SOCK' '$D/run/libvirt-sock-ro' '$D/run/libvirt-admin-sock'
exec libvirtd "\$@" -p '$D/libvirtd.pid'
EOF
}

ensure_network() {
  local v=(virsh -q -c "$URI")
  if ! "${v[@]}" net-info "$NET_NAME" >/dev/null 2>&1; then
    log "defining the isolated network $NET_NAME on the second daemon ($BRIDGE, 198.18.231.0/24, fd00:231::/64)"
    local xml; xml=$(mktemp)
    cat > "$xml" <<XML
<network>
  <name>$NET_NAME</name>
  <bridge name='$BRIDGE' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='198.18.231.1' prefix='24'/>
  <ip family='ipv6' address='fd00:231::1' prefix='64'/>
</network>
XML
    "${v[@]}" net-define "$xml" >/dev/null
    rm -f "$xml"
  fi
  # (read into a variable: `| grep -q` would end the pipe early and pipefail would call
  # the SIGPIPE a failure)
  local active; active=$("${v[@]}" net-list --name)
  if ! grep -qx "$NET_NAME" <<<"$active"; then
    # The bridge is this daemon's alone; one still there while its network is down was
    # left by an earlier daemon whose state is gone (bridges outlive libvirtd), and
    # would make the start fail with "already in use".
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
      log "removing the stale bridge $BRIDGE left by an earlier second daemon"
      ip link delete "$BRIDGE" type bridge
    fi
    "${v[@]}" net-start "$NET_NAME" >/dev/null
  fi
}

start() {
  if [ "$(id -u)" != 0 ]; then echo "run as root (it starts a libvirtd)" >&2; exit 1; fi
  # Where PID 1 does not reap orphans promptly, the daemon runs under `tini -s` (as the
  # first one does, scripts/setup-host.sh); one running without it is restarted.
  local reaps=true; pid1_reaps || reaps=false
  if ! $reaps && running && ! under_subreaper "$(cat "$D/libvirtd.pid")"; then
    log "PID 1 ($(cat /proc/1/comm)) does not reap orphans promptly: restarting the second libvirtd under tini -s"
    stop
  fi
  # $D/pool holds this host's storage pools (fixtures/config/two-hosts.json puts host-b's
  # bosh-cpi pool there). QEMU runs as libvirt's QEMU user and must reach its disks
  # through $D: others may pass through it (0711) but not list it, and none of the
  # daemon's own directories in it is writable by them.
  mkdir -p "$D/pool"
  chmod 0711 "$D"
  chmod 0755 "$D/pool"
  if ! running; then
    prepare_dirs
    local launch=(unshare -m --propagation private sh -c "$(inner_script)" sh)
    if $reaps; then
      log "starting libvirtd in a private mount namespace ($D)"
      "${launch[@]}" -d
    else
      # (unshare and sh exec, so tini's child is libvirtd itself)
      log "starting libvirtd under tini -s in a private mount namespace ($D)"
      setsid tini -s -- "${launch[@]}" </dev/null >/dev/null 2>&1 &
    fi
    for _ in $(seq 1 100); do running && break; sleep 0.1; done
    running || { echo "the second libvirtd did not create $SOCK within 10 s (see $D/log)" >&2; exit 1; }
  fi
  # The daemon can accept before its drivers are ready: wait for a real answer.
  for _ in $(seq 1 100); do virsh -q -c "$URI" version >/dev/null 2>&1 && break; sleep 0.1; done
  ensure_network
  log "up: $URI"
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

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running: $URI"; else echo "stopped"; exit 3; fi ;;
  uri) echo "$URI" ;;
  *) echo "usage: $0 start|stop|status|uri" >&2; exit 2 ;;
esac
