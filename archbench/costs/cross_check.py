"""fvcore's count of a model's forward (:func:`fvcore_counts`, one trace in eval mode) against archbench's
(``macs_with_norm``, the same convention), kind by kind: where they differ by more than :data:`AGREEMENT`,
the note says why (an op fvcore skips, attention it sees decomposed). The summary
(:mod:`archbench.costs.summary`) reports it beside the counts."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from archbench.costs.counting import MEAN_OF_SQUARES, preserved_state
from archbench.costs.locate import one_line
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory
from archbench.units import si
from archbench.usercode import exits_as_failures

AGREEMENT = 0.02  # the cross-check flags counters more than 2% apart


@dataclass(frozen=True)
class FvcoreCounts:
    """fvcore's forward count (MACs) in total and by operator, and the ops it ran but could not count."""

    macs: int
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]
    uncalled_modules: frozenset[str] = frozenset()  # modules the eval-mode forward never called


def fvcore_counts(model: nn.Module, inputs: tuple, kwargs: Mapping[str, Any] | None = None) -> FvcoreCounts:
    """fvcore's ``FlopCountAnalysis`` of one eval-mode forward (its jit trace) of ``model(*inputs, **kwargs)``,
    warnings silenced.

    fvcore falls short in three ways we wrap: its import and trace emit torch.jit deprecation warnings,
    it reports skipped ops only as warnings (we silence those and return the skipped ops instead), and its
    trace takes positional inputs only (keyword inputs go through :class:`_KeywordCall`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        traced, tensors = (model, inputs) if not kwargs else _KeywordCall.wrapping(model, inputs, kwargs)
        # Grad stays enabled: under no_grad, nn.MultiheadAttention takes its fused fast path, which
        # fvcore cannot see into (ViT's attention projections would go uncounted).
        with preserved_state(model), torch.inference_mode(False), torch.enable_grad():
            model.eval()
            analysis = FlopCountAnalysis(traced, tensors)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            by_operator = {name: int(v) for name, v in analysis.by_operator().items() if v}
            uncounted = _strip_aten(analysis.unsupported_ops())
            uncalled = frozenset(analysis.uncalled_modules())
    if traced is not model:  # the wrapper's names: "model.blocks.0" -> "blocks.0"
        uncalled = frozenset(_KeywordCall.inner_name(name) for name in uncalled)
    return FvcoreCounts(macs, by_operator, uncounted, uncalled)


class _KeywordCall(nn.Module):
    """Calls ``model(*args, **kwargs)`` from the tensors of that call given positionally (the other values
    fixed), so that fvcore's jit trace, which passes positional inputs only, can trace a keyword call."""

    def __init__(self, model: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> None:
        super().__init__()
        self.model = model
        self._leaves, self._structure = tree_flatten((tuple(args), dict(kwargs)))
        self._slots = [i for i, leaf in enumerate(self._leaves) if isinstance(leaf, torch.Tensor)]

    @classmethod
    def wrapping(cls, model: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> tuple[_KeywordCall, tuple]:
        """The wrapper and the tensors to trace it with."""
        wrapper = cls(model, args, kwargs)
        return wrapper, tuple(wrapper._leaves[i] for i in wrapper._slots)

    @staticmethod
    def inner_name(name: str) -> str:
        return "" if name == "model" else name.removeprefix("model.")

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self._leaves)
        for slot, tensor in zip(self._slots, tensors):
            leaves[slot] = tensor
        args, kwargs = tree_unflatten(leaves, self._structure)
        return self.model(*args, **kwargs)


def _strip_aten(ops: Counter) -> dict[str, int]:
    return {str(op).removeprefix("aten::"): int(n) for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))}



@dataclass(frozen=True)
class CrossCheck:
    """fvcore's forward count against archbench's ``macs_with_norm`` (the same convention), kind by kind."""

    fvcore_macs: int | None  # None: fvcore could not trace the model (note says why)
    fvcore_by_kind: dict[str, int]
    archbench_by_kind: dict[str, int]
    difference: float
    agrees: bool | None  # None: not cross-checked
    note: str


def fvcore_or_why(model: nn.Module, x: ModelInputs):
    """fvcore's counts, or ``(None, why not)``: the model ran (its training step did), so a trace that
    fails only costs the cross-check."""
    try:
        with exits_as_failures("the model's forward"):  # fvcore's trace calls the forward itself
            return fvcore_counts(model, x.args, x.kwargs), ""
    except Exception as error:  # noqa: BLE001 - the model ran (the training step did): fvcore failed
        if is_out_of_memory(error):
            raise
        return None, f"fvcore could not trace the model: {one_line(error)}"




# fvcore's operator names and aten op names, by the kind of work they do.
_KINDS = {
    "conv": "convolution", "_convolution": "convolution", "convolution": "convolution",
    "linear": "matrix product", "addmm": "matrix product", "mm": "matrix product", "matmul": "matrix product",
    "bmm": "matrix product", "baddbmm": "matrix product", "einsum": "matrix product",
    "batch_norm": "normalisation", "native_batch_norm": "normalisation", "_native_batch_norm_legit": "normalisation",
    "_native_batch_norm_legit_no_training": "normalisation", "layer_norm": "normalisation",
    "native_layer_norm": "normalisation", "group_norm": "normalisation", "native_group_norm": "normalisation",
    "instance_norm": "normalisation", "adaptive_avg_pool2d": "pooling", "_adaptive_avg_pool2d": "pooling",
    "mean": "pooling", "upsample_nearest2d": "upsampling", "upsample_bilinear2d": "upsampling",
    MEAN_OF_SQUARES: "normalisation", "rms_norm": "normalisation",
    # recurrent layers: fvcore's names (it has no formula for them) and the fused kernels archbench counts
    "lstm": "recurrent", "gru": "recurrent", "rnn_tanh": "recurrent", "rnn_relu": "recurrent",
    "mkldnn_rnn_layer": "recurrent", "_cudnn_rnn": "recurrent", "miopen_rnn": "recurrent",
}
# fvcore's skipped ops whose work archbench counts as matrix products (mm/addmm/bmm) when they run
# decomposed: attention by SDPA's math path (an explicit mask, dropout), recurrent layers on the CPU
_DECOMPOSED_BY_KIND = {"attention": "bmm: attention run as batched matrix products (SDPA's math path)",
                       "recurrent": "mm/addmm: recurrent layers run step by step"}


def op_kind(op: str) -> str:
    """The kind of a counted op (fvcore operator or aten op name): convolution, matrix product, attention,
    normalisation, pooling, upsampling (or the op itself)."""
    if "attention" in op:
        return "attention"
    if op.startswith("upsample") or op.startswith("_upsample"):
        return "upsampling"
    return _KINDS.get(op, op)


def _by_kind(by_op: dict[str, int]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for op, value in by_op.items():
        kinds[op_kind(op)] = kinds.get(op_kind(op), 0) + value
    return kinds


def cross_check_counts(fvcore_total: int, fvcore_by_operator: dict[str, int], fvcore_uncounted: dict[str, int],
                macs_by_op: dict[str, int], norm_pool_by_op: dict[str, int]) -> CrossCheck:
    """Compare fvcore's forward count with archbench's ``macs_with_norm`` (the same convention), kind by
    kind, naming what one counts and the other does not."""
    fv = _by_kind(fvcore_by_operator)
    ours = _by_kind({**macs_by_op, **{op: v for op, v in norm_pool_by_op.items()}})
    ours_total = sum(ours.values())
    difference = abs(fvcore_total - ours_total) / max(fvcore_total, ours_total) if max(fvcore_total, ours_total) else 0.0
    agrees = difference <= AGREEMENT
    reasons = []
    for kind in sorted(set(fv) | set(ours)):
        a, b = fv.get(kind, 0), ours.get(kind, 0)
        if abs(a - b) <= AGREEMENT * max(a, b):
            continue
        if a == 0:
            skipped = _skipped_by_fvcore(kind, fvcore_uncounted)
            why = f" (fvcore has no formula for {', '.join(skipped)}{_decomposed(kind, skipped)})" if skipped else ""
            reasons.append(f"archbench counts {kind} ({si(b, 'MACs', 3)}) that fvcore does not{why}")
        elif b == 0:
            reasons.append(f"fvcore counts {kind} ({si(a, 'MACs', 3)}) that archbench does not")
        else:
            reasons.append(f"{kind}: fvcore {si(a, 'MACs', 3)} vs archbench {si(b, 'MACs', 3)}"
                           + _difference_cause(kind, a, b, fvcore_by_operator, macs_by_op, fvcore_uncounted))
    verdict = (f"fvcore's total ({si(fvcore_total, 'MACs', 3)}) agrees with macs_with_norm ({difference:.2%} apart)" if agrees
               else f"fvcore's total ({si(fvcore_total, 'MACs', 3)}) and macs_with_norm differ by {difference:.1%}")
    note = verdict + ("; " + "; ".join(reasons) if reasons else "")
    return CrossCheck(fvcore_total, fv, ours, difference, agrees, note)


def _difference_cause(kind: str, fvcore_macs: int, ours: int, fvcore_by_operator: dict[str, int],
                      macs_by_op: dict[str, int], fvcore_uncounted: dict[str, int]) -> str:
    """Why one kind differs: the ops each side counted in it, and the ops fvcore skipped that archbench
    counts in this kind (attention or a recurrent layer run as plain matrix products)."""
    def ops(by_op: dict[str, int]) -> str:
        return ", ".join(f"{op} {si(v, '', 3).strip()}" for op, v in by_op.items() if op_kind(op) == kind)

    cause = f" (fvcore: {ops(fvcore_by_operator)}; archbench: {ops(macs_by_op)})"
    skipped = _skipped_by_fvcore(kind, fvcore_uncounted) if ours > fvcore_macs else []
    if skipped:
        cause += f": fvcore has no formula for {', '.join(skipped)}{_decomposed(kind, skipped)}"
    return cause


def _skipped_by_fvcore(kind: str, fvcore_uncounted: dict[str, int]) -> list[str]:
    """The ops fvcore skipped whose work archbench counts in ``kind`` (attention and recurrent layers
    run as matrix products count there)."""
    return [op for op in fvcore_uncounted if op_kind(op) == kind
            or (kind == "matrix product" and op_kind(op) in _DECOMPOSED_BY_KIND)]


def _decomposed(kind: str, skipped: list[str]) -> str:
    """``", which archbench counts here as bmm: ..."`` for skipped ops counted as matrix products."""
    kinds = sorted({op_kind(op) for op in skipped} & set(_DECOMPOSED_BY_KIND)) if kind == "matrix product" else []
    return f", which archbench counts here as {'; '.join(_DECOMPOSED_BY_KIND[k] for k in kinds)}" if kinds else ""


def not_cross_checked(reason: str, macs_by_op: dict[str, int], norm_pool_by_op: dict[str, int]) -> CrossCheck:
    """The cross-check of a model fvcore could not count (nothing is left out as not run at inference)."""
    ours = _by_kind({**macs_by_op, **norm_pool_by_op})
    return CrossCheck(None, {}, ours, math.nan, None, f"not cross-checked: {reason}")


