"""The library's one error hierarchy.

Every error a user can cause derives from :class:`ArchbenchError`; the CLI catches that base class and
turns it into a short message and an exit code (no traceback unless ``--debug``). Messages say what was
wrong, what was expected and what to do.
"""

from __future__ import annotations

# What a user can do about an error, said in the words of the front end that raised it: the library's
# messages name no command-line flag; the CLI adds the flag, the Python API the keyword argument.
REMEDIES = {
    "resume": ("pass --resume to finish it (finished cells are kept)", "pass resume=True to finish it (finished cells are kept)"),
    "force": ("pass --force to start over (or replace what is there)", "pass force=True to start over (or replace what is there)"),
    "out": ("choose another --out", "choose another output location (out_dir / out_csv)"),
    "no_resume": ("run without --resume", "run with resume=False"),
    "smaller": ("try a smaller --batch or --input, or another --device", "try a smaller batch or input_size, or another device"),
    "inputs": ("its forward takes other inputs than one image tensor: give them with --inputs FILE.py:factory "
               "(docs/models.md)", "its forward takes other inputs than one image tensor: pass them as input_data= "
               "(a tuple or a dict of keyword arguments)"),
}


ECHO_LIMIT = 60  # characters of a user's value a message repeats
PATH_ECHO_LIMIT = 240  # of a path: usually long, and the whole of it is what the user needs to see


def quoted(value: object, limit: int = ECHO_LIMIT) -> str:
    """``value`` as a message quotes it: ``'3x64'``; a longer one cut to ``limit`` characters with its length
    said (``'aaaa…' (5,000 characters)``), so a pasted file or a runaway value does not flood the terminal.
    The one way messages echo what a user typed (paths with ``limit=PATH_ECHO_LIMIT``)."""
    text = str(value)
    if len(text) <= limit:
        return f"'{text}'"
    return f"'{text[:limit]}…' ({len(text):,} characters)"


def one_line(error: BaseException) -> str:
    """``RuntimeError: <first non-empty line of the message>`` (the type alone for an empty message): an
    exception a message quotes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class ArchbenchError(Exception):
    """Base class of every user-facing archbench error.

    ``remedies`` (keys of :data:`REMEDIES`) say what the user can do; ``str()`` words them for Python
    callers, :meth:`for_cli` for the command line."""

    exit_code = 2

    def __init__(self, message: str = "", *, remedies: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.remedies = tuple(remedies)

    def __str__(self) -> str:
        return self._with_remedies(1)

    def for_cli(self) -> str:
        return self._with_remedies(0)

    def _with_remedies(self, front: int) -> str:
        if not self.remedies:
            return self.message
        said = " or ".join(REMEDIES[r][front] for r in self.remedies)
        return f"{self.message.rstrip('.')}: {said}."


class UsageError(ArchbenchError):
    """A malformed command-line value (``--input``, ``--batch``, ``--set``, ``--device`` ...)."""


class ResourceLimitError(ArchbenchError):
    """A run that asks for more than the machine has: threads beyond the bound, a model too large to build
    (see :mod:`archbench.resources`). Says the bound and the size asked for."""


class SpecError(ArchbenchError):
    """A spec file or spec override that cannot be loaded or applied."""


class UnknownModelError(ArchbenchError):
    """A model name that is neither a spec nor a torchvision classification model."""

    def __init__(self, name: str, suggestions: list[str] | None = None):
        self.name = name
        self.suggestions = list(suggestions or [])
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown model {quoted(name)}.{hint} Run `archbench list` to see every model. Your own code "
                         "goes in as ./file.py:Class or package.module:attr; a plugin's family (archbench.families "
                         "entry point) is known once its package is installed (pip install -e its folder).")


class DuplicateFamilyError(ArchbenchError):
    """A builder family registered twice under one name."""


class ModelRunError(ArchbenchError):
    """A model that fails to run on the given input (the message locates the failing module): the input
    was well-formed, the model failed — exit code 1, as for a run whose every cell failed."""

    exit_code = 1


class OutputWriteError(ArchbenchError):
    """Results measured, but a file of them could not be written (disk full, I/O error): exit code 1, the run
    did not complete; the message names the path, the OS's reason and errno, and where the rows are kept."""

    exit_code = 1


class ModelOutOfMemoryError(ModelRunError):
    """A model that ran out of memory on the given input, batch and device."""


class DeviceUnavailableError(ArchbenchError):
    """A device that was asked for but is not available (e.g. ``--device cuda`` with no GPU)."""


class StudyError(ArchbenchError):
    """A study file that cannot be loaded (names the file and the key)."""


class StoreError(ArchbenchError):
    """A results store (SQLite file) that cannot be used: not an SQLite database, another application's,
    written by a newer archbench (a newer schema), or an unknown run."""


class StoreNotWritableError(StoreError):
    """A results store whose location cannot be written (read-only file system, no permission): a run
    measures anyway and keeps its files, without recording."""


class WorkUnitError(UsageError):
    """A cell that cannot be sent to another process, or a work-unit file that is not one."""
