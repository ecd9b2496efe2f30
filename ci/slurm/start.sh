#!/usr/bin/env bash
# Start a real one-node Slurm (munged, slurmctld, slurmd) on this Debian machine for archbench's `slurm`
# tests: two partitions, `debug` (default) and `cpu`, on the one node. Runs as root without systemd;
# installs the Debian packages only when they are missing. Safe to run again: whatever is already up is
# left alone, and a run that finds everything up returns at once. ci/slurm/stop.sh stops it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
packages=(munge slurmd slurmctld slurm-client)
conf=/etc/slurm/slurm.conf
run_dir=/run/slurm
logs=(/var/log/munge/munged.log /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log)
wait_s="${SLURM_START_TIMEOUT_S:-60}"

log() { echo "ci/slurm/start.sh: $*" >&2; }

install_missing_packages() {
  local missing=() package
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt-get update -qq
  # policy-rc.d-less containers would start the daemons from the packages' init scripts; we start them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sizes the node from this machine: CPUs this process may run on, 90% of the memory (slurmd drains a node
# that reports less memory than configured).
render_config() {
  local cpus memory_mb
  cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  memory_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  sed -e "s/@HOST@/$(hostname -s)/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY_MB@/$memory_mb/g" \
    "$here/slurm.conf.in"
}

pid_alive() {  # pid_alive PIDFILE NAME: the process in PIDFILE runs and is NAME
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_ready() {  # the node answers and takes jobs (idle, or already running some)
  local state
  state="$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -n1)" || return 1
  case "$state" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

start_munged() {
  munge_works && return
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  local i
  for i in $(seq 50); do munge_works && return; sleep 0.1; done
  log "munged did not answer"
  return 1
}

start_slurm_daemons() {
  install -d -o slurm -g slurm -m 0755 "$run_dir" /var/log/slurm /var/lib/slurm/slurmctld
  install -d -m 0755 /var/lib/slurm/slurmd
  pid_alive "$run_dir/slurmctld.pid" slurmctld || slurmctld
  pid_alive "$run_dir/slurmd.pid" slurmd || slurmd
}

wait_until_ready() {
  local deadline=$((SECONDS + wait_s))
  until node_ready; do
    if [ $SECONDS -ge $deadline ]; then
      log "the node is not up after ${wait_s}s"
      timeout 5 sinfo -N -l >&2 || true
      local file
      for file in "${logs[@]}"; do echo "--- $file" >&2; tail -n 40 "$file" >&2 2>/dev/null || true; done
      return 1
    fi
    sleep 0.2
  done
}

main() {
  [ "$(id -u)" -eq 0 ] || { log "run me as root"; exit 1; }
  install_missing_packages
  local wanted
  wanted="$(render_config)"
  if [ "$wanted" != "$(cat "$conf" 2>/dev/null)" ]; then
    # New or changed configuration: daemons started on an older one must restart to read it.
    "$here/stop.sh"
    printf '%s\n' "$wanted" >"$conf"
    log "wrote $conf"
  fi
  start_munged
  start_slurm_daemons
  wait_until_ready
  log "Slurm is up: $(sinfo -h -o '%P %a %D %T' | tr '\n' ';')"
}

main "$@"
