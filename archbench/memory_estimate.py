"""The memory a step needs at a batch, by part: parameters, gradients, optimizer state, inputs, activations
saved for backward and transient workspace (``archbench memory``, :func:`archbench.estimate_memory`).

How it is measured: a real step — forward, loss, backward and, with an optimizer, ``optimizer.step()`` —
runs twice at each of two small batches under :class:`LiveTensors`, which follows every tensor storage the
step's ops create (a ``TorchDispatchMode``: it wraps torch's dispatcher, it does not replace any kernel) and
knows when each is freed (torch's ``StorageWeakRef``). After every op it records the live bytes of each part:

* ``parameters``: parameters and buffers; ``inputs``: the batch (and labels);
* ``gradients``: ``.grad`` of the parameters (moved there when autograd accumulates them);
* ``optimizer``: the optimizer's state (SGD momentum: one buffer per parameter; Adam/AdamW: two), created by
  the first, untracked step, as in any training loop after its first iteration;
* ``activations``: storages autograd saves for backward (the definition of
  :class:`archbench.costs.counting.SavedTensorMeter`: parameters and buffers excluded, each storage once);
* ``workspace``: every other live tensor — gradients of activations, the loss, an optimizer's temporaries.

A step runs the same ops in the same order at any batch, and each op's live bytes grow linearly with the
batch, so the live bytes at op ``t`` are ``a_t + b_t * batch`` (fitted from the two batches, part by part);
the estimate at a batch is the largest of those over the step, with the parts at that moment. Under AMP
(``dtype`` bf16/fp16: torch.autocast) the parameters stay fp32 — the fp32 master weights — and autocast's
half-precision copies of them show up as activations (the ones saved for backward) or workspace.

What it cannot see: memory a kernel allocates without a tensor (oneDNN's scratchpads and reordered weights
on the CPU; cuDNN/cuBLAS workspaces on CUDA), the allocator's slack and the process's own (the torch
libraries). A measured peak (peak resident set on the CPU, ``max_memory_allocated`` on CUDA) is the check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from archbench.errors import ModelOutOfMemoryError, ModelRunError, UsageError, quoted
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory

PARTS = ("parameters", "gradients", "optimizer", "inputs", "activations", "workspace")
OPTIMIZERS = ("none", "sgd", "sgd-momentum", "adam", "adamw")
MEASURED_BATCHES = (2, 4)  # BatchNorm cannot train on one sample; two small batches fit a line


# ------------------------------------------------------------------------------------------ tracking


class LiveTensors(TorchDispatchMode):
    """Live bytes of tensor storages by part (:data:`PARTS`), recorded after every op while active.

    Storages known before (:meth:`register`) keep their part; an op's new storages are ``workspace`` until
    autograd saves them (``activations``) or accumulates them into a ``.grad`` (``gradients``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int, str]] = {}
        self._totals = dict.fromkeys(PARTS, 0)
        self.timeline: list[tuple[int, ...]] = []
        self._excluded: set[int] = set()
        self._saved = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks = [p.register_post_accumulate_grad_hook(self._on_grad) for p in model.parameters() if p.requires_grad]

    def register(self, tensors, part: str) -> None:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor, part)
                if part == "parameters":
                    self._excluded.add(tensor.untyped_storage()._cdata)

    def _add(self, tensor: torch.Tensor, part: str) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without a storage
            return
        key = storage._cdata
        known = self._live.get(key)
        if known is not None and not known[0].expired():
            return
        if known is not None:
            self._totals[known[2]] -= known[1]
        self._live[key] = (StorageWeakRef(storage), storage.nbytes(), part)
        self._totals[part] += storage.nbytes()

    def _move(self, tensor: torch.Tensor, part: str, only_from: tuple[str, ...]) -> None:
        key = tensor.untyped_storage()._cdata
        known = self._live.get(key)
        if known is None or known[0].expired() or known[2] not in only_from:
            if known is None and part == "gradients":
                self._add(tensor, part)
            return
        ref, size, old = known
        self._live[key] = (ref, size, part)
        self._totals[old] -= size
        self._totals[part] += size

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            key = tensor.untyped_storage()._cdata
        except (RuntimeError, NotImplementedError):
            return tensor
        if key not in self._excluded:
            self._move(tensor, "activations", ("workspace",))
        return tensor

    def _on_grad(self, param: torch.Tensor) -> None:
        if param.grad is not None:
            self._move(param.grad, "gradients", ("workspace", "activations"))
        self.record()

    def _sweep(self) -> None:
        for key in [k for k, (ref, _, _) in self._live.items() if ref.expired()]:
            _, size, part = self._live.pop(key)
            self._totals[part] -= size

    def record(self) -> None:
        self._sweep()
        self.timeline.append(tuple(self._totals[p] for p in PARTS))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._add(tensor, "workspace")
        self.record()
        return out

    def __enter__(self):
        self._saved.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._saved.__exit__(*exc)
            for hook in self._hooks:
                hook.remove()


# ------------------------------------------------------------------------------------------ the step


def make_optimizer(name: str, params) -> torch.optim.Optimizer | None:
    """The optimizer a training step is estimated with (torch's own; ``none``: no optimizer step)."""
    params = [p for p in params if p.requires_grad]
    if name == "none" or not params:
        return None
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    raise UsageError(f"optimizer {quoted(name)} is not one of: {', '.join(OPTIMIZERS)}.")


def training_step(model: nn.Module, inputs: Any, mode: str, dtype: str, device: str,
                  optimizer: torch.optim.Optimizer | None) -> Callable[[], None]:
    """The timed step of :func:`archbench.timing.step.make_step` (``set_to_none`` gradients, forward, loss,
    backward), then ``optimizer.step()`` when there is one."""
    from archbench.timing.step import make_step

    step = make_step(model, inputs, mode, dtype, device)
    if optimizer is None:
        return step

    def step_with_optimizer() -> None:
        step()
        optimizer.step()

    return step_with_optimizer


def step_timeline(model: nn.Module, inputs: Any, mode: str, dtype: str, device: str, optimizer: str) -> list[tuple[int, ...]]:
    """The live bytes of each part after every op of one step (the second: the first creates the optimizer's
    state and the gradients' buffers, as a training loop's first iteration does)."""
    opt = make_optimizer(optimizer, model.parameters()) if mode == "train" else None
    step = training_step(model, inputs, mode, dtype, device, opt)
    step()
    tracker = LiveTensors(model)
    tracker.register([*model.parameters(), *model.buffers()], "parameters")
    x = ModelInputs.of(inputs)
    tracker.register([*x.args, *x.kwargs.values()], "inputs")
    if opt is not None:
        tracker.register([t for state in opt.state.values() for t in state.values()], "optimizer")
    model.zero_grad(set_to_none=True)
    with tracker:
        tracker.record()
        step()
    return tracker.timeline


# ------------------------------------------------------------------------------------------ estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory one step needs at ``batch``, by part (bytes, see the module docstring), at the moment of
    the step when the total is largest (``at_op``: which op of ``ops``). ``activation_bytes_per_sample``
    grows the saved activations by one sample. :meth:`at` gives the estimate at another batch,
    :meth:`largest_batch` the largest batch within a budget."""

    model: str
    input: str
    batch: int
    mode: str
    dtype: str
    optimizer: str
    device: str
    parameters: int
    gradients: int
    optimizer_state: int
    inputs: int
    activations: int
    workspace: int
    activation_bytes_per_sample: float
    at_op: int
    ops: int
    measured_batches: tuple[int, int] = MEASURED_BATCHES
    lines: tuple[tuple[tuple[float, float], ...], ...] = field(default=(), repr=False, compare=False)

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.inputs + self.activations + self.workspace

    @property
    def parts(self) -> dict[str, int]:
        return {"parameters": self.parameters, "gradients": self.gradients, "optimizer": self.optimizer_state,
                "inputs": self.inputs, "activations": self.activations, "workspace": self.workspace}

    def at(self, batch: int) -> MemoryEstimate:
        """The estimate at ``batch`` (from the same measurement)."""
        batch = int(batch)
        totals = [sum(a + b * batch for a, b in op) for op in self.lines]
        peak = max(range(len(totals)), key=totals.__getitem__)
        values = [max(0, round(a + b * batch)) for a, b in self.lines[peak]]
        return replace(self, batch=batch, at_op=peak, **dict(zip(_FIELDS, values)))

    def largest_batch(self, budget_bytes: float) -> int:
        """The largest batch whose estimate is within ``budget_bytes`` (0: not even batch 1)."""
        limit = math.inf
        for op in self.lines:
            fixed, per_sample = sum(a for a, _ in op), sum(b for _, b in op)
            if per_sample <= 0:
                if fixed > budget_bytes:
                    return 0
                continue
            limit = min(limit, (budget_bytes - fixed) / per_sample)
        if limit == math.inf:
            raise UsageError("the step's memory does not grow with the batch: every batch fits or none does.")
        return max(0, math.floor(limit))


_FIELDS = ("parameters", "gradients", "optimizer_state", "inputs", "activations", "workspace")


def fit_lines(small: list[tuple[int, ...]], large: list[tuple[int, ...]], b1: int, b2: int
              ) -> tuple[tuple[tuple[float, float], ...], ...]:
    """Per op and part, ``(intercept, slope)`` of the line through the live bytes at batches ``b1`` and ``b2``.
    Raises when the two steps did not run the same ops (a model whose ops depend on the batch)."""
    if len(small) != len(large):
        raise ModelRunError(
            f"the step ran {len(small)} ops at batch {b1} and {len(large)} at batch {b2}: its memory cannot be "
            "extended to other batches op by op.")
    lines = []
    for first, second in zip(small, large):
        lines.append(tuple(((b2 * u - b1 * v) / (b2 - b1), (v - u) / (b2 - b1)) for u, v in zip(first, second)))
    return tuple(lines)


def estimate_step_memory(build: Callable[[], nn.Module], make_inputs: Callable[[int], Any], *, name: str, input: str,
                         batch: int, mode: str = "train", dtype: str = "fp32", optimizer: str = "none",
                         device: str = "cpu", measured_batches: tuple[int, int] = MEASURED_BATCHES) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of ``build()``'s step on ``make_inputs(batch)`` (see the module docstring).
    A fresh model is built for each measured batch, so the caller's model and its gradients are untouched."""
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer {quoted(optimizer)} is not one of: {', '.join(OPTIMIZERS)}.")
    if mode == "infer" and optimizer != "none":
        raise UsageError(f"optimizer {quoted(optimizer)} with mode infer: an inference step has no optimizer.")
    timelines = []
    b1, b2 = measured_batches
    for b in measured_batches:
        try:
            timelines.append(step_timeline(build(), make_inputs(b), mode, dtype, device, optimizer))
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is translated; the rest propagates
            if not is_out_of_memory(exc):
                raise
            raise ModelOutOfMemoryError(f"{name} ran out of memory on {device} measuring a step at batch {b}: {exc}",
                                        remedies=("smaller",)) from exc
    lines = fit_lines(timelines[0], timelines[1], b1, b2)
    activations_slope = max((op[PARTS.index("activations")][1] for op in lines), default=0.0)
    first = MemoryEstimate(name, input, batch, mode, dtype, optimizer, device, 0, 0, 0, 0, 0, 0,
                           float(activations_slope), 0, len(lines), (b1, b2), lines)
    return first.at(batch)


def estimate_memory(source, input: tuple[int, int, int] | None = None, *, batch: int = 1, mode: str = "train",
                    dtype: str = "fp32", optimizer: str = "none", device: str = "cpu",
                    model: nn.Module | None = None) -> MemoryEstimate:
    """:func:`estimate_step_memory` for a :class:`~archbench.catalog.source.ModelSource` at ``input``
    (default: its own) — images, or the source's input factory's inputs. ``model``: a module to copy
    instead of building one (the caller's is never changed)."""
    import copy

    from archbench.parsing import format_input
    from archbench.timing.step import make_images

    shape = tuple(input or source.input)
    factory = source.inputs_factory()

    def build() -> nn.Module:
        return copy.deepcopy(model).to(device) if model is not None else source.build(device)

    def make_inputs(b: int):
        return factory(b, shape, dtype, device) if factory is not None else make_images(b, shape, device)

    return estimate_step_memory(build, make_inputs, name=source.name, input=format_input(shape), batch=batch, mode=mode,
                                dtype=dtype, optimizer=optimizer, device=device)
