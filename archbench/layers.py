"""The layer table: torchinfo's per-layer records (type, output size, parameters) with fvcore's MACs.

torchinfo is used as it is meant to be (``torchinfo.summary`` on the real input, in eval mode, its
default); we wrap it where it falls short:

* its text rendering is not used: on current Python it labels sizes ``Units.GIGABYTES`` and so on, and
  its MACs are an estimate from parameter counts (archbench shows fvcore's count per layer instead);
* it names a layer by its attribute only (``conv1``); rows are named by their full dotted path
  (``stage2.0.conv1``) so they can be found in the model and passed to other tools;
* it restores only the root module's train/eval flag afterwards, and prints unless told not to: the call
  runs quietly inside :func:`archbench.counting.preserved_state`.

(Its hooks cannot ride along on fvcore's jit trace, where sizes are traced tensors, nor on the training
step, which may run at another batch or run auxiliary heads that inference skips.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torchinfo
from torch import nn
from torchinfo.layer_info import LayerInfo

from archbench.counting import preserved_state


@dataclass(frozen=True)
class LayerRow:
    """One module of the layer table (counts are for its whole subtree)."""

    name: str  # dotted path, e.g. "layer4.0.conv1"
    type: str
    depth: int  # 1 for the model's direct children
    output_shape: tuple[int, ...] | None  # first output tensor of its first call; None if it never ran
    calls: int
    params: int
    macs: int | None  # fvcore's count for the subtree; None if it never ran
    uncounted_ops: dict[str, int] = field(default_factory=dict, hash=False)


def torchinfo_records(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """torchinfo's ``LayerInfo`` list for one eval-mode forward of ``model`` on ``x`` (no gradients)."""
    with preserved_state(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        statistics = torchinfo.summary(model, input_data=[x], mode="eval", verbose=0, device=x.device)
    return statistics.summary_list


def _executed_by_module(records: list[LayerInfo]) -> dict[int, list[LayerInfo]]:
    """The records of each module that ran, by ``id(module)``, one per call (torchinfo lists a module
    called twice twice, marked recursive)."""
    by_module: dict[int, list[LayerInfo]] = {}
    for record in records:
        if record.executed:
            by_module.setdefault(record.layer_id, []).append(record)
    return by_module


def layer_rows(model: nn.Module, records: list[LayerInfo], macs_by_module: dict[str, int],
               uncounted_by_module: dict[str, dict[str, int]], depth: int | None):
    """One row per module down to ``depth`` (the model itself excluded), in definition order: type,
    output size and parameters from torchinfo's records, MACs and uncounted ops from fvcore (both taken
    on eval-mode forwards of the same input)."""
    executed = _executed_by_module(records)
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if not name or (depth is not None and level > depth):
            continue
        calls = executed.get(id(module), [])
        first = calls[0] if calls else None
        yield LayerRow(
            name=name,
            type=first.class_name if first else type(module).__name__,
            depth=level,
            output_shape=tuple(first.output_size) if first else None,
            calls=len(calls),
            params=first.num_params if first else sum(p.numel() for p in module.parameters()),
            macs=macs_by_module.get(name, 0) if calls else None,
            uncounted_ops=uncounted_by_module.get(name, {}),
        )
