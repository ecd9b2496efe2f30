"""Whether the process that recorded a run is still alive: the owner a stored run keeps, and the check.

A run records its owner when it begins (and again when a resume takes it over): the host name, the PID
and the process's *start token* — the kernel's boot id and the process's start time (``/proc/PID/stat``
field 22) — so a PID the kernel has since given to another process does not pass for the run's. A
SIGKILLed run never writes its end; :func:`owner_state` tells it apart from one still measuring:

* ``running``: the owner is this host's live process with the same start token;
* ``interrupted``: it ran on this host and that process is gone (killed, crashed, the machine rebooted);
* ``unknown``: it ran on another host (or recorded no owner): nothing here can tell.

Chosen over a heartbeat: a cell may take minutes (``--max-time``), so no heartbeat age proves a run dead,
while a process that is gone is gone at once.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

RUNNING, INTERRUPTED, UNKNOWN = "running", "interrupted", "unknown"


@dataclass(frozen=True)
class Owner:
    """The process that writes a run."""

    host: str
    pid: int
    token: str  # "<boot id>:<start time in clock ticks>"; "" where /proc is not available


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def start_token(pid: int) -> str:
    """``<boot id>:<start time>`` of process ``pid`` ('' when it does not exist or /proc cannot say)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    stat = _read(f"/proc/{pid}/stat")
    if boot is None or stat is None:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": the command name may hold spaces
    return f"{boot.strip()}:{fields[19]}" if len(fields) > 19 else ""


def this_process() -> Owner:
    return Owner(socket.gethostname(), os.getpid(), start_token(os.getpid()))


def owner_state(host: str | None, pid: int | None, token: str | None) -> str:
    """``running``, ``interrupted`` or ``unknown`` for a run whose end was never recorded."""
    if not host or not pid or host != socket.gethostname():
        return UNKNOWN
    if token:
        return RUNNING if start_token(pid) == token else INTERRUPTED
    try:  # no /proc where it was recorded: the PID alone (may be reused: then it reads as running)
        os.kill(pid, 0)
    except ProcessLookupError:
        return INTERRUPTED
    except OSError:
        return RUNNING  # exists, owned by another user
    return RUNNING
