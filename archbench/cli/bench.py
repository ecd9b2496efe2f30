"""`archbench bench` (placeholder until implemented)."""

from __future__ import annotations

from archbench.errors import UsageError


def bench_command() -> None:
    """Not implemented yet."""
    raise UsageError("`archbench bench` is not implemented yet.")
