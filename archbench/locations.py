"""Whether a path can be a place to write results, asked of the system before anything is written (stdlib only).

One set of checks for every output location (a results CSV, a report folder, the results store), each
returning why not in words, or None:

* :func:`shape_problem`: the path itself — a NUL byte, longer than the system allows (``PATH_MAX``), a
  name longer than its file system allows (``NAME_MAX``, with room for the files archbench keeps beside a
  results file: ``FILE.csv.lock``, ``FILE.env.json``, temporary files);
* :func:`kernel_fs` / :func:`create_problem`: where it lives — a kernel file system (``/proc``, ``/sys``:
  files there are kernel settings, not storage), or a folder that does not take a new file (a real probe:
  a file is created and removed, which also catches what permission bits do not say: a read-only mount,
  a root-owned pseudo folder, a full inode table);
* :func:`nearest_existing`: the folder a path's missing folders would be created in, found without
  tripping over a name too long or a folder that cannot be searched.

:func:`make_dirs` creates missing folders one level at a time (``Path.mkdir(parents=True)`` recurses once
per missing level, so a path thousands of folders deep raised ``RecursionError``).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from archbench.errors import PATH_ECHO_LIMIT, quoted

# Room for the longest name archbench derives from a results file's name (".{name}.tmp", "{name}.env.json",
# "{name}.lock", atomic writes' temporary names): a name that fits but whose sidecar does not would fail
# halfway through a run.
SIBLING_NAME_ROOM = 16
KERNEL_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs", "bpf", "pstore",
    "efivarfs", "devpts", "mqueue", "fusectl", "binfmt_misc", "nsfs", "autofs", "rpc_pipefs", "selinuxfs",
})
_FALLBACK_PATH_MAX = 4096
_FALLBACK_NAME_MAX = 255

# The files of a report folder.
CSV_NAME = "results.csv"
JSON_NAME = "results.json"
MARKDOWN_NAME = "report.md"
LATEX_NAME = "report.tex"


def _limit(path: Path, name: str, fallback: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError):
        return fallback
    return value if value and value > 0 else fallback


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path none of whose parents do).
    A name that cannot be looked up (too long, below a file, in a folder that cannot be searched) counts
    as missing: the answer is where the look-up stops."""
    for candidate in (path, *path.parents):
        try:
            os.lstat(candidate)
        except (OSError, ValueError):
            continue
        return candidate
    return Path(".")


def shape_problem(path: Path, *, sibling_room: int = 0) -> str | None:
    """Why ``path`` cannot name a file or folder on this system, or None. ``sibling_room``: bytes the last
    name must leave free for names archbench derives from it."""
    text = str(path)
    if "\x00" in text:
        return "the path contains a NUL character"
    where = nearest_existing(path)
    path_max = _limit(where, "PC_PATH_MAX", _FALLBACK_PATH_MAX)
    length = len(os.fsencode(os.path.abspath(text)))
    if length >= path_max:
        depth = len(Path(os.path.abspath(text)).parts) - 1
        return (f"the path is {length:,} bytes long ({depth:,} folders deep); this system allows paths of at most "
                f"{path_max - 1:,} bytes")
    name_max = _limit(where, "PC_NAME_MAX", _FALLBACK_NAME_MAX)
    parts = path.parts
    for index, part in enumerate(parts):
        size = len(os.fsencode(part))
        room = sibling_room if index == len(parts) - 1 else 0
        if size + room > name_max:
            shown = part if len(part) <= 40 else f"{part[:40]}…"
            beside = f" (archbench keeps files named after it beside it: {room} more)" if room else ""
            return (f"the name '{shown}' is {size:,} bytes long; this file system allows names of at most "
                    f"{name_max - room:,} bytes here{beside}")
    return None


def _unescape_mount(field: str) -> str:
    """A mount point as /proc/self/mounts writes it (space, tab, newline and backslash as octal escapes)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def file_system_type(path: Path) -> str | None:
    """The type of the file system ``path`` (which exists) is on, from ``/proc/self/mounts``; None when unknown."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    best, kind = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def kernel_fs(path: Path) -> str | None:
    """The kernel file system (``proc``, ``sysfs``...) the existing ``path`` is on, or None."""
    kind = file_system_type(path)
    return kind if kind in KERNEL_FILE_SYSTEMS else None


def os_reason(exc: OSError) -> str:
    """An OSError in words, with its errno: ``No space left on device (errno 28, ENOSPC)``."""
    name = errno.errorcode.get(exc.errno or 0)
    code = f" (errno {exc.errno}, {name})" if name else ""
    return f"{exc.strerror or exc}{code}"


def _refusal(folder: Path, code: int | None) -> str | None:
    """A write refused by the file system (``EROFS``) or the permissions, in words; None for another error."""
    if code == errno.EROFS:
        return f"{quoted(folder, PATH_ECHO_LIMIT)} is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"{quoted(folder, PATH_ECHO_LIMIT)} is not writable (permission denied)"
    return None


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be written (a read-only file system, no permission), or None; creates nothing."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return _refusal(folder, errno.EROFS)
    except OSError:
        return None
    return None if os.access(folder, os.W_OK | os.X_OK) else _refusal(folder, errno.EACCES)


def brief_os_reason(exc: OSError) -> str:
    """An OSError in a few words: ``read-only file system``, ``permission denied``, else the OS's own."""
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def create_problem(folder: Path) -> str | None:
    """Why no file can be created in the existing ``folder``, or None. Creates and removes a probe file."""
    try:
        if not stat.S_ISDIR(os.stat(folder).st_mode):
            return f"{quoted(folder, PATH_ECHO_LIMIT)} is a file, not a folder"
    except OSError as exc:
        return f"{quoted(folder, PATH_ECHO_LIMIT)} cannot be looked into: {os_reason(exc)}"
    if (kind := kernel_fs(folder)) is not None:
        return f"{quoted(folder, PATH_ECHO_LIMIT)} is on the kernel's {kind} file system, which holds no files of its own"
    try:
        fd, probe = tempfile.mkstemp(prefix=".archbench-probe-", dir=folder)
    except OSError as exc:
        return _refusal(folder, exc.errno) or f"no file can be created in {quoted(folder, PATH_ECHO_LIMIT)}: {os_reason(exc)}"
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def existing_file_problem(path: Path, *, try_open: bool = True) -> str | None:
    """Why the existing ``path`` cannot be a results file appended to, or None: it must be a regular file
    on a file system that holds files, and (``try_open``) open for appending (opened and closed; nothing is
    written)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"it cannot be looked up: {os_reason(exc)}"
    if stat.S_ISDIR(mode):
        return None  # the caller says what a folder means for it
    if not stat.S_ISREG(mode):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        return f"it is {kind}, not a regular file: results are appended to a file and read back to resume"
    if (kind := kernel_fs(path)) is not None:
        return f"it is a file of the kernel's {kind} file system (a kernel setting, not storage)"
    if not try_open:
        return None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "the file is not writable"
        if exc.errno == errno.EROFS:
            return "it is on a read-only file system"
        return f"it cannot be opened for writing: {os_reason(exc)}"
    return None


def make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents, shallowest first, without recursion; returns those created
    (deepest first)."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        created.append(folder)
    return created[::-1]
