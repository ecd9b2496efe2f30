"""The counters behind ``archbench summary``: archbench's dispatch-level op counter (forward and backward,
every op in a bucket of :mod:`archbench.costs.formulas`), fvcore as an independent cross-check, and measured
activation memory.

* :class:`OpCounter` — a ``TorchDispatchMode`` that counts every op with :mod:`archbench.costs.formulas` and
  attributes it to the innermost module running (module hooks installed only while it is active;
  nothing of torch is patched). :func:`count_forward` counts one eval-mode forward (``meta`` works);
  :func:`count_training_step` one real training step, forward and backward, with
  :class:`SavedTensorMeter` measuring the bytes of the distinct storages autograd saves for backward
  (``saved_tensors_hooks``): a measurement, not an estimate.
* :func:`fvcore_counts` — fvcore's ``FlopCountAnalysis`` (one traced forward in eval mode). fvcore counts
  one multiply-accumulate as one "flop": we call it a MAC. It is the cross-check, and its trace tells
  which modules inference does not run.

(Counting the training step on the ``meta`` device would avoid the arithmetic, but its first use imports
torch._dynamo, ~1.5 s, more than a real backward of most models at batch 1; and the kernels a device
really runs, e.g. CPU attention, save different tensors than their meta versions.)

:func:`preserved_state` makes every pass side-effect free (modes, buffers such as BatchNorm running
statistics, the RNG).
"""

from __future__ import annotations

import contextlib
import math
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from archbench.costs.formula_registry import evaluate, formula_for, is_free, load_plugins, op_name
from archbench.costs.formulas import FREE, MACS, NORM_POOL, Formula

aten = torch.ops.aten

# --------------------------------------------------------------------------------------- side effects


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore, on exit, every submodule's train/eval flag, every buffer (BatchNorm running statistics
    and ``num_batches_tracked``) and the RNG state (dropout draws), so counting leaves no trace."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers() if b.device.type != "meta"]
    devices = sorted({t.device.index for t in [*model.parameters(), *model.buffers()] if t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):  # CPU RNG, plus these CUDA devices
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, training in modes:
            module.training = training


# ------------------------------------------------------------------------------ dispatch modes


def defer_dynamo_import(mode_cls: type) -> None:
    """Keep a TorchDispatchMode from importing torch._dynamo (~1.5 s) on first use.

    torch wraps every dispatch mode's ``__torch_dispatch__`` in ``torch._disable_dynamo``, which imports
    torch._dynamo on its first call only to mark the function as not compilable. Nothing can be compiling
    while torch._dynamo is not imported, so we call the raw function until then, and the disabled one
    once torch._dynamo is loaded (same behaviour, without the import)."""
    raw = getattr(mode_cls.__dict__.get("__torch_dispatch__"), "__wrapped__", None)
    if raw is None or getattr(raw, "__dynamo_disable", None) is not None:
        return
    disabled = []

    def dispatch(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return raw(*args, **kwargs)
        if not disabled:
            disabled.append(torch._dynamo.disable(raw, recursive=True, wrapping=False))
        return disabled[0](*args, **kwargs)

    raw.__dynamo_disable = dispatch


class _ShapesOnly(TorchDispatchMode):
    """Answers the expensive backward ops (convolution and matrix-product gradients, attention backward)
    with zero tensors of the right shapes instead of computing them.

    Counting needs only shapes, and the gradients are thrown away: this keeps the counting backward from
    costing ~2 forward passes (the cheap elementwise backward ops still run). Used below the FLOP counter,
    which sees the same ops and output shapes as a real backward."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet is aten.convolution_backward:
            _, x, w, bias_sizes = args[:4]
            mask = args[10]
            return (x.new_zeros(x.shape) if mask[0] else None, w.new_zeros(w.shape) if mask[1] else None,
                    w.new_zeros(bias_sizes) if mask[2] and bias_sizes is not None else None)
        if packet in (aten.mm, aten.addmm):
            a, b = args[-2:]
            return a.new_zeros(a.shape[0], b.shape[1])
        if packet is aten.bmm:
            a, b = args
            return a.new_zeros(a.shape[0], a.shape[1], b.shape[2])
        if packet is aten._scaled_dot_product_flash_attention_for_cpu_backward:
            _, q, k, v = args[:4]
            return q.new_zeros(q.shape), k.new_zeros(k.shape), v.new_zeros(v.shape)
        return func(*args, **kwargs)


defer_dynamo_import(_ShapesOnly)


# ------------------------------------------------------------------------------- dispatch counter


@dataclass(frozen=True)
class OpEntry:
    """One op as run directly in one module's forward (not in a child): its bucket (``macs``,
    ``norm_pool``, ``other``, ``free``, or ``None``: no formula), whose formula, how often it ran, and
    its count (MACs; operations for ``other``; 0 for ``free`` and uncounted ops)."""

    module: str  # dotted path, "" for the model itself (and for backward ops)
    op: str
    kind: str | None
    source: str
    calls: int
    value: int


@dataclass(frozen=True)
class OpCounts:
    """What one counted pass ran, op by op and module by module (see :mod:`archbench.costs.formulas`)."""

    entries: tuple[OpEntry, ...] = ()

    def total(self, kind: str, exclude: Collection[str] = ()) -> int:
        return sum(e.value for e in self._kept(exclude) if e.kind == kind)

    def by_op(self, kind: str | None, exclude: Collection[str] = ()) -> dict[str, int]:
        """``{op: count}`` of ``kind`` (largest first); ``{op: times run}`` for ``free`` and uncounted
        (``None``) ops."""
        result: Counter = Counter()
        for e in self._kept(exclude):
            if e.kind == kind:
                result[e.op] += e.calls if kind in (FREE, None) else e.value
        return dict(sorted(result.items(), key=lambda kv: (-kv[1], kv[0])))

    def sources(self, exclude: Collection[str] = ()) -> dict[str, tuple[str, str]]:
        """``{op: (bucket, whose formula)}`` of the counted ops."""
        return {e.op: (e.kind, e.source) for e in self._kept(exclude) if e.kind not in (FREE, None)}

    def module_totals(self, kind: str, exclude: Collection[str] = ()) -> dict[str, int]:
        """``{module: count of kind in its subtree}`` for every module on the path of a counted op."""
        totals: Counter = Counter()
        for e in self._kept(exclude):
            if e.kind == kind:
                for name in module_ancestors(e.module):
                    totals[name] += e.value
        return dict(totals)

    def self_totals(self, kind: str, exclude: Collection[str] = ()) -> dict[str, int]:
        """``{module: count of kind run directly in its own forward}``."""
        totals: Counter = Counter()
        for e in self._kept(exclude):
            if e.kind == kind:
                totals[e.module] += e.value
        return dict(totals)

    def uncounted_by_module(self, exclude: Collection[str] = ()) -> dict[str, dict[str, int]]:
        result: dict[str, Counter] = {}
        for e in self._kept(exclude):
            if e.kind is None:
                for name in module_ancestors(e.module):
                    result.setdefault(name, Counter())[e.op] += e.calls
        return {name: dict(ops) for name, ops in result.items()}

    def scaled(self, numerator: int, denominator: int) -> OpCounts:
        """The counts at another batch (``numerator / denominator`` of these; run counts unchanged)."""
        return OpCounts(tuple(replace(e, value=round(e.value * numerator / denominator)) for e in self.entries))

    def _kept(self, exclude: Collection[str]):
        if not exclude:
            return self.entries
        return [e for e in self.entries if e.module not in exclude]


def module_ancestors(module: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a", "a.b", "a.b.c"]``."""
    parts = module.split(".") if module else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


class OpCounter(TorchDispatchMode):
    """Counts every op dispatched while active with :mod:`archbench.costs.formulas`, attributed to the
    innermost module of ``model`` whose forward was running (global module hooks, installed only while
    the counter is active). Nothing of torch is patched."""

    def __init__(self, model: nn.Module | None = None) -> None:
        super().__init__()
        load_plugins()
        self._names = {id(m): name for name, m in model.named_modules()} if model is not None else {}
        self._stack: list[str] = [""]
        self._calls: Counter = Counter()
        self._values: Counter = Counter()
        self._formulas: dict[tuple[str, str], tuple[str | None, str]] = {}
        self._hooks: list = []
        self._squares = _Squares()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op, formula = op_name(func), formula_for(func)
        if self._squares.of_square(func, args):
            op, formula = MEAN_OF_SQUARES, MEAN_OF_SQUARES_FORMULA
        self._squares.note(func, args, out)
        self._record(op, formula, func, args, kwargs, out)
        if formula is not None and formula.also is not None:  # a fused kernel's second count (RNN gates)
            suffix, also = formula.also
            self._record(f"{op} {suffix}", also, func, args, kwargs, out)
        return out

    def _record(self, op: str, formula: Formula | None, func, args, kwargs, out) -> None:
        key = (self._stack[-1], op)
        self._calls[key] += 1
        if formula is not None:
            self._values[key] += evaluate(formula, args, kwargs, out)
            self._formulas[key] = (formula.kind, formula.source)
        elif key not in self._formulas:
            self._formulas[key] = (FREE, "no arithmetic") if is_free(func) else (None, "no formula")

    def counts(self) -> OpCounts:
        return OpCounts(tuple(OpEntry(module, op, *self._formulas[(module, op)], calls, self._values[(module, op)])
                              for (module, op), calls in self._calls.items()))

    def __enter__(self) -> OpCounter:
        if self._names:
            self._hooks = [nn.modules.module.register_module_forward_pre_hook(self._enter_module),
                           nn.modules.module.register_module_forward_hook(self._leave_module, always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _enter_module(self, module: nn.Module, _inputs) -> None:
        self._stack.append(self._names.get(id(module), self._stack[-1]))

    def _leave_module(self, module: nn.Module, _inputs, _output) -> None:
        if len(self._stack) > 1:
            self._stack.pop()


defer_dynamo_import(OpCounter)

MEAN_OF_SQUARES = "mean (rms_norm)"
MEAN_OF_SQUARES_FORMULA = Formula(NORM_POOL, lambda x_shape, *args, out_shape=None, **kwargs: math.prod(x_shape),
                                  "fvcore's mean, as normalisation (a mean of squares: RMSNorm)")


class _Squares:
    """Which tensors are squares (``x.pow(2)``, ``x * x``), so that a ``mean`` of one is told apart from a
    ``mean`` that pools. RMSNorm is written as ``x.pow(2).mean(-1, keepdim=True)`` (``nn.RMSNorm``, timm's
    RmsNorm2d, Hugging Face's Gemma and Llama): recognised by this op context, whatever the module is
    called, rather than by guessing module class names. Holds weak references only."""

    def __init__(self) -> None:
        self._squares: dict[int, weakref.ref] = {}

    def note(self, func, args, out) -> None:
        packet = func._overloadpacket
        square = ((packet is aten.pow and len(args) > 1 and not isinstance(args[1], torch.Tensor) and args[1] == 2)
                  or (packet is aten.mul and len(args) > 1 and args[0] is args[1]))
        if square and isinstance(out, torch.Tensor):
            self._squares[id(out)] = weakref.ref(out)

    def of_square(self, func, args) -> bool:
        """Whether ``func`` is a ``mean`` of a square."""
        if func._overloadpacket is not aten.mean or not args or not isinstance(args[0], torch.Tensor):
            return False
        held = self._squares.get(id(args[0]))
        return held is not None and held() is args[0]


def count_forward(model: nn.Module, *inputs: Any) -> OpCounts:
    """The counts of one eval-mode forward of ``model`` on ``inputs`` (any device, ``meta`` included),
    without gradients; modes, buffers and the RNG are restored on exit. Never under inference mode:
    its tensors would hide the ops from the counter."""
    with preserved_state(model), torch.inference_mode(False), torch.no_grad():
        model.eval()
        with OpCounter(model) as counter:
            model(*inputs)
    return counter.counts()


@dataclass(frozen=True)
class TrainingStepCounts:
    """One real training step: the counts of its forward and backward, and the bytes autograd saved
    for backward."""

    forward: OpCounts
    backward: OpCounts
    activation_bytes: int

    @property
    def backward_flops(self) -> int:
        return 2 * self.backward.total(MACS)

    def scaled(self, numerator: int, denominator: int) -> TrainingStepCounts:
        """The counts at another batch: ``numerator / denominator`` of these (op run counts unchanged)."""
        return TrainingStepCounts(self.forward.scaled(numerator, denominator),
                                  self.backward.scaled(numerator, denominator),
                                  round(self.activation_bytes * numerator / denominator))


def count_training_step(model: nn.Module, forward: Callable[[], Any]) -> TrainingStepCounts:
    """Run ``forward()`` (a call of ``model``) in training mode and its backward, counting both with
    :class:`OpCounter` and measuring saved activations.

    The backward is ``torch.autograd.grad`` of the outputs' sum with respect to the trainable parameters,
    so nothing accumulates into ``.grad``; modes, buffers and the RNG are restored on exit."""
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved_state(model), torch.inference_mode(False), torch.enable_grad():
        model.train()
        forward_counter, backward_counter = OpCounter(model), OpCounter()
        with SavedTensorMeter(model) as meter, forward_counter:
            output = forward()
        outputs = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.requires_grad]
        losses = [t.float().sum() for t in outputs]  # the loss is not the model's: left uncounted
        if outputs and params:
            with _ShapesOnly(), backward_counter:  # the counter sees each op first, then _ShapesOnly
                torch.autograd.grad(sum(losses), params, allow_unused=True)
        del output, outputs, losses
    return TrainingStepCounts(forward_counter.counts(), backward_counter.counts(), meter.bytes)


# -------------------------------------------------------------------------------- activation memory


class SavedTensorMeter:
    """Context manager: the bytes of the distinct storages autograd saves for backward while it is
    active. Parameters and buffers are excluded (they are memory the model holds anyway); views of one
    storage (and in-place results) count once."""

    def __init__(self, model: nn.Module) -> None:
        self._excluded = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}
        self._storages: dict[int, int] = {}
        self._context = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key is not None and key not in self._excluded:
            self._storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    def __enter__(self) -> SavedTensorMeter:
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _storage_key(tensor: torch.Tensor) -> int | None:
    """The identity of a tensor's storage (its C++ StorageImpl; also distinct on ``meta``)."""
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # tensor subclasses without a storage
        return None
