"""Ctrl-C and SIGTERM as one way to stop a run.

SIGTERM is what CI timeouts, ``timeout``, Docker and Slurm send. Under :func:`sigterm_as_interrupt` it
raises :class:`Terminated`, a :class:`KeyboardInterrupt`, in the main thread, so every path that keeps
finished work on Ctrl-C keeps it on SIGTERM too. :func:`interrupts_deferred` holds either signal while a
result is being written, so a row is never half on disk.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM received (raised where SIGINT raises :class:`KeyboardInterrupt`)."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt(on_signal: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (after calling ``on_signal``)."""
    if not _in_main_thread():
        yield
        return

    def raise_terminated(signum, frame) -> None:
        if on_signal is not None:
            on_signal()
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM arriving inside the block and deliver the first one right after it, to the
    handler that was in place (so it raises KeyboardInterrupt / Terminated, or ends the process)."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda s, frame: received.append(s)) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        _deliver(received[0], previous[received[0]])


def _deliver(signum: int, handler) -> None:
    if handler is signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)
    else:  # SIG_DFL (or unknown): what would have happened without the deferral
        signal.raise_signal(signum)


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the coordinator dies (even by SIGKILL), so no worker measures
    on with nobody reading; its finished cells stay in its shard for the run that resumes."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
