"""What each module of a model costs per step, for a profile: FLOPs (archbench's own per-op counts, the
summary's) and **bytes moved**, forward and — in a training step — backward, attributed to the module
whose forward created the work.

* FLOPs come from :class:`~archbench.costs.counting.OpCounter` itself (the summary's counter, its
  formulas, its buckets), so a profile's per-module MACs add up exactly to the summary's totals.
* Bytes moved are counted at torch's dispatch level, op by op: the bytes of every tensor an op reads
  (inputs, weights, biases) plus every tensor it writes (outputs; an in-place op reads and writes its
  tensor). The model is **no cache reuse**: each op reads its operands from memory and writes its results
  back, as if no cache held anything between ops (so the figure is an upper bound of DRAM traffic for
  ops whose operands stay cached, and exact for streaming ones). Views and allocations (``view``,
  ``expand``, ``empty``) move nothing; a broadcast operand (a stride-0 dimension) counts its distinct
  elements once; a tensor passed twice to one op is read once.
* Backward ops are attributed to the module whose forward made the autograd node being run
  (``torch._C._current_autograd_node()`` during the backward; nodes mapped to modules by walking each
  module's new part of the autograd graph in its forward hook). The loss and the gradient accumulation
  belong to no module (the model itself, ``""``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from archbench.costs.counting import OpCounter, OpCounts, defer_dynamo_import, preserved_state
from archbench.costs.formula_registry import op_name
from archbench.costs.formulas import MACS, NORM_POOL, OTHER
from archbench.timing.hooks import ForwardHooks

_ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "resize_",
                          "set_", "lift_fresh", "_local_scalar_dense", "sym_size", "sym_stride", "sym_numel"})


def tensor_bytes(tensor: torch.Tensor) -> int:
    """The bytes of the distinct elements a tensor addresses (a broadcast, stride-0 dimension counts once)."""
    if tensor.layout != torch.strided:
        return tensor.numel() * tensor.element_size()
    distinct = math.prod(size for size, stride in zip(tensor.shape, tensor.stride()) if stride != 0)
    return distinct * tensor.element_size()


def op_bytes(func, args, kwargs, out) -> int:
    """Bytes one op moves under the no-cache-reuse model (see the module docstring)."""
    if func.is_view or op_name(func) in _ALLOCATIONS:
        return 0
    read = {id(t): t for t in tree_leaves((args, {k: v for k, v in kwargs.items() if k != "out"}))
            if isinstance(t, torch.Tensor)}
    written = {id(t): t for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
    return sum(map(tensor_bytes, read.values())) + sum(map(tensor_bytes, written.values()))


class AutogradNodeModules(ForwardHooks):
    """Context manager: while active, maps every autograd node a module's forward creates to the module's
    dotted name (innermost module wins; the model itself is ``""``). Walks, in each module's forward hook,
    the graph from its outputs back to the nodes its inputs carried when it was called."""

    def __init__(self, model: nn.Module) -> None:
        self._names = {id(m): name for name, m in model.named_modules()}
        self.modules: dict[Any, str] = {}  # autograd node -> module name
        self._boundaries: list[set] = []

    def _enter(self, module: nn.Module, inputs) -> None:
        if id(module) in self._names:
            self._boundaries.append({t.grad_fn for t in tree_leaves(inputs)
                                     if isinstance(t, torch.Tensor) and t.grad_fn is not None})

    def _leave(self, module: nn.Module, _inputs, output) -> None:
        if id(module) not in self._names or not self._boundaries:
            return
        boundary = self._boundaries.pop()
        name = self._names[id(module)]
        for node in _new_nodes(output, boundary):
            self.modules.setdefault(node, name)  # children's hooks ran first: their nodes keep their module


def _new_nodes(output, boundary: set) -> Iterator[Any]:
    """The autograd nodes between ``output`` and the ``boundary`` nodes (the inputs' own), parameters'
    gradient accumulators excluded."""
    todo = [t.grad_fn for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen: set = set()
    while todo:
        node = todo.pop()
        if node is None or node in seen or node in boundary:
            continue
        seen.add(node)
        if type(node).__name__ == "AccumulateGrad":
            continue
        yield node
        todo.extend(next_node for next_node, _ in node.next_functions)


class LayerCostCounter(OpCounter):
    """:class:`OpCounter` (the summary's FLOP counter, unchanged) that also sums each op's bytes moved, and
    attributes backward ops to the module whose forward made the autograd node being run."""

    def __init__(self, model: nn.Module | None = None, node_modules: dict | None = None) -> None:
        super().__init__(model)
        self._node_modules = node_modules if node_modules is not None else {}
        self.bytes: Counter = Counter()  # module -> bytes moved by the ops run directly in it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        node = torch._C._current_autograd_node()
        backward_module = self._node_modules.get(node) if node is not None else None
        if backward_module is not None:
            self._stack.append(backward_module)
        try:
            out = OpCounter.__torch_dispatch__(self, func, types, args, kwargs)
            self.bytes[self._stack[-1]] += op_bytes(func, args, kwargs, out)
        finally:
            if backward_module is not None:
                self._stack.pop()
        return out


defer_dynamo_import(LayerCostCounter)


@dataclass(frozen=True)
class PassCosts:
    """One pass (forward or backward): the op counts by module and the bytes each module's own ops moved."""

    counts: OpCounts = field(default_factory=OpCounts)
    own_bytes: dict[str, int] = field(default_factory=dict)

    def subtree(self, kind: str) -> dict[str, int]:
        return self.counts.module_totals(kind)

    def subtree_bytes(self) -> dict[str, int]:
        totals: Counter = Counter()
        for module, value in self.own_bytes.items():
            parts = module.split(".") if module else []
            for i in range(len(parts) + 1):
                totals[".".join(parts[:i])] += value
        return dict(totals)


@dataclass(frozen=True)
class ModuleCosts:
    """Per module (dotted name, ``""`` the model; counts for the whole subtree): ``macs`` (the summary's
    convention), ``flops`` (2 x macs), ``work_flops`` (every counted operation: 2 per MAC of matrix work,
    normalisation and pooling, plus 1 per elementwise operation: the numerator of arithmetic intensity),
    ``bytes`` moved; forward and backward added up in a training step."""

    macs: dict[str, int]
    work_flops: dict[str, int]
    bytes: dict[str, int]
    forward: PassCosts
    backward: PassCosts | None

    @property
    def flops(self) -> dict[str, int]:
        return {name: 2 * value for name, value in self.macs.items()}

    @property
    def total_macs(self) -> int:
        return self.macs.get("", 0)


def module_costs(model: nn.Module, step: Callable[[], Any], mode: str) -> ModuleCosts:
    """Count one step of ``model`` (``step()`` runs its forward and, in ``train`` mode, returns the loss to
    differentiate): ``infer`` counts an eval-mode forward without gradients, ``train`` a training-mode
    forward and the backward of the returned loss with respect to the trainable parameters (nothing
    accumulates into ``.grad``). Modes, buffers and the RNG are restored."""
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved_state(model), torch.inference_mode(False):
        model.train(mode == "train")
        if mode != "train":
            with torch.no_grad(), LayerCostCounter(model) as counter:
                step()
            forward, backward = PassCosts(counter.counts(), dict(counter.bytes)), None
        else:
            with torch.enable_grad(), AutogradNodeModules(model) as nodes:
                forward_counter = LayerCostCounter(model)
                with forward_counter:
                    loss = step()
            backward_counter = LayerCostCounter(node_modules=nodes.modules)
            if params and loss is not None and loss.requires_grad:
                with torch.enable_grad(), backward_counter:
                    torch.autograd.grad(loss, params, allow_unused=True)
            del loss
            forward = PassCosts(forward_counter.counts(), dict(forward_counter.bytes))
            backward = PassCosts(backward_counter.counts(), dict(backward_counter.bytes))
    passes = [p for p in (forward, backward) if p is not None]
    return ModuleCosts(
        macs=_added(*(p.subtree(MACS) for p in passes)),
        work_flops=_added(*({k: 2 * v for k, v in p.subtree(MACS).items()} for p in passes),
                          *({k: 2 * v for k, v in p.subtree(NORM_POOL).items()} for p in passes),
                          *(p.subtree(OTHER) for p in passes)),
        bytes=_added(*(p.subtree_bytes() for p in passes)),
        forward=forward,
        backward=backward,
    )


def _added(*mappings: dict[str, int]) -> dict[str, int]:
    total: Counter = Counter()
    for mapping in mappings:
        total.update(mapping)
    return dict(total)
