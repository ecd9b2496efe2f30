"""Files, written and read: atomic writes (a temporary file in the destination's folder, flushed, then
``os.replace``d over the destination, so a reader or a crash never sees half a report), and reads with every
way reading can fail said the same way (missing, unreadable, not UTF-8, not JSON, nested too deeply)."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from archbench.errors import ArchbenchError, UsageError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error it replaces ``path``
    (for writers that want a file name, e.g. matplotlib's ``savefig``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; a report is an ordinary file
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: NaN and infinities as null (JSON has neither), tuples as lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ reading


def read_text_file(path: str | Path, what: str, error: type[ArchbenchError] = UsageError) -> str:
    """The text of ``path`` (UTF-8); ``error`` names the file and why it cannot be read as text."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start:,}): expected {what}.") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder: expected {what}.") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc}): expected {what}.") from None


def read_json_file(path: str | Path, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    """The JSON value in ``path``; ``error`` names the file and why it is not readable JSON."""
    return parse_json(read_text_file(path, what, error), str(path), what, error)


def parse_json(content: str, where: str, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc}): expected {what}.") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply for Python's JSON parser: expected {what}.") from None
    return check_nesting(value, where, what, error)


MAX_NESTING = 32  # levels of lists/tables in a file archbench reads; its own files nest 5 at most


def check_nesting(value: Any, where: str, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    """``value`` (parsed JSON or TOML), or ``error`` when its lists and tables nest deeper than
    :data:`MAX_NESTING` — deeper data would overflow Python's stack wherever it is walked (rendered,
    compared, written back), far from the file that held it."""
    level = [(value, 1)]
    while level:
        item, depth = level.pop()
        if depth > MAX_NESTING:
            raise error(f"{where}: nested more than {MAX_NESTING} levels deep: expected {what} (archbench's nest a few "
                        "levels at most).")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        level.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file: its first record (``[]`` when it has none, or the text is not CSV;
    bytes that are not UTF-8 are replaced, so a binary file reads as a header of no known column)."""
    try:
        with Path(path).open(newline="", encoding="utf-8", errors="replace") as fh:
            return next(csv.reader(fh), [])
    except csv.Error:  # e.g. a "field" longer than the csv module's limit
        return []
