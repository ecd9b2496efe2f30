"""User code that tries to end the process: a model's ``forward`` or ``__init__``, an input factory or a
module at import time calling ``sys.exit(n)`` (or raising ``GeneratorExit``).

Python raises those as :class:`BaseException`\\ s, which every ``except Exception`` that turns a model's
failure into a message or an ``error`` row lets through — archbench would end with the user's exit code
and nothing measured. Where archbench calls into user code it wraps the call in
:func:`exits_as_failures`, which turns them into :class:`UserCodeExit`, a model failure located to the
``file:line`` that exited. ``KeyboardInterrupt`` is not touched (Ctrl-C and SIGTERM still stop a run).
``os._exit`` cannot be caught in a process: the worker pool (``--workers``) is the isolation for such code.
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archbench.errors import ModelRunError

USER_EXITS = (SystemExit, GeneratorExit)  # what user code may raise to leave; KeyboardInterrupt is the user's


class UserCodeExit(ModelRunError):
    """User code called ``sys.exit`` (or raised ``GeneratorExit``): a failure of that code, located. Its
    traceback is the user code's, so callers that locate failures find the line; ``__cause__`` is the
    original exception."""


@contextmanager
def exits_as_failures(what: str = "the model's code") -> Iterator[None]:
    """Run the body (a call into user code); a ``SystemExit``/``GeneratorExit`` it raises becomes
    :class:`UserCodeExit` naming ``what`` and where it exited."""
    try:
        yield
    except USER_EXITS as exc:
        raise as_failure(exc, what) from exc


def as_failure(exc: BaseException, what: str = "the model's code") -> UserCodeExit:
    """The :class:`UserCodeExit` for ``exc`` (raise it ``from exc``), with ``exc``'s traceback. For hot paths
    (a timed forward), where a plain ``try``/``except USER_EXITS`` costs nothing and a context manager would."""
    return UserCodeExit(exit_message(exc, what)).with_traceback(exc.__traceback__)


def exit_message(exc: BaseException, what: str = "the model's code") -> str:
    """``"the model's forward called sys.exit(3) at net.py:12 (...)"``."""
    return f"{what} {exit_action(exc)} at {exit_location(exc)} ({ADVICE})"


ADVICE = "archbench treats an exit as a failure: raise an exception instead"


def exit_action(exc: BaseException) -> str:
    """``called sys.exit(3)``, ``raised GeneratorExit``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"
    return f"raised {type(exc).__name__}"


def exit_one_line(exc: BaseException) -> str:
    """``SystemExit: sys.exit(3) was called (...)``: the one-line form of an exit whose place a caller names."""
    if isinstance(exc, SystemExit):
        code = f"{exc.code!r}" if exc.code is not None else ""
        return f"SystemExit: sys.exit({code}) was called ({ADVICE})"
    return f"{type(exc).__name__} ({ADVICE})"


def exit_location(exc: BaseException) -> str:
    """``file:line`` of the innermost Python frame of ``exc``'s traceback (``sys.exit`` itself has none, so
    that is the line that called it)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f"{shown_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else "<unknown>"


def shown_path(filename: str) -> str:
    """A path relative to the working directory when it is inside it (shorter to read)."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def code_roots(obj: Any) -> tuple[Path, ...]:
    """The file that defines ``obj`` (a class or function): a failure inside it is located there."""
    try:
        found = inspect.getsourcefile(obj)
    except TypeError:  # a builtin, or an instance of a class defined in C
        return ()
    return (Path(found).resolve(),) if found else ()
