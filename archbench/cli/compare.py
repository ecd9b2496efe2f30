"""`archbench compare` (placeholder until implemented)."""

from __future__ import annotations

from archbench.errors import UsageError


def compare_command() -> None:
    """Not implemented yet."""
    raise UsageError("`archbench compare` is not implemented yet.")


def report_command() -> None:
    """Not implemented yet."""
    raise UsageError("`archbench report` is not implemented yet.")
