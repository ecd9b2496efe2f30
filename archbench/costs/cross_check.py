"""fvcore's count of a model's forward against archbench's (``macs_with_norm``, the same convention), kind by
kind: where they differ by more than :data:`AGREEMENT`, the note says why (an op fvcore skips, attention it
sees decomposed). The summary (:mod:`archbench.costs.summary`) reports it beside the counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from archbench.costs.counting import MEAN_OF_SQUARES, fvcore_counts
from archbench.costs.locate import one_line
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory
from archbench.units import si
from archbench.usercode import exits_as_failures

AGREEMENT = 0.02  # the cross-check flags counters more than 2% apart


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


