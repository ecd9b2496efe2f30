"""The git commit of the code a run measured: the working directory's ``HEAD``, ``+dirty`` when it has
changes (tracked or untracked files), or None outside a repository or without git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 5.0
DIRTY = "+dirty"


def git_commit(cwd: str | Path) -> str | None:
    """``HEAD``'s hash in ``cwd`` (``<hash>+dirty`` when ``git status --porcelain`` lists anything), or
    None when ``cwd`` is not in a git work tree, git is missing or does not answer within a few seconds.
    A status that cannot be read leaves the plain hash (the commit is still known)."""
    head = _git(cwd, "rev-parse", "--verify", "HEAD")
    if not head:
        return None
    status = _git(cwd, "status", "--porcelain")
    return head + DIRTY if status else head


def _git(cwd: str | Path, *args: str) -> str | None:
    """git's stripped stdout, or None when it fails. Optional locks are off: a run must never hold the
    index lock of a repository someone is committing to."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None
