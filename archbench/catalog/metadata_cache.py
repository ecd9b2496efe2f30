"""A per-user cache of model-zoo metadata (``$XDG_CACHE_HOME/archbench/``, ``~/.cache/archbench/``),
keyed by the zoo's version: listing torchvision's zoo needs torchvision imported (~2 s) and listing
timm's with parameter counts takes minutes, while the metadata only changes with the installed version.

A cache that cannot be read is recomputed; one that cannot be written only costs the next listing its
time. Writes are atomic (a temporary file renamed over the old one)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from archbench.files import atomic_write_text


def cache_file(key: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archbench" / f"{key}.json"


def read_cache(key: str) -> dict[str, Any]:
    try:
        data = json.loads(cache_file(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, data: dict[str, Any]) -> None:
    path = cache_file(key)
    try:
        atomic_write_text(path, json.dumps(data, sort_keys=True))
    except OSError:
        pass  # a cache that cannot be written only costs the next listing its time
