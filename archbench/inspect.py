"""What a model costs at one input and batch: the layer table, MACs/FLOPs (forward and backward),
parameter and activation memory, counter coverage and a cross-check (``archbench summary``).

Two passes over the model, each feeding several counters:

1. one real training step (:func:`archbench.counting.count_training_step`): its forward runs under
   :class:`archbench.locate.ModuleTrace` (a failure is located to its module), torchinfo's hooks
   (:class:`archbench.layers.TorchinfoHooks`: the layer table) and the saved-tensor meter (activation
   memory, measured); forward and backward run under torch's ``FlopCounterMode`` (backward FLOPs,
   grouped convolutions counted correctly; the cross-check);
2. one fvcore trace in eval mode (:func:`archbench.counting.fvcore_counts`): MACs in total, per layer
   and per operator, the ops it could not count and the modules inference does not run (shown as not
   run in the layer table).

The model is left as it was: modes, buffers (BatchNorm statistics), gradients, RNG, no hooks.

JSON schema (:func:`summary_to_json`, ``archbench summary --json``), ``schema`` =
``"archbench.summary/1"``; every count is for the whole batch:

====================== ===============================================================================
``model``              model name; ``family``, ``description`` (what the spec reproduces)
``input``              ``[C, H, W]``; ``batch`` (int); ``device``; ``dtype`` (``"fp32"``); ``torch``
``overrides``          the ``--set`` arguments applied (object)
``conventions``        object: how ``macs``, ``flops_*`` and ``activation_bytes`` are defined (text)
``params_total``       parameters (shared ones once); ``params_trainable``, ``params_non_trainable``
``buffers``            buffer elements (e.g. BatchNorm running statistics)
``param_bytes``        bytes of parameters and buffers
``macs``               forward multiply-accumulates, fvcore's count (1 MAC = 1 fused multiply-add)
``flops_forward``      2 x ``macs``
``flops_backward``     FLOPs of a training step's backward (torch FlopCounterMode formulas: convolution,
                       matrix-product and attention gradients; grouped convolutions fixed)
``activation_bytes``   bytes autograd saved for backward in a training-mode forward (measured;
                       parameters excluded, each storage once)
``training_batch``     the batch the training step was counted at: ``batch``, or 2 (then scaled to
                       batch 1) for a model whose BatchNorm cannot train on one sample (inception_v3)
``uncounted_ops``      ``{op: times run}``: forward ops that fvcore ran but did not count in ``macs``
``macs_by_operator``   ``{fvcore operator: MACs}``
``backward_flops_by_op``    ``{aten op: FLOPs}``; ``backward_uncounted_ops``: ``{aten op: times run}``
                       for backward ops with no FLOP formula (not in ``flops_backward``)
``cross_check``        ``{"fvcore_flops": {kind: FLOPs}, "torch_flops": {kind: FLOPs}, "difference":
                       relative difference of the totals, "agrees": difference <= 0.02, "note": text}``
                       over the kinds both counters know (convolution, matrix product, attention)
``depth``              the deepest layer level listed (``null``: all)
``layers``             list of ``{"name": dotted path, "type": class name, "depth": 1 for the model's
                       children, "output_shape": [dims] of its first output tensor, or null if the
                       layer does not run at inference (e.g. an auxiliary head; a ModuleList), "calls":
                       times run, "params": parameters in the subtree, "macs": fvcore MACs in the subtree
                       or null if it does not run, "uncounted_ops": {op: times run}}``
====================== ===============================================================================
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from archbench.counting import FVCORE_KINDS, count_training_step, fvcore_counts
from archbench.errors import ArchbenchError, ModelOutOfMemoryError, ModelRunError
from archbench.layers import LayerRow, TorchinfoHooks, layer_rows, skipped_at_inference, torchinfo_records
from archbench.locate import ModuleTrace, describe_failure, is_out_of_memory, one_line
from archbench.options import format_input
from archbench.results import ModelStats
from archbench.spec import ModelSpec

SCHEMA = "archbench.summary/1"
AGREEMENT = 0.02  # the cross-check flags counters more than 2% apart
CONVENTIONS = {
    "macs": "forward multiply-accumulates counted by fvcore (1 MAC = 1 fused multiply-add = 2 FLOPs); "
            "fvcore counts convolutions, matrix products, normalisation, upsampling and adaptive pooling",
    "flops_forward": "2 x macs",
    "flops_backward": "backward pass of a training step, torch FlopCounterMode (convolution, matrix-product "
                      "and attention gradients; grouped-convolution weight gradients corrected)",
    "activation_bytes": "measured: bytes of the tensors autograd saves for backward in a training-mode "
                        "forward (each storage once, parameters excluded)",
}
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


class CounterError(ArchbenchError):
    """A model that runs but a counter (fvcore's trace) cannot analyse."""


@dataclass(frozen=True)
class CrossCheck:
    """fvcore against torch's FlopCounterMode (forward FLOPs), over the kinds of op both count."""

    fvcore_flops: dict[str, int]
    torch_flops: dict[str, int]
    difference: float
    agrees: bool
    note: str


@dataclass(frozen=True)
class ModelSummary:
    """Everything ``archbench summary`` shows (see the module docstring for its JSON form)."""

    model: str
    family: str
    description: str
    input: tuple[int, int, int]
    batch: int
    device: str
    dtype: str
    torch_version: str
    overrides: dict[str, Any]
    stats: ModelStats
    layers: tuple[LayerRow, ...]
    macs_by_operator: dict[str, int]
    backward_flops_by_op: dict[str, int]
    backward_uncounted_ops: dict[str, int]
    cross_check: CrossCheck
    depth: int | None
    training_batch: int  # the batch the training step was counted at (2 where BatchNorm cannot train on 1)

    @property
    def params_non_trainable(self) -> int:
        return self.stats.params_total - self.stats.params_trainable


# ------------------------------------------------------------------------------------------- API


def summarize(
    spec: ModelSpec,
    input: tuple[int, int, int] | None = None,
    batch: int = 1,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    depth: int | None = 3,
    model: nn.Module | None = None,
) -> ModelSummary:
    """Summarise ``spec`` (built with ``overrides``, or the given ``model``) on ``batch`` x ``input``
    (default: the spec's input). ``depth`` limits the layer table (``None``: every module).

    Raises :class:`ModelRunError` (the failure located to its module) if the model does not run on the
    input, :class:`~archbench.errors.DeviceUnavailableError` for ``cuda`` without a GPU."""
    from archbench.devices import require_device
    from archbench.registry import build_model

    require_device(device)
    shape = tuple(input or spec.input)
    overrides = dict(overrides or {})
    if model is None:
        model = build_model(spec, device=device, overrides=overrides)
    x = example_input(model, shape, batch, device)

    hooks = TorchinfoHooks(model) if depth != 0 else None
    try:
        step, training_batch = _training_step_counts(spec, model, x, overrides, hooks)
        counts = _fvcore(spec, model, x)
        records = None
        if hooks is not None:  # torchinfo's records from the training forward, if it ran at this batch
            records = hooks.records if training_batch == batch else torchinfo_records(model, x)
    except Exception as error:  # noqa: BLE001 - only out-of-memory is translated; the rest propagates
        if not is_out_of_memory(error):
            raise
        raise ModelOutOfMemoryError(
            f"{_model_label(spec, overrides)} ran out of memory on {device} at input {format_input(shape)}, batch "
            f"{batch} (a training step is counted): {one_line(error)}. Try a smaller --batch or --input, or "
            "another --device.") from error
    stats = _stats(spec, model, shape, batch, device, counts, step)
    return ModelSummary(
        model=spec.name,
        family=spec.family,
        description=spec.description,
        input=shape,  # type: ignore[arg-type]
        batch=batch,
        device=device,
        dtype=stats.dtype,
        torch_version=torch.__version__,
        overrides=overrides,
        stats=stats,
        layers=tuple(layer_rows(model, records, counts.by_module, counts.uncounted_by_module,
                                skipped_at_inference(model, counts.uncalled_modules), depth)) if records else (),
        macs_by_operator=dict(sorted(counts.by_operator.items(), key=lambda kv: -kv[1])),
        backward_flops_by_op=dict(sorted(step.backward_by_op.items(), key=lambda kv: -kv[1])),
        backward_uncounted_ops=step.backward_uncounted,
        cross_check=cross_check(counts.by_operator, step.forward_by_op, counts.uncounted_ops),
        depth=depth,
        training_batch=training_batch,
    )


def model_stats(
    spec: ModelSpec,
    input: tuple[int, int, int],
    batch: int = 1,
    device: str = "cpu",
    overrides: dict | None = None,
    model: nn.Module | None = None,
) -> ModelStats:
    """The counts and memory of ``spec`` at ``batch`` x ``input`` (two passes: a training step and an
    fvcore trace). Raises :class:`ModelRunError` with a located message if the model does not run."""
    return summarize(spec, input, batch, device, overrides, depth=0, model=model).stats


def example_input(model: nn.Module, shape: tuple[int, ...], batch: int, device: str) -> torch.Tensor:
    """Fixed random images (seed 0) in the model's floating dtype."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, *shape, generator=generator, dtype=dtype).to(device)


# ------------------------------------------------------------------------------------------ passes


def _training_step_counts(spec: ModelSpec, model: nn.Module, x: torch.Tensor, overrides: dict,
                          hooks: TorchinfoHooks | None = None):
    """``(counts, batch they were taken at)`` of one training step on ``x``, scaled to ``x``'s batch.

    A model with BatchNorm on a 1x1 map (e.g. inception_v3's auxiliary head) cannot train on one
    sample; at batch 1 its training step is then counted at batch 2 and halved (FLOPs are linear in the
    batch; activation memory very nearly)."""
    try:
        return _training_step(spec, model, x, overrides, hooks), x.shape[0]
    except ModelRunError as error:
        if x.shape[0] != 1 or not _batch_norm_needs_two_samples(error.__cause__):
            raise
    pair = example_input(model, tuple(x.shape[1:]), 2, str(x.device))
    return _training_step(spec, model, pair, overrides).scaled(1, 2), 2


def _batch_norm_needs_two_samples(error: BaseException | None) -> bool:
    return isinstance(error, ValueError) and "Expected more than 1 value per channel when training" in str(error)


def _training_step(spec: ModelSpec, model: nn.Module, x: torch.Tensor, overrides: dict,
                   hooks: TorchinfoHooks | None = None):
    trace = ModuleTrace(model)

    def forward():
        with trace, hooks if hooks is not None else nullcontext():
            return model(x)

    try:
        return count_training_step(model, forward)
    except Exception as error:  # noqa: BLE001 - re-raised as a located ModelRunError
        if is_out_of_memory(error):
            raise
        failed, failure = error, trace.failure_of(error)
    where = describe_failure(model, (x,), failed, failure) if failure is not None else (
        f"the training step failed: {one_line(failed)}.")
    raise ModelRunError(f"{_model_label(spec, overrides)} does not run on input {format_input(x.shape[1:])} "
                        f"(batch {x.shape[0]}, training mode): {where}") from failed


def _fvcore(spec: ModelSpec, model: nn.Module, x: torch.Tensor):
    try:
        return fvcore_counts(model, (x,))
    except Exception as error:  # noqa: BLE001 - the model ran (the training step did): fvcore failed
        if is_out_of_memory(error):
            raise
        raise CounterError(f"fvcore could not count the MACs of model '{spec.name}' (its jit trace failed): "
                           f"{one_line(error)}") from error


def _model_label(spec: ModelSpec, overrides: dict) -> str:
    settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return f"model '{spec.name}'" + (f" ({settings})" if settings else "")


def _stats(spec, model: nn.Module, shape, batch: int, device: str, counts, step) -> ModelStats:
    params = list(model.parameters())
    buffers = list(model.buffers())
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    return ModelStats(
        model=spec.name,
        input=format_input(shape),
        batch=batch,
        device=device,
        dtype=_DTYPES.get(dtype, str(dtype).removeprefix("torch.")),
        params_total=sum(p.numel() for p in params),
        params_trainable=sum(p.numel() for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in buffers),
        param_bytes=sum(t.numel() * t.element_size() for t in [*params, *buffers]),
        macs=counts.macs,
        flops_forward=2 * counts.macs,
        flops_backward=step.backward_flops,
        activation_bytes=step.activation_bytes,
        uncounted_ops=counts.uncounted_ops,
    )


# ------------------------------------------------------------------------------------- cross-check


def op_kind(op: str) -> str:
    """The kind of a counted op (fvcore operator or aten op name): convolution, matrix product, attention."""
    if op in FVCORE_KINDS:
        return FVCORE_KINDS[op]
    if "attention" in op:
        return "attention"
    if op.startswith("convolution") or op == "_convolution":
        return "convolution"
    if op in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "einsum"):
        return "matrix product"
    return op


def cross_check(fvcore_by_operator: dict[str, int], torch_by_op: dict[str, int], fvcore_uncounted: dict[str, int]) -> CrossCheck:
    """Compare fvcore's forward count with FlopCounterMode's over the kinds of op both know; elementwise
    and normalisation ops (which only fvcore counts) are left out of the comparison, and named."""
    fv: dict[str, int] = {}
    extra: dict[str, int] = {}
    for op, macs in fvcore_by_operator.items():
        if op in FVCORE_KINDS:
            fv[FVCORE_KINDS[op]] = fv.get(FVCORE_KINDS[op], 0) + 2 * macs
        else:
            extra[op] = macs
    tc: dict[str, int] = {}
    for op, flops in torch_by_op.items():
        tc[op_kind(op)] = tc.get(op_kind(op), 0) + flops
    fv_total, tc_total = sum(fv.values()), sum(tc.values())
    difference = abs(fv_total - tc_total) / max(fv_total, tc_total) if max(fv_total, tc_total) else 0.0
    agrees = difference <= AGREEMENT
    if agrees:
        note = (f"FlopCounterMode agrees with fvcore on convolutions and matrix products "
                f"({difference:.2%} apart)")
    else:
        reasons = []
        for kind in sorted(set(fv) | set(tc)):
            a, b = fv.get(kind, 0), tc.get(kind, 0)
            if a == b:
                continue
            if a == 0:
                skipped = [op for op in fvcore_uncounted if op_kind(op) == kind]
                why = f" (fvcore has no formula for {', '.join(skipped)})" if skipped else ""
                reasons.append(f"FlopCounterMode counts {kind} ({_si(b)}FLOPs) that fvcore does not{why}")
            elif b == 0:
                reasons.append(f"fvcore counts {kind} ({_si(a)}FLOPs) that FlopCounterMode does not")
            else:
                reasons.append(f"{kind}: fvcore {_si(a)}FLOPs vs FlopCounterMode {_si(b)}FLOPs")
        note = f"the counters differ by {difference:.1%}: " + "; ".join(reasons)
    if extra:
        note += f"; fvcore also counts {', '.join(sorted(extra))} ({_si(sum(extra.values()))}MACs), outside this comparison"
    return CrossCheck(fv, tc, difference, agrees, note)


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:g} "


# ------------------------------------------------------------------------------------------- JSON


def summary_to_json(summary: ModelSummary) -> dict[str, Any]:
    """The summary as one JSON-ready object (schema in the module docstring)."""
    s = summary.stats
    check = summary.cross_check
    return {
        "schema": SCHEMA,
        "model": summary.model,
        "family": summary.family,
        "description": summary.description,
        "input": list(summary.input),
        "batch": summary.batch,
        "device": summary.device,
        "dtype": summary.dtype,
        "torch": summary.torch_version,
        "overrides": summary.overrides,
        "conventions": CONVENTIONS,
        "params_total": s.params_total,
        "params_trainable": s.params_trainable,
        "params_non_trainable": summary.params_non_trainable,
        "buffers": s.buffers,
        "param_bytes": s.param_bytes,
        "macs": s.macs,
        "flops_forward": s.flops_forward,
        "flops_backward": s.flops_backward,
        "activation_bytes": s.activation_bytes,
        "training_batch": summary.training_batch,
        "uncounted_ops": dict(s.uncounted_ops),
        "macs_by_operator": summary.macs_by_operator,
        "backward_flops_by_op": summary.backward_flops_by_op,
        "backward_uncounted_ops": summary.backward_uncounted_ops,
        "cross_check": {"fvcore_flops": check.fvcore_flops, "torch_flops": check.torch_flops,
                        "difference": round(check.difference, 6), "agrees": check.agrees, "note": check.note},
        "depth": summary.depth,
        "layers": [
            {"name": row.name, "type": row.type, "depth": row.depth,
             "output_shape": list(row.output_shape) if row.output_shape is not None else None,
             "calls": row.calls, "params": row.params, "macs": row.macs, "uncounted_ops": row.uncounted_ops}
            for row in summary.layers
        ],
    }
