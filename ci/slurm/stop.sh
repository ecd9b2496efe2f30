#!/usr/bin/env bash
# Stop the one-node Slurm that ci/slurm/start.sh started, each daemon by the pid in its pid file, and wait
# until they are gone. Safe to run when nothing is running.
set -euo pipefail

stop_daemon() {  # stop_daemon PIDFILE NAME
  local pid i
  pid="$(cat "$1" 2>/dev/null)" || return 0
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$2" ]; then
    rm -f "$1"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 150); do
    [ -d "/proc/$pid" ] || { rm -f "$1"; return 0; }
    sleep 0.1
  done
  echo "ci/slurm/stop.sh: $2 ($pid) ignored SIGTERM for 15 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

stop_daemon /run/slurm/slurmd.pid slurmd
stop_daemon /run/slurm/slurmctld.pid slurmctld
stop_daemon /run/slurm/slurmdbd.pid slurmdbd
stop_daemon /run/mysqld/mysqld.pid mariadbd
stop_daemon /run/munge/munged.pid munged
