"""timm's models as ``timm:NAME`` (an optional extra: ``pip install "archbench[timm]"``).

Built with ``timm.create_model(NAME, pretrained=False)``: nothing is downloaded. A model's default input is
its default pretrained config's ``input_size``. timm publishes no parameter counts, so listing them counts
each on the ``meta`` device (no memory); the counts are kept per timm version in
``$XDG_CACHE_HOME/archbench/`` (``~/.cache/archbench/``), as counting all of timm takes minutes.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from archbench.catalog.metadata_cache import read_cache, write_cache
from archbench.catalog.spec import ModelSpec
from archbench.errors import quoted

FAMILY = "timm"
PREFIX = "timm:"
INSTALL = 'pip install "archbench[timm]"'


def installed() -> bool:
    return importlib.util.find_spec("timm") is not None


def _timm():
    from archbench.catalog.grammar import ModelReferenceError

    try:
        import timm
    except ImportError:
        raise ModelReferenceError(f"timm is not installed: {INSTALL}") from None
    return timm


@functools.cache
def names() -> tuple[str, ...]:
    return tuple(_timm().list_models())


def spec(model: str, name: str | None = None) -> ModelSpec:
    """The spec of timm's ``model`` (listed as ``name``, default ``timm:<model>``)."""
    from archbench.catalog.grammar import ModelReferenceError

    timm = _timm()
    if model not in names():
        close = difflib.get_close_matches(model, names(), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise ModelReferenceError(f"timm {timm.__version__} has no model {quoted(model)}.{hint} "
                                  "`archbench list --source timm 'PATTERN'` lists them.")
    cfg = timm.get_pretrained_cfg(model)
    shape = tuple(cfg.input_size) if cfg is not None and cfg.input_size else (3, 224, 224)
    return ModelSpec(name=name or PREFIX + model, family=FAMILY, input=shape,  # type: ignore[arg-type]
                     description=f"timm.create_model('{model}'), not pretrained (timm {timm.__version__})",
                     source=FAMILY, builder=PREFIX + model)


def builder(model: str) -> Callable[..., Any]:
    return functools.partial(_timm().create_model, model, pretrained=False)


def listing(pattern: str | None = None, on_model: Callable[[str], None] | None = None) -> list[ModelSpec]:
    """The specs of timm's models matching ``pattern`` (``convnext*`` or ``timm:convnext*``), each with its
    parameter count (counted on ``meta``, or from the cache). ``on_model(name)`` is called before each."""
    matching = [m for m in names() if not pattern or fnmatch.fnmatchcase(m, pattern.removeprefix(PREFIX))]
    cache = _read_cache()
    specs = []
    for model in matching:
        if on_model is not None:
            on_model(model)
        if model not in cache:
            cache[model] = _count(model)
        specs.append(_with_params(spec(model), cache[model]))
    _write_cache(cache)
    return specs


def _with_params(model_spec: ModelSpec, params: int | None) -> ModelSpec:
    import dataclasses

    return dataclasses.replace(model_spec, params=params)


def _count(model: str) -> int | None:
    """Parameters of the model built on ``meta``; None if it cannot be built there."""
    from archbench.catalog.registry import build_model, count_params
    from archbench.errors import ArchbenchError

    try:
        return count_params(build_model(spec(model), device="meta"))
    except (ArchbenchError, RuntimeError, TypeError, ValueError, NotImplementedError):
        return None


def _cache_key() -> str:
    return f"timm-{_timm().__version__}-params"


def _read_cache() -> dict[str, int | None]:
    data = read_cache(_cache_key())
    return {k: v for k, v in data.items() if v is None or (isinstance(v, int) and not isinstance(v, bool))}


def _write_cache(cache: dict[str, int | None]) -> None:
    write_cache(_cache_key(), cache)
