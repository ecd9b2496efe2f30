"""torchvision's classification zoo, reachable by name without spec files (imported only when asked for).

A zoo model's default input is its default weights' inference crop size; its expected parameter count
is ``num_params`` from those weights' metadata. Models are built the way that count was taken: with
``weights=None`` and, for googlenet and inception_v3, without the auxiliary heads that the pretrained
models drop.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable
from typing import Any

from archbench.catalog.metadata_cache import read_cache, write_cache
from archbench.catalog.spec import ModelSpec

FAMILY = "torchvision"
# Builder arguments that make the built model match its default weights' metadata. googlenet's count
# excludes its auxiliary heads; inception_v3's includes its AuxLogits head (27,161,264), so it keeps it.
_BUILD_ARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": True, "init_weights": True},
}


@functools.cache
def names() -> tuple[str, ...]:
    return tuple(_zoo())


def spec(name: str) -> ModelSpec:
    entry = _zoo()[name]
    return ModelSpec(
        name=name,
        family=FAMILY,
        input=tuple(entry["input"]),
        description=entry["description"],
        args=dict(entry["args"]),
        params=int(entry["params"]),
        source=FAMILY,
        builder=f"tv:{name}",
    )


@functools.cache
def _zoo() -> dict[str, dict[str, Any]]:
    """Every zoo model's metadata, from the cache of the installed torchvision's version (read without
    importing torchvision: `archbench list` stays fast), or computed from torchvision and cached."""
    key = f"torchvision-{importlib.metadata.version('torchvision')}-zoo"
    cached = read_cache(key)
    if cached:
        return cached
    import torchvision

    zoo = {name: _metadata(name) for name in torchvision.models.list_models(module=torchvision.models)}
    write_cache(key, zoo)
    return zoo


def _metadata(name: str) -> dict[str, Any]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    crop = weights.transforms().crop_size[0]
    meta = weights.meta
    args = dict(_BUILD_ARGS.get(name, {}))
    if name.startswith("vit_") and meta["min_size"][0] != 224:
        args["image_size"] = meta["min_size"][0]  # e.g. vit_h_14's default SWAG weights run at 518x518
    accuracy = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    facts = [weights.name]
    if accuracy is not None:
        facts.append(f"{accuracy}% top-1")
    if meta.get("_ops") is not None:
        facts.append(f"{meta['_ops']} GMACs")
    return {"input": [3, crop, crop], "description": f"torchvision.models.{name} ({', '.join(facts)})", "args": args,
            "params": int(meta["num_params"])}


def builder(name: str) -> Callable[..., Any]:
    from torchvision.models import get_model

    return functools.partial(get_model, name, weights=None)
