"""The CLI's contract under bad input: exit code 2, a short message naming what was wrong, no traceback.

The cases are generated from the Typer app itself — every command, every option and argument — so a new
option is covered the moment it exists: its metavar says what kind of value it takes, and
:data:`MALFORMED` says which values of that kind are malformed. An option with a metavar the table does
not know fails :func:`test_every_option_kind_is_known` until someone says how to break it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main

from archbench.cli import app
from archbench.rows import read_rows_csv
from tests.conftest import REPO, run_subprocess

COMMAND = typer.main.get_command(app)
EXAMPLE_CSV = REPO / "docs" / "example-report" / "results.csv"

# Values no option of that kind accepts. "{dir}" is an existing directory, "{file}" an existing regular
# file, "{under_file}" a path below a regular file (can be neither read nor created).
_NUMBERS = ["", "0", "-1", "1e99", "nan", "inf", "abc", "ü中", ",", "1.5"]
_WORDS = ["", "0", "-1", "1e99", "nan", "abc", "ü中", "{dir}", "{file}"]
MALFORMED: dict[str, list[str]] = {
    "N": _NUMBERS,
    "N[,N...]": _NUMBERS,
    "D": ["", "-1", "1e99", "nan", "abc", "ü中", "1.5"],
    "FRACTION": ["", "0", "-1", "1", "1e99", "nan", "abc", "ü中"],
    "SECONDS": ["", "0", "-1", "1e99", "nan", "inf", "abc", "ü中"],
    "CxHxW": ["", "0", "-1", "1e99", "nan", "abc", "ü中", "3x64", "0x32x32", "3x32x32x3", "3x-1x32"],
    "CxHxW[,...]": ["", "0", "-1", "1e99", "nan", "abc", "ü中", "3x64", "0x32x32", "3x32x32,abc"],
    "DEVICES": _WORDS + ["cuda:x", "cpu,abc"],
    "DEVICE": _WORDS + ["cpu,cuda", "cuda:x"],
    "MODES": _WORDS + ["infer,abc"],
    "DTYPES": _WORDS + ["fp64", "fp32,abc"],
    "BACKENDS": _WORDS + ["tensorrt", "eager,abc", "compile:fast", "export:max-autotune", ","],
    "SOURCE": _WORDS,
    "MODEL": _WORDS,
    "KEY=VALUE": ["", "0", "-1", "abc", "ü中", "=1", "k=", "nosuchkey=1"],
    "FILE|NAME": ["", "0", "abc", "ü中", "{dir}", "{under_file}"],
    "FILE.csv": ["", "{dir}", "{under_file}"],
    "DIR": ["", "{file}", "{under_file}"],
    "RESULTS.csv": ["", "0", "abc", "{dir}", "{file}", "{under_file}"],
    "BASE": ["", "0", "abc", "latest~x", "{dir}", "{file}", "{under_file}"],
    "NEW": ["", "0", "abc", "latest~x", "{dir}", "{file}", "{under_file}"],
    "FILE.db": ["", "{dir}", "{under_file}"],
    "RUN|RESULTS.csv|DIR": ["", "0", "abc", "latest~x", "{dir}", "{file}", "{under_file}"],
    "MODULE:ATTR": _WORDS,
    "RUN": ["", "0", "abc", "latest~x", "{dir}"],
    "UNIT.json": ["", "abc", "{dir}", "{file}", "{under_file}"],
    "local|slurm": _WORDS + ["Slurm", "local,slurm"],
    "N|auto": _NUMBERS + ["auto,1"],
    "NAME": ["", "a b"],
    "FEATURES": ["", "a b"],
    "MINUTES": _NUMBERS,
    "MODE": _WORDS + ["infer,train"],
    "DTYPE": _WORDS + ["fp64", "fp32,bf16"],
    "SIZE": ["", "0", "-1", "1e99", "nan", "abc", "ü中", "8 parsecs", "2**70"],
}
# Kinds whose every value is meaningful text: nothing to break (unknown options and extra arguments are
# still tested for their commands).
FREE_TEXT = {"PATTERN", "TEXT"}

# A valid invocation of each command, cheap to parse; one option or argument at a time is replaced by a
# malformed value. "{out}" is a fresh path in the test's folder.
BASE: dict[str, list[str]] = {
    "list": ["list"],
    "check": ["check", "mnist-cnn"],
    "summary": ["summary", "mnist-cnn"],
    "memory": ["memory", "mnist-cnn", "--batch", "8"],
    "bench": ["bench", "mnist-cnn", "--mode", "infer", "--max-time", "0.05", "--out", "{out}.csv"],
    "compare": ["compare", "mnist-cnn", "resnet-cifar-n5", "--mode", "infer", "--batch", "1", "--max-time", "0.05",
                "--out", "{out}"],
    "report": ["report", str(EXAMPLE_CSV), "--out", "{out}"],
    "diff": ["diff", str(EXAMPLE_CSV), str(EXAMPLE_CSV)],
    "history": ["history", "mnist-cnn", "--db", "{out}.db"],  # no such store: every value is checked before it is read
    "collect": ["collect", "1", "--db", "{out}.db"],  # no such store
    "profile": ["profile", "mnist-cnn", "--min-steps", "1", "--max-steps", "1", "--max-time", "0.05", "--depth", "1",
                "--out", "{out}"],
    "run-cells": ["run-cells", "{file}"],  # not a work unit: only the command line is parsed before it fails
}
# Options that only make sense without the base's models (a study file replaces them).
BASE_FOR_OPTION = {("compare", "--study"): ["compare", "--out", "{out}"]}


def _kind(param) -> str | None:
    if getattr(param, "is_flag", False):
        return "FLAG"
    return param.metavar


def _commands():
    return sorted(COMMAND.commands.items())


def _cases():
    """(command, parameter label, argv template, the text the message must contain)."""
    for name, command in _commands():
        base = BASE[name]
        for param in command.params:
            kind = _kind(param)
            if kind in FREE_TEXT:
                continue
            if kind == "FLAG":
                flag = param.opts[0]
                yield name, flag, [*base, f"{flag}=yes"], flag
                continue
            values = MALFORMED.get(kind, [])
            if param.param_type_name == "argument":
                for value in values:
                    yield name, param.name, _with_argument(base, command, param, value), None
            else:
                option = param.opts[0]
                template = BASE_FOR_OPTION.get((name, option), base)
                for value in values:
                    yield name, option, _with_option(template, option, value), option


def _with_option(base: list[str], option: str, value: str) -> list[str]:
    argv = list(base)
    if option in argv:
        at = argv.index(option)
        del argv[at:at + 2]
    return [*argv, option, value]


def _with_argument(base: list[str], command, param, value: str) -> list[str]:
    """Replace the command's positional argument(s) by ``value`` (options of the base are kept)."""
    options_at = next((i for i, a in enumerate(base) if a.startswith("--")), len(base))
    return [base[0], value, *base[options_at:]]


def _fill(argv: list[str], tmp_path: Path, case: int = 0) -> list[str]:
    paths = {"{dir}": tmp_path / "adir", "{file}": tmp_path / "afile.txt", "{under_file}": tmp_path / "afile.txt" / "x"}
    (tmp_path / "adir").mkdir(exist_ok=True)
    (tmp_path / "afile.txt").write_text("not archbench's\n")
    filled = []
    for arg in argv:
        for placeholder, path in paths.items():
            arg = arg.replace(placeholder, str(path))
        filled.append(arg.replace("{out}", str(tmp_path / f"out{case}")))  # a case never sees another's files
    return filled


def _assert_usage_error(result, argv, must_name: str | None, value: str | None = None) -> None:
    context = f"archbench {' '.join(argv)}\n--- stderr:\n{result.stderr}--- stdout:\n{result.stdout}"
    assert result.exit_code == 2, context
    assert "Traceback" not in result.output, context
    message = result.stderr.strip()
    assert message and len([line for line in message.splitlines() if line.strip()]) <= 6, context
    assert "error" in message.lower(), context
    if must_name is not None:
        named = must_name in message or (value and value.strip() and value in message)
        assert named, f"the message does not name {must_name!r}: {context}"


def test_every_option_kind_is_known():
    unknown = sorted({f"{name} {p.opts[0]}: {_kind(p)}" for name, command in _commands() for p in command.params
                      if _kind(p) not in MALFORMED and _kind(p) not in FREE_TEXT and _kind(p) != "FLAG"})
    assert not unknown, f"say how to break these options' values in MALFORMED (or mark them FREE_TEXT): {unknown}"
    assert set(BASE) == set(COMMAND.commands), "every command needs a valid BASE invocation"


@pytest.mark.slow
def test_generated_malformed_values_are_usage_errors(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = list(_cases())
    assert len(cases) > 250  # the generator really walked the app (see the closing note for the count)
    failures = []
    for case, (_command, _label, template, must_name) in enumerate(cases):
        argv = _fill(template, tmp_path, case)
        value = argv[-1] if must_name is not None else None
        try:
            _assert_usage_error(cli(*argv), argv, must_name, value)
        except Exception as exc:  # noqa: BLE001 - a traceback escaping main() is a broken case, listed with the rest
            failures.append(f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc))
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("name", sorted(BASE))
def test_unknown_options_and_extra_arguments(cli, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    base = _fill(BASE[name], tmp_path)
    for argv in ([*base, "--foo"], [*base, "--no-such-option=1"], [base[0], "--foo", *base[1:]]):
        result = cli(*argv)
        _assert_usage_error(result, argv, "--", None)
        assert "Usage: archbench" in result.stderr and "--help" in result.stderr, result.stderr
    takes_any_number = any(p.param_type_name == "argument" and p.nargs == -1 for p in COMMAND.commands[name].params)
    if not takes_any_number:
        argv = [*base, "extra-argument"]
        _assert_usage_error(cli(*argv), argv, "extra-argument", None)


@pytest.mark.parametrize("name", [n for n, c in sorted(COMMAND.commands.items())
                                  if any(p.param_type_name == "argument" and p.required for p in c.params)])
def test_missing_arguments(cli, name):
    result = cli(name)
    _assert_usage_error(result, [name], "Missing argument", None)


def test_unknown_command(cli):
    _assert_usage_error(cli("benchh"), ["benchh"], "benchh", None)


def test_usage_errors_in_a_fresh_process():
    """The two commonest mistakes, through the installed entry point's module, as a user meets them."""
    for argv in (["bench", "mnist-cnn", "--foo"], ["summary"]):
        result = run_subprocess(*argv)
        _assert_usage_error(result, argv, "--foo" if "--foo" in argv else "MODEL", None)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[0].startswith("Usage: archbench ") and lines[1].startswith("Try 'archbench ")
        assert lines[-1].startswith("Error: ")


def test_debug_shows_the_traceback(cli):
    from archbench.cli import main

    with pytest.raises(Exception) as raised:
        main(["--debug", "summary", "no-such-model"])
    assert "no-such-model" in str(raised.value)


# ------------------------------------------------------------------------------------ signals and memory


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.05)  # polling a file another process writes; no timing is asserted
    raise AssertionError(f"{path} did not get {n} rows (process exit code {proc.poll()})")


@pytest.mark.slow
def test_sigterm_keeps_finished_cells_prints_resume_and_exits_143(tmp_path):
    """What CI timeouts, `timeout`, Docker and Slurm send: a real SIGTERM to a running sweep."""
    out = tmp_path / "r.csv"
    # 16 cells: >= 14 x 0.2 s still to run when the signal is sent after 2 rows (ample for the 50 ms poll), and
    # the resume, which measures every cell left, stays short (40 cells had it measure ~38)
    batches = ",".join(map(str, range(1, 17)))
    argv = [sys.executable, "-m", "archbench", "bench", "mnist-cnn", "--batch", batches, "--mode", "infer",
            "--max-time", "0.2", "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for_rows(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    rows = read_rows_csv(out)
    assert 2 <= len(rows) < 16 and [r.batch for r in rows] == list(range(1, len(rows) + 1))
    assert f"{len(rows)} of 16 cells are saved" in stderr
    resume = next(line.strip() for line in stderr.splitlines() if line.strip().startswith("archbench bench"))
    assert resume.endswith("--resume") and f"--out {out}" in resume

    finished = run_subprocess(*resume.split()[1:], cwd=tmp_path)  # the printed command, as a user pastes it
    assert finished.exit_code == 0, finished.stderr
    assert [r.batch for r in read_rows_csv(out)] == list(range(1, 17))


def test_sigterm_before_the_sweep_exits_143_without_a_traceback(tmp_path):
    """SIGTERM while the process is still starting (importing torch, building): exit 143, a message."""
    proc = subprocess.Popen([sys.executable, "-m", "archbench", "summary", "wrn-40-10", "--batch", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_until_it_catches_sigterm(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "terminated" in stderr


def _wait_until_it_catches_sigterm(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Until the kernel says the process has a SIGTERM handler (``SigCgt`` in /proc/PID/status): archbench's
    main is running. Before that, SIGTERM would kill the interpreter by default, which is not under test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("the process never installed a SIGTERM handler")


@pytest.mark.slow
def test_out_of_host_memory_is_an_oom_row_and_the_sweep_goes_on(tmp_path):
    """Under a real address-space limit (RLIMIT_AS), a cell whose tensors do not fit fails to allocate:
    it is an `oom` row with the allocator's reason, and the cells after it are measured."""
    limit = _address_space_now() + 3 * 2**30
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
        "from archbench.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    out = tmp_path / "r.csv"
    proc = subprocess.run([sys.executable, "-c", code, "bench", "mnist-cnn", "--batch", "1,400000,2", "--mode", "infer",
                           "--max-time", "0.2", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r.batch: r for r in read_rows_csv(out)}
    assert rows[400000].status == "oom", rows[400000]
    assert "can't allocate memory" in rows[400000].error and "batch 400000" in rows[400000].error
    assert rows[1].status == rows[2].status == "ok"


def _address_space_now() -> int:
    """Virtual memory of a fresh interpreter that imported torch and torchvision (the CUDA build maps
    several GB), so the limit leaves ~3 GB for the sweep itself."""
    probe = ("import torch, torchvision\n"
             "print(next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmPeak')))")
    return int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)


def test_a_stop_signal_inside_a_deferred_block_is_delivered_after_it():
    """What keeps a CSV row whole and counted: SIGTERM (or SIGINT) arriving while a row is written is
    held until the block ends, then raised as Terminated (KeyboardInterrupt) — real signals, this process."""
    import os

    from archbench.interrupts import Terminated, interrupts_deferred, sigterm_as_interrupt

    done = []
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("after the signal")  # still inside the block: the signal waits
    assert done == ["after the signal"]
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after SIGINT")
    assert done[-1] == "after SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
