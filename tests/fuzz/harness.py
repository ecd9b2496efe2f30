"""What every fuzz case is held to, and the guards that keep a bad case from taking the test run down.

A case is an argv (run in-process through the real CLI) and the exit codes it may end with. Whatever the
input, the run must end with one of them, never with an exception escaping ``main`` (what a user sees as a
traceback), never with traceback or C++ frame text in its output, and a non-zero exit must say why on stderr.
A store it was given must pass ``PRAGMA integrity_check`` afterwards.

The guards: a wall-clock limit per case (SIGALRM raises :class:`CaseHung`, a BaseException that no
``except Exception`` in archbench swallows) and an address-space limit (RLIMIT_AS) a few GB above what the
process maps, so a spec asking for a 10-million-layer network fails to allocate instead of swapping the
shared machine to death. Both are reported as the case's failure.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings

CASE_TIME_LIMIT_S = 60
CASE_MEMORY_HEADROOM = 3 * 2**30
TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Exception raised from ", "frame #0")
LONG_VALUE = 200  # a bad value longer than this must not be echoed back in full

# The long run (`pytest tests/fuzz --hypothesis-profile=long`, profile registered in tests/conftest.py)
# multiplies each strategy's examples; the factor was chosen from the default run's time (~10 minutes).
LONG_FACTOR = 10


def fuzz_settings(examples: int) -> settings:
    """Small by default (the whole fuzzer runs in under a minute), ``LONG_FACTOR`` times more under the
    ``long`` profile. No deadline: a case runs the real CLI, and its time depends on the machine's load."""
    scale = LONG_FACTOR if settings.get_current_profile_name() == "long" else 1
    # The default run is a gate in CI: the same cases every time (derandomized); the long profile explores.
    return settings(max_examples=examples * scale, deadline=None, print_blob=True, derandomize=scale == 1,
                    database=None if scale == 1 else settings.default.database,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


class CaseHung(BaseException):
    """The case ran past :data:`CASE_TIME_LIMIT_S` (an unbounded loop or build)."""


@dataclass
class Expect:
    """What a case may end with. ``names``: text the message must contain (the file at fault, say);
    ``store``: a SQLite file that must pass ``PRAGMA integrity_check`` afterwards; ``long_values``:
    values that must not come back in full."""

    exits: frozenset[int]
    why: str
    names: tuple[str, ...] = ()
    store: Path | None = None
    long_values: tuple[str, ...] = field(default=())
    warns: bool = False  # the message naming ``names`` is required even when the run goes on (exit 0)


@dataclass
class Outcome:
    exit_code: int | None
    stdout: str
    stderr: str
    escaped: BaseException | None = None


def run_guarded(run: Callable[..., object], argv: list[str]) -> Outcome:
    """Run ``run(*argv)`` (the ``cli`` fixture) under the time and memory guards; an exception escaping the
    CLI is caught and kept (it is what a user would see as a traceback)."""
    _map_libraries_first()
    threads = _torch_threads()
    try:
        with _time_limit(CASE_TIME_LIMIT_S), _memory_limit(CASE_MEMORY_HEADROOM):
            result = run(*argv)
        return Outcome(result.exit_code, result.stdout, result.stderr)
    except KeyboardInterrupt:  # Ctrl-C on the test run itself
        raise
    except BaseException as exc:  # noqa: BLE001 - what escapes main (user code's BaseException too) is reported
        return Outcome(None, "", "", exc)
    finally:
        _restore_torch_threads(threads)


def problems_of(outcome: Outcome, expect: Expect) -> list[str]:
    """Every way the outcome breaks the contract (empty: it holds)."""
    if outcome.escaped is not None:
        exc = outcome.escaped
        return [f"{type(exc).__name__} escaped the CLI (a traceback for the user): {str(exc)[:300]}"]
    found = []
    output = outcome.stdout + outcome.stderr
    if outcome.exit_code not in expect.exits:
        found.append(f"exit {outcome.exit_code}, expected one of {sorted(expect.exits)} ({expect.why})")
    if marker := next((m for m in TRACEBACK_MARKERS if m in output), None):
        found.append(f"traceback text in the output ({marker!r})")
    if outcome.exit_code != 0 and not outcome.stderr.strip():
        found.append("a non-zero exit without a message on stderr")
    if outcome.exit_code != 0 or expect.warns:
        found += [f"the message does not name {name!r}" for name in expect.names if name not in outcome.stderr]
    found += [f"a {len(v)}-character value is echoed in full" for v in expect.long_values if v in output]
    if expect.store is not None:
        found += _store_problems(expect.store)
    return found


def check_case(run: Callable[..., object], argv: list[str], expect: Expect) -> None:
    """Run the case and fail with a reproducer and every problem found."""
    outcome = run_guarded(run, argv)
    found = problems_of(outcome, expect)
    assert not found, describe(argv, outcome, found)


@dataclass
class Case:
    """One generated case: files to put in a fresh folder (``copies`` first, then ``files``; names relative
    to it), SQL to run on a copied store, and the argv to run there ("{dir}" stands for the folder)."""

    argv: list[str]
    exits: frozenset[int]
    why: str
    files: dict[str, bytes] = field(default_factory=dict)
    copies: dict[str, Path] = field(default_factory=dict)
    sql: list[tuple[str, tuple]] = field(default_factory=list)
    store: str | None = None
    names: tuple[str, ...] = ()
    long_values: tuple[str, ...] = ()
    warns: bool = False

    def __repr__(self) -> str:
        files = ", ".join(f"{name}: {len(data)} bytes" for name, data in self.files.items())
        sql = "; ".join(f"{statement} {params!r}"[:160] for statement, params in self.sql)
        return (f"Case(archbench {' '.join(_shell_word(a) for a in self.argv)} -> exit in {sorted(self.exits)}: "
                f"{self.why}{' | files ' + files if files else ''}{' | sql ' + sql if sql else ''})")

    def materialize(self, folder: Path) -> tuple[list[str], Expect]:
        for name, source in self.copies.items():
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
        for name, data in self.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        if self.sql:
            _run_sql(folder / self.store, self.sql)
        argv = [a.replace("{dir}", str(folder)) for a in self.argv]
        store = folder / self.store if self.store else None
        return argv, Expect(self.exits, self.why, self.names, store, self.long_values, self.warns)


def run_case(run: Callable[..., object], case: Case, parent: Path) -> None:
    """Materialize ``case`` in a fresh folder under ``parent`` and check it, with that folder as the
    working directory (user model files are named relative to it)."""
    folder = Path(tempfile.mkdtemp(dir=parent))
    argv, expect = case.materialize(folder)
    with contextlib.chdir(folder):
        check_case(run, argv, expect)


def _run_sql(path: Path, statements: list[tuple[str, tuple]]) -> None:
    """Apply the mutation; a statement the schema refuses (a NOT NULL column set to NULL) is skipped."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        for statement, params in statements:
            try:
                db.execute(statement, params)
                db.commit()
            except sqlite3.Error:
                db.rollback()


def describe(argv: list[str], outcome: Outcome, found: list[str]) -> str:
    shown = " ".join(_shell_word(a) for a in argv)
    tail = "\n".join(outcome.stderr.strip().splitlines()[-8:])
    return f"archbench {shown}\n  " + "\n  ".join(found) + f"\n--- stderr (tail):\n{tail[-1500:]}"


def _shell_word(arg: str) -> str:
    text = arg if len(arg) <= 120 else arg[:100] + f"…<{len(arg)} chars>"
    return text if text and all(c.isalnum() or c in "-_./:=,+@~" for c in text) else repr(text)


def _store_problems(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return [f"the store {path.name} no longer opens: {exc}"]
    return [] if verdict == "ok" else [f"PRAGMA integrity_check of {path.name}: {verdict}"]


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def hung(signum, frame):
        raise CaseHung(f"no result after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _memory_limit(headroom: int) -> Iterator[None]:
    """RLIMIT_AS at what the process maps now plus ``headroom``: an allocation beyond fails at once (as a
    MemoryError or torch's "can't allocate memory") instead of exhausting the shared machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _map_libraries_first() -> None:
    """torch's CUDA build maps several GB when imported: import it before the memory limit is measured, or
    the first case to import it would fail to (and leave a half-imported torch to every case after it)."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401


def _mapped_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_torch_threads(threads: int | None) -> None:
    """A case that sets torch's thread count (``--threads``) must not change the cases after it."""
    torch = sys.modules.get("torch")
    if threads is not None and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
