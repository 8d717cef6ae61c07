# Sourced by scripts/setup-host.sh, scripts/second-libvirtd.sh and scripts/vbox-host.sh (bash).
#
# libvirt runs QEMU daemonized, its capability probes as well as every guest: the QEMU
# process is orphaned at once and adopted by the nearest child subreaper among its
# ancestors, or else by PID 1, and when it exits only that adopter can reap it. An init
# reaps at once. The PID 1 of many containers and sandboxes does not, or only now and
# then; libvirtd waits for each exited QEMU to disappear, so every capability probe and
# every guest stop stalls while the zombie stays (a define after the capability cache is
# invalidated took minutes on such a host). There the daemons run in the foreground
# under `tini -s` (Debian package tini), a child subreaper that reaps QEMU's orphans at
# once (docs/multi-host.md, "Hosts whose PID 1 does not reap").

# Succeeds when PID 1 reaps an orphan promptly. Tried, not guessed from PID 1's name: a
# short-lived process is orphaned; a zombie of PID 1 that stays for half a second answers
# no (that zombie is left to PID 1). Under a subreaper of the caller the orphan is not
# PID 1's, which leaves the question open: answered no, since a subreaper does no harm.
pid1_reaps() {
  local pid stat zombie=0
  pid=$(sh -c 'sleep 0.1 </dev/null >/dev/null 2>&1 & echo $!')
  for _ in $(seq 1 40); do
    sleep 0.05
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0 # gone: reaped
    # "pid (comm) state ppid …", comm being "sleep"
    set -- $stat
    [ "$4" = 1 ] || return 1
    if [ "$3" = Z ]; then zombie=$((zombie + 1)); [ $zombie -lt 10 ] || return 1; fi
  done
  return 1
}

# Succeeds when the process runs under tini (its parent), the subreaper these scripts use.
under_subreaper() { # pid
  local ppid
  ppid=$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null) || return 1
  case "$(cat "/proc/$ppid/comm" 2>/dev/null)" in tini | tini-static) return 0 ;; esac
  return 1
}

# Succeeds when the pid file names a live process of that name (the daemons' own pid
# files outlive them; a stale one may name another process by now).
pid_alive() { # pidfile name
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
