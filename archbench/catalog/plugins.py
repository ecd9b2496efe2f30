"""Families shipped by other packages, through the entry-point group ``archbench.families``::

    # the plugin's pyproject.toml
    [project.entry-points."archbench.families"]
    mynet = "mypkg.models:build_mynet"     # a builder (**kwargs) -> nn.Module

Each entry point is a family (a spec file may say ``family = "mynet"``) and a model of its own name built
with the builder's defaults. Discovery reads the installed distributions' metadata only: neither torch
nor the plugin is imported until a model of the family is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archbench.catalog.spec import ModelSpec

GROUP = "archbench.families"


@dataclass(frozen=True)
class Plugin:
    name: str
    value: str  # "module:function"
    distribution: str  # "mydist 0.1"


def plugins() -> dict[str, Plugin]:
    """The installed plugin families by name (the first distribution that declares a name wins)."""
    from importlib.metadata import entry_points

    found: dict[str, Plugin] = {}
    for entry in entry_points(group=GROUP):
        dist = entry.dist
        found.setdefault(entry.name, Plugin(entry.name, f"{entry.module}:{entry.attr}",
                                            f"{dist.name} {dist.version}" if dist else "an unnamed distribution"))
    return found


def names() -> list[str]:
    return sorted(plugins())


def spec(name: str) -> ModelSpec:
    """The model a plugin family builds with its defaults (default input 3x224x224; ``--input`` to change)."""
    from archbench.catalog.source import DEFAULT_INPUT

    plugin = plugins()[name]
    return ModelSpec(name=name, family=name, input=DEFAULT_INPUT, description=f"{plugin.value} (entry point)",
                     source=f"plugin:{plugin.distribution}")


def load(name: str) -> Callable[..., Any]:
    """The builder of a plugin family (imports the plugin)."""
    from archbench.catalog.loading import load_model_object

    return load_model_object(plugins()[name].value)


def roots(name: str):
    """Where the plugin's code lives (failures in it are located there)."""
    from archbench.catalog.loading import source_roots

    return source_roots(plugins()[name].value)
