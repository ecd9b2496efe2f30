"""Where results go: output locations checked before anything is measured, and owned by one run at a time.

* :func:`check_writable_file` / :func:`check_writable_dir` raise a one-line :class:`UsageError` naming the
  path and the reason (a parent that is a file, a folder where a file is expected or the reverse, no
  permission, a read-only file system, a device or a kernel file where a file is expected, a name or path
  longer than the system allows: :mod:`archbench.locations`) without creating anything but a probe file,
  removed at once;
* :func:`owned_file` / :func:`owned_dir` hold an advisory ``fcntl.flock`` lock (a lock file holding the
  owner's PID) for the run's duration, so a second run into the same CSV or report folder is refused
  before it measures anything. The lock file is removed on release, and so is a folder the run created
  and left empty.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.locations import (
    SIBLING_NAME_ROOM,
    create_problem,
    existing_file_problem,
    make_dirs,
    nearest_existing,
    os_reason,
    shape_problem,
)

DIR_LOCK_NAME = ".archbench.lock"


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path whose parents do not)."""
    return nearest_existing(path)


def _writable_reason(folder: Path) -> str | None:
    """Why files cannot be created in the existing ``folder``, or None (:func:`archbench.locations.create_problem`)."""
    return create_problem(folder)


def _check_shape(path: Path, what: str, sibling_room: int) -> None:
    reason = shape_problem(path, sibling_room=sibling_room)
    if reason:
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: {reason}.")


def _check_can_create(path: Path, what: str) -> None:
    ancestor = _nearest_existing(path.parent)
    reason = _writable_reason(ancestor)
    if reason:
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: {reason}.")


def check_writable_file(path: str | Path, what: str = "results to") -> Path:
    """``path`` can be written as a file: a name this system can hold, not a folder, not a device or kernel
    file, and it (if it exists) or the folder it would be created in takes writes."""
    path = Path(path)
    _check_shape(path, what, SIBLING_NAME_ROOM)
    if path.is_dir():
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: it is a folder; give a file name such as "
                         f"{quoted(path / 'results.csv', PATH_ECHO_LIMIT)}.")
    if _nearest_existing(path) == path and (reason := existing_file_problem(path)):
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: {reason}.")
    _check_can_create(path, what)  # lock and sidecar files go beside it too
    return path


def check_writable_dir(path: str | Path, what: str = "the report to") -> Path:
    """``path`` can hold files: it is a writable folder, or can be created as one."""
    path = Path(path)
    _check_shape(path, what, 0)
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: it is a file, not a folder.")
        reason = _writable_reason(path) if path.is_dir() else _writable_reason(_nearest_existing(path))
    except OSError as exc:  # a name longer than the file system allows, a path it cannot look up
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: {exc.strerror} "
                         f"(errno {exc.errno}, {errno.errorcode.get(exc.errno, '?')}).") from None
    if reason:
        raise UsageError(f"cannot write {what} {quoted(path, PATH_ECHO_LIMIT)}: {reason}.")
    return path


# --------------------------------------------------------------------------------------------- locks


def lock_path_for_file(path: Path) -> Path:
    """The lock of a results file: ``FILE.csv.lock`` beside it."""
    return path.with_name(path.name + ".lock")


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def _locked(lock_path: Path, owned: Path) -> Iterator[None]:
    """Hold ``lock_path`` (created if needed, the PID written in it) or raise :class:`UsageError`."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # checked before, so rare: the folder changed, or its disk is full
            raise UsageError(f"cannot create the lock file {quoted(lock_path, PATH_ECHO_LIMIT)} of {quoted(owned, PATH_ECHO_LIMIT)}: "
                             f"{os_reason(exc)}.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise UsageError(f"{quoted(owned, PATH_ECHO_LIMIT)} is in use by archbench ({_holder(lock_path)}): another run is writing "
                             "there. Wait for it to finish, or choose another output location.") from None
        try:  # the file we locked may have been removed by its previous owner meanwhile: lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # e.g. a full disk: nothing is measured yet
            raise UsageError(f"cannot write the lock file {quoted(lock_path, PATH_ECHO_LIMIT)} of "
                             f"{quoted(owned, PATH_ECHO_LIMIT)}: {os_reason(exc)}.") from exc
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def owned_file(path: str | Path) -> Iterator[Path]:
    """Own the results file ``path`` for the block (its folder is created if needed)."""
    path = Path(path)
    with _created_dirs(path.parent), _locked(lock_path_for_file(path), path):
        yield path


@contextlib.contextmanager
def owned_dir(path: str | Path) -> Iterator[Path]:
    """Own the folder ``path`` for the block (created if needed; removed again if the block leaves it empty)."""
    path = Path(path)
    with _created_dirs(path), _locked(path / DIR_LOCK_NAME, path):
        yield path


@contextlib.contextmanager
def _created_dirs(path: Path) -> Iterator[None]:
    """Create ``path`` and its missing parents; afterwards remove those this call created and that are empty."""
    missing = make_dirs(path)  # deepest first
    try:
        yield
    finally:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
