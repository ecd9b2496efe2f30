"""The counters behind ``archbench summary``: MACs (fvcore), forward/backward FLOPs (torch's
``FlopCounterMode`` with grouped convolutions fixed) and measured activation memory.

Each counter runs at most one forward pass:

* :func:`fvcore_counts` — fvcore's ``FlopCountAnalysis`` (one traced forward in eval mode, the convention
  of published MAC counts: BatchNorm as inference). fvcore counts one multiply-accumulate as one "flop":
  we call it a MAC.
* :func:`count_training_step` — one real training step (forward + backward) under torch's
  ``FlopCounterMode``, with its convolution-backward formula replaced by one that respects ``groups``,
  and :class:`SavedTensorMeter` measuring the bytes of the distinct storages autograd saves for backward
  (``saved_tensors_hooks``): a measurement, not an estimate.

(Counting on the ``meta`` device would avoid the arithmetic, but its first use imports torch._dynamo,
~1.5 s, more than a real backward of most models at batch 1; and the kernels a device really runs, e.g.
CPU attention, save different tensors than their meta versions.)

:func:`preserved_state` makes every pass side-effect free (modes, buffers such as BatchNorm running
statistics, the RNG).
"""

from __future__ import annotations

import contextlib
import sys
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._pytree import tree_leaves
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten

# fvcore's operator names (``FlopCountAnalysis.by_operator``) that FlopCounterMode also counts, by kind.
FVCORE_KINDS = {
    "conv": "convolution",
    "_convolution": "convolution",
    "linear": "matrix product",
    "addmm": "matrix product",
    "mm": "matrix product",
    "matmul": "matrix product",
    "bmm": "matrix product",
    "einsum": "matrix product",
}
# Ops that move or allocate data and do no arithmetic: not "uncounted" when a counter has no formula.
_FREE_OPS = {
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "expand_as", "clone", "copy_",
    "detach", "alias", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
    "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "fill_", "zero_",
    "as_strided", "slice", "select", "cat", "stack", "split", "split_with_sizes", "chunk", "unbind",
    "unsqueeze", "squeeze", "flatten", "unflatten", "_to_copy", "to", "contiguous", "lift_fresh", "arange",
    "narrow", "index_select", "select_backward", "slice_backward", "_reshape_alias", "constant_pad_nd",
    "pad", "native_dropout", "bernoulli_", "dropout", "scalar_tensor", "_local_scalar_dense", "sym_size",
    "sym_stride", "sym_numel", "is_same_size", "_has_compatible_shallow_copy_type", "split_copy",
    "view_copy", "squeeze_copy", "unsqueeze_copy", "new_empty_strided", "masked_fill_", "randn", "rand",
    "randint", "normal_", "uniform_",
}


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


# ------------------------------------------------------------------------------------------ fvcore


@dataclass(frozen=True)
class FvcoreCounts:
    """fvcore's forward count (MACs) in total, by module (recursive) and by operator, and the ops it ran
    but could not count (overall and by module)."""

    macs: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]
    uncounted_by_module: dict[str, dict[str, int]]
    uncalled_modules: frozenset[str] = frozenset()  # modules the eval-mode forward never called


def fvcore_counts(model: nn.Module, inputs: tuple) -> FvcoreCounts:
    """fvcore's ``FlopCountAnalysis`` of one eval-mode forward (its jit trace), warnings silenced.

    fvcore falls short in two ways we wrap: its import and trace emit torch.jit deprecation warnings,
    and it reports skipped ops only as warnings; we silence those and return the skipped ops instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        # Grad stays enabled: under no_grad, nn.MultiheadAttention takes its fused fast path, which
        # fvcore cannot see into (ViT's attention projections would go uncounted).
        with preserved_state(model), torch.inference_mode(False), torch.enable_grad():
            model.eval()
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            by_module = {name: int(v) for name, v in analysis.by_module().items()}
            by_operator = {name: int(v) for name, v in analysis.by_operator().items() if v}
            uncounted = _strip_aten(analysis.unsupported_ops())
            per_module = {name: _strip_aten(analysis.unsupported_ops(name)) for name in by_module}
            uncalled = frozenset(analysis.uncalled_modules())
    return FvcoreCounts(macs, by_module, by_operator, uncounted, {k: v for k, v in per_module.items() if v}, uncalled)


def _strip_aten(ops: Counter) -> dict[str, int]:
    return {str(op).removeprefix("aten::"): int(n) for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))}


# ----------------------------------------------------------------------------------- FlopCounterMode


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``, correct for grouped and depthwise convolutions.

    torch's own formula (torch <= 2.14) computes the weight-gradient term as a dense convolution of the
    input with the output gradient, ignoring ``groups``: ``groups``x too high. Each weight element meets
    each position it slid over once per sample, so that term is 2 * N * prod(weight) * prod(spatial of the
    output gradient) (of the input, for a transposed convolution): exactly the forward count. The
    input-gradient term is torch's (the weight shape already carries in_channels / groups)."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        slid_over = x_shape[2:] if transposed else grad_out_shape[2:]
        flops += 2 * x_shape[0] * math.prod(w_shape) * math.prod(slid_over)
    return flops


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of CPU's fused attention kernel (torch's formula for the other sdpa kernels)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# Formulas torch's FlopCounterMode gets wrong (grouped convolution backward) or lacks (CPU attention,
# which it would count as zero).
FORMULA_FIXES = {
    aten.convolution_backward: conv_backward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flops,
}


def _defer_dynamo_import(mode_cls: type) -> None:
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


_defer_dynamo_import(_FlopCounterMode)


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


_defer_dynamo_import(_ShapesOnly)


class _CoverageFlopCounter(FlopCounterMode):
    """FlopCounterMode that also records the ops it has no formula for (it counts those as zero,
    silently; we list them)."""

    def __init__(self) -> None:
        super().__init__(display=False, custom_mapping=FORMULA_FIXES)
        self.uncounted: Counter = Counter()

    def _count_flops(self, func_packet, out, args, kwargs):
        if func_packet not in self.flop_registry:
            name = func_packet.__name__
            if name not in _FREE_OPS and not name.endswith("_copy"):
                self.uncounted[name] += 1
        return super()._count_flops(func_packet, out, args, kwargs)

    def by_op(self) -> dict[str, int]:
        return {op.__name__: int(n) for op, n in self.flop_counts.get("Global", {}).items() if n}


@dataclass(frozen=True)
class TrainingStepCounts:
    """One real training step: FlopCounterMode's counts (2 FLOPs per MAC) of its forward and backward,
    the ops those counts had no formula for, and the bytes autograd saved for backward."""

    forward_flops: int
    backward_flops: int
    activation_bytes: int
    forward_by_op: dict[str, int] = field(default_factory=dict)
    backward_by_op: dict[str, int] = field(default_factory=dict)
    forward_uncounted: dict[str, int] = field(default_factory=dict)
    backward_uncounted: dict[str, int] = field(default_factory=dict)

    def scaled(self, numerator: int, denominator: int) -> "TrainingStepCounts":
        """The counts at another batch: ``numerator / denominator`` of these (op run counts unchanged)."""
        scale = lambda value: round(value * numerator / denominator)  # noqa: E731
        return TrainingStepCounts(
            forward_flops=scale(self.forward_flops),
            backward_flops=scale(self.backward_flops),
            activation_bytes=scale(self.activation_bytes),
            forward_by_op={op: scale(v) for op, v in self.forward_by_op.items()},
            backward_by_op={op: scale(v) for op, v in self.backward_by_op.items()},
            forward_uncounted=self.forward_uncounted,
            backward_uncounted=self.backward_uncounted,
        )


def count_training_step(model: nn.Module, forward: Callable[[], Any]) -> TrainingStepCounts:
    """Run ``forward()`` (a call of ``model``) in training mode and its backward, counting FLOPs with
    FlopCounterMode (grouped-convolution fix) and measuring saved activations.

    The backward is ``torch.autograd.grad`` of the outputs' sum with respect to the trainable parameters,
    so nothing accumulates into ``.grad``; modes, buffers and the RNG are restored on exit."""
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved_state(model), torch.inference_mode(False), torch.enable_grad():
        model.train()
        forward_counter, backward_counter = _CoverageFlopCounter(), _CoverageFlopCounter()
        with SavedTensorMeter(model) as meter, forward_counter:
            output = forward()
        outputs = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.requires_grad]
        if outputs and params:
            loss = sum(t.float().sum() for t in outputs)  # the loss is not the model's: left uncounted
            with _ShapesOnly(), backward_counter:  # the counter sees each op first, then _ShapesOnly
                torch.autograd.grad(loss, params, allow_unused=True)
        del output, outputs
    return TrainingStepCounts(
        forward_flops=forward_counter.get_total_flops(),
        backward_flops=backward_counter.get_total_flops(),
        activation_bytes=meter.bytes,
        forward_by_op=forward_counter.by_op(),
        backward_by_op=backward_counter.by_op(),
        forward_uncounted=dict(forward_counter.uncounted.most_common()),
        backward_uncounted=dict(backward_counter.uncounted.most_common()),
    )


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

    def __enter__(self) -> "SavedTensorMeter":
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
