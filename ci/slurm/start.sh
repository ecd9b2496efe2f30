#!/usr/bin/env bash
# Start a real one-node Slurm on this Debian machine for archbench's `slurm` tests: munged, MariaDB and
# slurmdbd (accounting, so `sacct` answers: submitit reads job states with it), slurmctld and slurmd; two
# partitions, `debug` (default) and `cpu`, on the one node. Runs as root without systemd; installs the
# Debian packages only when they are missing. Safe to run again: what is already up is left alone, and a
# run that finds everything up returns at once. ci/slurm/stop.sh stops it all.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
packages=(munge slurmd slurmctld slurm-client slurmdbd mariadb-server)
logs=(/var/log/munge/munged.log /var/log/mysql/error.log /var/log/slurm/slurmdbd.log
  /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log)
wait_s="${SLURM_START_TIMEOUT_S:-60}"

log() { echo "ci/slurm/start.sh: $*" >&2; }

install_missing_packages() {
  local missing=() package
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  # The packages' install scripts would start the daemons through init scripts (and fail the install,
  # slurm.conf not being there yet): forbid that, as Docker images do, unless the machine already does.
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap "rm -f $policy" EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sizes the node from this machine: the CPUs this process may run on, 90% of the memory (slurmd drains a
# node whose memory is less than configured).
render_slurm_conf() {
  local cpus memory_mb
  cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  memory_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  sed -e "s/@HOST@/$(hostname -s)/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY_MB@/$memory_mb/g" \
    "$here/slurm.conf.in"
}

configs_current() {
  [ "$(render_slurm_conf)" = "$(cat /etc/slurm/slurm.conf 2>/dev/null)" ] &&
    cmp -s "$here/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf
}

write_configs() {
  render_slurm_conf >/etc/slurm/slurm.conf
  # slurmdbd refuses a configuration file that others can read.
  install -o slurm -g slurm -m 0600 "$here/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf
  log "wrote /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf"
}

pid_alive() {  # pid_alive PIDFILE NAME: the process in PIDFILE runs and is NAME
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND for up to wait_s seconds
  local what="$1" deadline=$((SECONDS + wait_s))
  shift
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$what is not up after ${wait_s}s"
      timeout 5 sinfo -N -l >&2 || true
      local file
      for file in "${logs[@]}"; do echo "--- $file" >&2; tail -n 40 "$file" >&2 2>/dev/null || true; done
      return 1
    fi
    sleep 0.1
  done
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
mariadb_works() { mariadb -e 'SELECT 1' >/dev/null 2>&1; }
slurmdbd_works() { timeout 5 sacctmgr -n list cluster >/dev/null 2>&1; }

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
  wait_for munged munge_works
}

start_mariadb() {
  if ! mariadb_works; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    setsid -f /usr/sbin/mariadbd --user=mysql --skip-networking --log-error=/var/log/mysql/error.log \
      </dev/null >/dev/null 2>&1
    wait_for MariaDB mariadb_works
  fi
  # slurmdbd (running as the slurm user) logs in through the socket as the database user `slurm`.
  mariadb -e "CREATE USER IF NOT EXISTS slurm@localhost IDENTIFIED VIA unix_socket;
              GRANT ALL ON slurm_acct_db.* TO slurm@localhost;"
}

start_slurm_daemons() {
  install -d -o slurm -g slurm -m 0755 /run/slurm /var/log/slurm /var/lib/slurm/slurmctld
  install -d -m 0755 /var/lib/slurm/slurmd
  pid_alive /run/slurm/slurmdbd.pid slurmdbd || slurmdbd
  wait_for slurmdbd slurmdbd_works
  pid_alive /run/slurm/slurmctld.pid slurmctld || slurmctld
  pid_alive /run/slurm/slurmd.pid slurmd || slurmd
  wait_for "the node" node_ready
}

main() {
  [ "$(id -u)" -eq 0 ] || { log "run me as root"; exit 1; }
  install_missing_packages
  if ! configs_current; then
    # Daemons started on an older configuration must restart to read the new one.
    "$here/stop.sh"
    write_configs
  fi
  start_munged
  start_mariadb
  start_slurm_daemons
  log "Slurm is up: $(sinfo -h -o '%P %a %D %T' | tr '\n' ' ')"
}

main "$@"
