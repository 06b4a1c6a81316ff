# shellcheck shell=bash
# Process and data-dir helpers shared by kafka.sh and influx.sh. Source it after defining log().

# Prints the pid in PID_FILE if that process is alive and its command line contains PATTERN
# (a guard against pid reuse).   pid_matching PID_FILE PATTERN
pid_matching() {
  local pid_file="$1" pattern="$2" pid cmdline
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"$pattern"* ]] || return 1
  echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Shows the end of a log file on stderr.   tail_log FILE
tail_log() {
  if [[ -f "$1" ]]; then
    log "last lines of $1:"
    tail -n 40 "$1" >&2 || true
  fi
}

# Sends SIGTERM, waits up to 30 s, then SIGKILL.   terminate PID
terminate() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid still alive after 30 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# Removes DIR only if the owner MARKER file inside says this project created it, unless KEEP is 1.
#   remove_owned_dir DIR KEEP MARKER KEEP_VARIABLE_NAME
remove_owned_dir() {
  local dir="$1" keep="$2" marker="$3" keep_name="$4"
  if [[ "$keep" == 1 ]]; then
    log "keeping data dir $dir ($keep_name=1)"
  elif [[ -f "$marker" ]]; then
    rm -rf -- "$dir"
  elif [[ -e "$dir" ]]; then
    log "not removing $dir: it was not created by this script"
  fi
}

# Installs Debian packages (apt-get update first when one has no candidate yet), as root or with
# sudo. A package's postinst may start its service (influxdb does, on its default port): a
# policy-rc.d that exits 101 keeps invoke-rc.d from it while installing.   apt_install PACKAGE...
apt_install() {
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  local pkg
  for pkg in "$@"; do
    # (not `apt-cache ... | grep -q`: with pipefail, grep's early exit fails the pipe)
    if [[ "$(apt-cache policy "$pkg" 2>/dev/null || true)" != *"Candidate: "[0-9]* ]]; then
      log "apt-get update"
      "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 update -qq >&2
      break
    fi
  done
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from tradeflow scripts/infra/process.sh\nexit 101\n' \
      | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "apt-get install $*"
  local rc=0
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "$@" >&2 || rc=$?
  if ((made_policy)); then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || die "apt-get install $* failed"
  # Nor should it start at boot (postinst enables both the sysv script and the unit).
  if [[ -x /etc/init.d/influxdb ]]; then
    "${sudo[@]}" update-rc.d influxdb disable >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null; then
      "${sudo[@]}" systemctl disable influxdb.service >/dev/null 2>&1 || true
    fi
  fi
}

