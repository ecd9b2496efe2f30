"""The library's one error hierarchy.

Every error a user can cause derives from :class:`ArchbenchError`; the CLI catches that base class and
turns it into a short message and an exit code (no traceback unless ``--debug``). Messages say what was
wrong, what was expected and what to do.
"""

from __future__ import annotations


class ArchbenchError(Exception):
    """Base class of every user-facing archbench error."""

    exit_code = 2


class UsageError(ArchbenchError):
    """A malformed command-line value (``--input``, ``--batch``, ``--set``, ``--device`` ...)."""


class SpecError(ArchbenchError):
    """A spec file or spec override that cannot be loaded or applied."""


class UnknownModelError(ArchbenchError):
    """A model name that is neither a spec nor a torchvision classification model."""

    def __init__(self, name: str, suggestions: list[str] | None = None):
        self.name = name
        self.suggestions = list(suggestions or [])
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown model '{name}'.{hint} Run `archbench list` to see every model.")


class DuplicateFamilyError(ArchbenchError):
    """A builder family registered twice under one name."""


class ModelRunError(ArchbenchError):
    """A model that fails to run on the given input (the message locates the failing module)."""


class ModelOutOfMemoryError(ModelRunError):
    """A model that ran out of memory on the given input, batch and device."""


class DeviceUnavailableError(ArchbenchError):
    """A device that was asked for but is not available (e.g. ``--device cuda`` with no GPU)."""


class StudyError(ArchbenchError):
    """A study file that cannot be loaded (names the file and the key)."""
