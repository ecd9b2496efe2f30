"""The layer table: torchinfo's per-layer records (type, output size, parameters) with archbench's MACs.

We use torchinfo's own machinery and wrap it where it falls short:

* ``torchinfo.summary`` runs a forward pass of its own under ``torch.no_grad()``: on top of the training
  step and fvcore's trace that the summary needs anyway, a third pass (+10% of ``archbench summary
  wrn-40-10``'s time). So :class:`TorchinfoHooks` registers torchinfo's hooks
  (``torchinfo.torchinfo.apply_hooks``, stable since torchinfo 1.6) around the training step's forward
  and completes the list as ``torchinfo.summary`` does. (They cannot ride on fvcore's jit trace, where
  sizes are traced tensors.) Where that forward ran at another batch than the summary's, a plain
  ``torchinfo.summary`` in eval mode is used instead (:func:`torchinfo_records`).
* A layer that runs in training but not at inference (an auxiliary head) is shown as not run, as in
  fvcore's eval-mode trace, so its shape and its MACs come from the same kind of pass.
* Its text rendering is not used: on current Python it labels sizes ``Units.GIGABYTES`` and so on, and
  its MACs are an estimate from parameter counts (archbench shows its own count per layer).
* Ops a module runs in its own forward (not in a child: a functional pooling in the model's forward)
  get a ``"<module> (self)"`` row, so the rows of each level add up to their parent exactly.
* It names a layer by its attribute only (``conv1``); rows are named by their full dotted path
  (``stage2.0.conv1``) so they can be found in the model and passed to other tools.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import torch
import torchinfo
from torch import nn
from torchinfo import torchinfo as _torchinfo
from torchinfo.layer_info import LayerInfo

from archbench.costs.counting import OpCounts, module_ancestors, preserved_state
from archbench.costs.formulas import MACS, NORM_POOL
from archbench.inputs import ModelInputs


@dataclass(frozen=True)
class LayerRow:
    """One module of the layer table (counts are for its whole subtree)."""

    name: str  # dotted path, e.g. "layer4.0.conv1"
    type: str
    depth: int  # 1 for the model's direct children
    output_shape: tuple[int, ...] | None  # first output tensor of its first call; None if it never ran
    calls: int
    params: int
    macs: int | None  # the subtree's MACs; None if it never ran (containers: if no child ran)
    uncounted_ops: dict[str, int] = field(default_factory=dict, hash=False)
    macs_with_norm: int | None = None  # macs + normalisation and pooling


SELF = "(self)"


class TorchinfoHooks:
    """Context manager: torchinfo's forward hooks on every module of ``model`` while it is active
    (removed on exit, also on an exception); after a clean exit :attr:`records` holds torchinfo's
    ``LayerInfo`` list, completed as ``torchinfo.summary`` completes it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.records: list[LayerInfo] = []
        self._hooks: dict[int, Any] = {}

    def __enter__(self) -> TorchinfoHooks:
        # apply_hooks registers hooks only when told there is input data; the data itself is not used.
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


def torchinfo_records(model: nn.Module, x: ModelInputs) -> list[LayerInfo]:
    """torchinfo's ``LayerInfo`` list from ``torchinfo.summary`` itself: one eval-mode forward of
    ``model`` on ``x``, no gradients, quiet, every module's train/eval flag restored afterwards (torchinfo
    restores only the root's)."""
    with preserved_state(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = dict(x.kwargs) if x.kwargs else list(x.args)
        first = next(v for v in (*x.args, *x.kwargs.values()) if isinstance(v, torch.Tensor))
        statistics = torchinfo.summary(model, input_data=data, mode="eval", verbose=0, device=first.device)
    return statistics.summary_list


def _executed_by_module(records: list[LayerInfo]) -> dict[int, list[LayerInfo]]:
    """The records of each module that ran, by ``id(module)``, one per call (torchinfo lists a module
    called twice twice, marked recursive)."""
    by_module: dict[int, list[LayerInfo]] = {}
    for record in records:
        if record.executed:
            by_module.setdefault(record.layer_id, []).append(record)
    return by_module


def uncalled_at_inference(model: nn.Module, x: ModelInputs) -> frozenset[str]:
    """The modules an eval-mode forward never calls (what fvcore's trace reports as uncalled), found
    without arithmetic: one forward of a meta twin (the same modules and shapes on ``meta``) with a
    pre-hook on every module; a model the twin cannot run (data-dependent control flow) runs itself,
    under ``inference_mode``. Used when counts are wanted without fvcore's cross-check."""
    from archbench.catalog.meta import meta_twin

    def called_in(module: nn.Module, inputs: ModelInputs) -> set[str]:
        called: set[str] = set()
        handles = [m.register_forward_pre_hook(lambda *_, n=name: called.add(n)) for name, m in module.named_modules()]
        try:
            with preserved_state(module), torch.inference_mode():
                module.eval()
                inputs.call(module)
        finally:
            for handle in handles:
                handle.remove()
        return called

    names = {name for name, _ in model.named_modules()}
    try:
        meta = ModelInputs(tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in x.args),
                           {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in x.kwargs.items()})
        called = called_in(meta_twin(model), meta)
    except Exception:  # noqa: BLE001 - the twin cannot run this forward: the model itself does
        called = called_in(model, x)
    # As fvcore's trace ("owner" ancestors): a module is called when any module below it is. A ModuleList or
    # ModuleDict is never called itself, only its children: without this it looked uncalled, and
    # skipped_at_inference dropped it with every layer in it from the counts.
    return frozenset(names - {ancestor for name in called for ancestor in module_ancestors(name)})


def skipped_at_inference(model: nn.Module, uncalled: Collection[str]) -> set[str]:
    """The modules that inference does not run (e.g. an auxiliary head), from the modules fvcore's
    eval-mode trace saw no op of: those with parameters, and everything below them. (fvcore also calls a
    module "uncalled" when it ran but left no op in the graph: an identity shortcut, stochastic depth or
    dropout in eval mode. Those have no parameters, so they are kept.)"""
    roots = {name for name, module in model.named_modules()
             if name in uncalled and next(module.parameters(), None) is not None}
    return {name for name, _ in model.named_modules() if any(name == r or name.startswith(r + ".") for r in roots)}


def layer_rows(model: nn.Module, records: list[LayerInfo], counts: OpCounts, not_run_at_inference: Collection[str],
               depth: int | None) -> list[LayerRow]:
    """One row per module down to ``depth`` (the model itself excluded), in definition order: type,
    output size and parameters from torchinfo's records; MACs and uncounted ops from ``counts`` (the
    modules in ``not_run_at_inference`` show as not run). A module whose children are listed and that
    runs counted ops in its own forward is followed by its ``(self)`` row."""
    executed = _executed_by_module(records)
    macs = counts.module_totals(MACS, not_run_at_inference)
    norm = counts.module_totals(NORM_POOL, not_run_at_inference)
    uncounted = counts.uncounted_by_module(not_run_at_inference)
    rows: list[LayerRow] = []
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if not name or (depth is not None and level > depth):
            continue
        calls = [] if name in not_run_at_inference else executed.get(id(module), [])
        first = calls[0] if calls else None
        # a ModuleList/ModuleDict is never called itself, but its children are: their MACs add up in it
        counted = bool(calls) or (isinstance(module, (nn.ModuleList, nn.ModuleDict)) and name not in not_run_at_inference)
        rows.append(LayerRow(
            name=name,
            type=first.class_name if first else type(module).__name__,
            depth=level,
            output_shape=tuple(first.output_size) if first else None,
            calls=len(calls),
            params=first.num_params if first else sum(p.numel() for p in module.parameters()),
            macs=macs.get(name, 0) if counted else None,
            uncounted_ops=uncounted.get(name, {}) if counted else {},
            macs_with_norm=macs.get(name, 0) + norm.get(name, 0) if counted else None,
        ))
    return _with_self_rows(model, rows, counts, not_run_at_inference, depth)


def _with_self_rows(model: nn.Module, rows: list[LayerRow], counts: OpCounts, not_run: Collection[str],
                    depth: int | None) -> list[LayerRow]:
    """``rows`` with a ``(self)`` row after the subtree of each listed module (and the model) whose own
    forward ran counted ops while its children are listed."""
    own_macs, own_norm = counts.self_totals(MACS, not_run), counts.self_totals(NORM_POOL, not_run)
    modules = dict(model.named_modules())
    for name in sorted(set(own_macs) | set(own_norm), key=len, reverse=True):  # deepest first
        level = name.count(".") + 1 if name else 0
        module = modules.get(name)
        if module is None or next(module.children(), None) is None or (depth is not None and level >= depth):
            continue
        a, b = own_macs.get(name, 0), own_norm.get(name, 0)
        if not (a or b):
            continue
        prefix = name + "." if name else ""
        after = max((i for i, row in enumerate(rows) if row.name.startswith(prefix) or row.name == name), default=-1)
        rows.insert(after + 1, LayerRow(
            name=f"{name} {SELF}" if name else SELF, type="own forward", depth=level + 1, output_shape=None, calls=1,
            params=sum(p.numel() for p in module.parameters(recurse=False)), macs=a, macs_with_norm=a + b))
    return rows
