"""The layer table: torchinfo's per-layer records (type, output size, parameters), gathered during the
training-mode forward pass that ``archbench summary`` already makes.

Where torchinfo falls short we wrap it rather than rewrite it:

* ``torchinfo.summary`` runs a forward pass of its own, under ``torch.no_grad()``: one more pass over the
  model than the summary needs, and one autograd cannot use for the backward count. So
  :class:`TorchinfoLayers` registers torchinfo's own hooks (``torchinfo.torchinfo.apply_hooks``, stable
  since torchinfo 1.6) around archbench's forward, then lets torchinfo complete its list
  (``add_missing_container_layers``, ``set_children_layers``) as ``torchinfo.summary`` does.
* torchinfo's text rendering is not used: on current Python it labels sizes ``Units.GIGABYTES`` and
  so on, and its MACs are an estimate from parameter counts (archbench shows fvcore's count per layer).
* torchinfo names a layer by its attribute only (``conv1``); rows are named by their full dotted path
  (``stage2.0.conv1``) so they can be found in the model and passed to other tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torchinfo import torchinfo as _torchinfo
from torchinfo.layer_info import LayerInfo


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


class TorchinfoLayers:
    """Context manager: torchinfo's forward hooks on every module of ``model`` while it is active
    (removed on exit, also on an exception); afterwards :attr:`records` holds torchinfo's
    ``LayerInfo`` list, completed as ``torchinfo.summary`` completes it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.records: list[LayerInfo] = []
        self._hooks: dict[int, Any] = {}

    def __enter__(self) -> "TorchinfoLayers":
        # apply_hooks registers hooks only when it is told there is input data; the data itself is unused.
        self.records, _, self._hooks = _torchinfo.apply_hooks(type(self.model).__name__, self.model, [None], None)
        return self

    def __exit__(self, *exc) -> None:
        for pre_hook, hook in self._hooks.values():
            pre_hook.remove()
            hook.remove()
        self._hooks = {}
        if exc[0] is None:
            _torchinfo.add_missing_container_layers(self.records)
            _torchinfo.set_children_layers(self.records)

    def executed_by_module(self) -> dict[int, list[LayerInfo]]:
        """The records of each module that ran, by ``id(module)``, one per call (torchinfo lists a
        module called twice twice, marked recursive)."""
        by_module: dict[int, list[LayerInfo]] = {}
        for record in self.records:
            if record.executed:
                by_module.setdefault(record.layer_id, []).append(record)
        return by_module


def layer_rows(model: nn.Module, layers: TorchinfoLayers, macs_by_module: dict[str, int],
               uncounted_by_module: dict[str, dict[str, int]], depth: int | None):
    """One row per module down to ``depth`` (the model itself excluded), in definition order: type,
    output size and parameters from torchinfo, MACs and uncounted ops from fvcore (per dotted path)."""
    executed = layers.executed_by_module()
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
