"""`archbench summary` (placeholder until implemented)."""

from __future__ import annotations

from archbench.errors import UsageError


def summary_command() -> None:
    """Not implemented yet."""
    raise UsageError("`archbench summary` is not implemented yet.")
