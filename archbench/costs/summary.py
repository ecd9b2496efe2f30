"""What a model costs at one input and batch: the layer table, MACs/FLOPs (forward and backward),
parameter and activation memory, counter coverage and a cross-check (``archbench summary``).

Two passes over the model, each feeding several counters:

1. one real training step (:func:`archbench.costs.counting.count_training_step`): its forward runs under
   :class:`archbench.costs.locate.ModuleTrace` (a failure is located to its module), torchinfo's hooks
   (:class:`archbench.costs.layers.TorchinfoHooks`: the layer table), the saved-tensor meter (activation
   memory, measured) and archbench's dispatch-level counter (:class:`archbench.costs.counting.OpCounter`:
   every op in a bucket of :mod:`archbench.costs.formulas`, attributed to its module), which also counts the
   backward over the same op set;
2. one fvcore trace in eval mode (:func:`archbench.costs.cross_check.fvcore_counts`): the independent
   cross-check, and the modules inference does not run (an auxiliary head: shown as not run and left
   out of the forward counts, as published counts leave it out).

The model is left as it was: modes, buffers (BatchNorm statistics), gradients, RNG, no hooks.

JSON schema (:func:`summary_to_json`, ``archbench summary --json``), ``schema`` =
``"archbench.summary/2"``; every count is for the whole batch:

====================== ===============================================================================
``model``              model name; ``family``, ``description`` (what the spec reproduces); ``reference``
                       (the reference as written when ``NAME=REFERENCE`` named the model; else ``""``)
``input``              ``[C, H, W]``; ``batch`` (int); ``device``; ``dtype`` (``"fp32"``); ``torch``
``overrides``          the ``--set`` arguments applied (object)
``conventions``        object: how every figure below is defined (text)
``params_total``       parameters (shared ones once); ``params_trainable``, ``params_non_trainable``
``buffers``            buffer elements (e.g. BatchNorm running statistics)
``param_bytes``        bytes of parameters and buffers
``macs``               forward multiply-accumulates of convolutions, matrix products and attention
                       (torchvision's ``_ops`` convention; 1 MAC = 2 FLOPs)
``macs_flag``          ``"incomplete: N ops uncounted"`` when the forward ran N ops with arithmetic that no
                       formula counts (``macs``, ``macs_with_norm``, ``flops_forward`` leave them out; see
                       ``uncounted_ops``), else ``""``; ``flops_backward_flag`` the same for the backward
``macs_with_norm``     ``macs`` + normalisation and pooling, fvcore's formulas (fvcore / timm convention)
``other_ops``          activations, elementwise ops, softmax, max pooling: operations, one per element
``flops_forward``      2 x ``macs``
``flops_backward``     2 x the backward MACs of a training step, over the op set of ``macs``
``activation_bytes``   bytes autograd saved for backward in a training-mode forward (measured;
                       parameters and buffers excluded, each storage once)
``training_batch``     the batch the training step was counted at: ``batch``, or 2 (then scaled to
                       batch 1) for a model whose BatchNorm cannot train on one sample (inception_v3)
``macs_by_op``         ``{aten op: MACs}`` of ``macs``; ``norm_pool_macs_by_op``: of the norm/pool part
``other_ops_by_op``    ``{aten op: operations}``
``free_ops``           ``{aten op: times run}``: ops that do no arithmetic (views, copies, fills)
``uncounted_ops``      ``{aten op: times run}``: forward ops no formula counts
``formulas``           ``{aten op: "bucket: whose formula"}`` (``torch``, ``archbench``, ``fvcore``,
                       ``conventional``, ``user (...)``, ``plugin ...``)
``backward_flops_by_op``    ``{aten op: FLOPs}``; ``backward_other_ops_by_op``; ``backward_uncounted_ops``
``cross_check``        ``{"fvcore_macs": fvcore's total, "fvcore_by_kind": {kind: MACs}, "archbench_by_kind":
                       {kind: MACs} (of ``macs_with_norm``), "difference": relative difference of the
                       totals, "agrees": difference <= 0.02, "note": the difference, kind by kind}``
``depth``              the deepest layer level listed (``null``: all)
``layers``             list of ``{"name": dotted path, "type": class name, "depth": 1 for the model's
                       children, "output_shape": [dims] of its first output tensor, or null if the
                       layer does not run at inference (e.g. an auxiliary head; a ModuleList), "calls":
                       times run, "params": parameters in the subtree, "macs", "macs_with_norm": in the
                       subtree or null if it does not run, "uncounted_ops": {op: times run}}``; a row
                       named ``"<module> (self)"`` holds the ops run in that module's own forward, so
                       the rows of each level add up to their parent (and depth 1 to the total)
====================== ===============================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archbench.catalog.source import ModelSource
from archbench.costs.counting import count_training_step
from archbench.costs.cross_check import (
    CrossCheck,
    cross_check_counts,
    fvcore_or_why,
    not_cross_checked,
)
from archbench.costs.formulas import MACS, NORM_POOL, OTHER
from archbench.costs.layers import (
    LayerRow,
    TorchinfoHooks,
    layer_rows,
    skipped_at_inference,
    torchinfo_records,
    uncalled_at_inference,
)
from archbench.costs.locate import ModuleTrace, describe_failure, one_line, remedies_for
from archbench.errors import PATH_ECHO_LIMIT, ModelOutOfMemoryError, ModelRunError, quoted
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory
from archbench.parsing import format_input
from archbench.rows import ModelStats

SCHEMA = "archbench.summary/2"
CONVENTIONS = {
    "macs": "forward multiply-accumulates (1 MAC = 1 fused multiply-add = 2 FLOPs) of convolutions, matrix "
            "products (linear, matmul, einsum) and attention: torchvision's _ops convention",
    "macs_with_norm": "macs + normalisation, adaptive average pooling and upsampling with fvcore's formulas "
                      "(BatchNorm as at inference): the convention of fvcore and timm's infer_gmacs",
    "other_ops": "activations, elementwise ops, softmax, max/average pooling: operations, one per output "
                 "element (softmax 3, pooling one per window element); not MACs",
    "flops_forward": "2 x macs",
    "flops_backward": "backward pass of a training step over the op set of macs (convolution, matrix-product "
                      "and attention gradients; grouped-convolution weight gradients corrected), 2 FLOPs per MAC",
    "activation_bytes": "measured: bytes of the tensors autograd saves for backward in a training-mode "
                        "forward (each storage once, parameters and buffers excluded)",
    "counted_on": "torch's dispatch level, eager, on the training step's forward (modules that inference "
                  "does not run are left out; never under inference_mode)",
}
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


@dataclass(frozen=True)
class Coverage:
    """Every forward and backward op, in its bucket (see :mod:`archbench.costs.formulas`)."""

    macs_by_op: dict[str, int]
    norm_pool_macs_by_op: dict[str, int]
    other_ops_by_op: dict[str, int]
    free_ops: dict[str, int]
    formulas: dict[str, str]  # op -> "bucket: whose formula"
    backward_flops_by_op: dict[str, int]
    backward_other_ops_by_op: dict[str, int]
    backward_uncounted_ops: dict[str, int]

    @property
    def user_formulas(self) -> dict[str, str]:
        return {op: how for op, how in self.formulas.items() if ": user" in how or ": plugin" in how}


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
    coverage: Coverage
    cross_check: CrossCheck
    depth: int | None
    training_batch: int  # the batch the training step was counted at (2 where BatchNorm cannot train on 1)
    reference: str = ""  # the reference as written, when NAME=REFERENCE named the model

    @property
    def params_non_trainable(self) -> int:
        return self.stats.params_total - self.stats.params_trainable

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema ``archbench.summary/2``, see the module docstring)."""
        return summary_to_json(self)

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: header, layer table, totals with their conventions, coverage."""
        from archbench.costs.summary_view import summary_markdown

        return summary_markdown(self)

    def __rich__(self):
        from archbench.costs.summary_view import summary_renderable

        return summary_renderable(self)


# ------------------------------------------------------------------------------------------- API


def summarize(
    spec: ModelSource,
    input: tuple[int, int, int] | None = None,
    batch: int = 1,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    depth: int | None = 3,
    model: nn.Module | None = None,
    inputs: Any = None,
    cross_check: bool = True,
) -> ModelSummary:
    """Summarise the model of ``spec`` (any :class:`~archbench.catalog.source.ModelSource`; a spec is
    built with ``overrides``), or the given ``model``, on ``batch`` x ``input`` (default: the source's
    input) — or on ``inputs`` (a tensor, a tuple of args or a dict of kwargs) when given. ``depth`` limits
    the layer table (``None``: every module). ``cross_check=False`` skips fvcore's trace (the counts are
    the same; the modules inference does not run come from a forward without arithmetic): for callers
    that want counts only. The model is left as it was.

    Raises :class:`ModelRunError` (the failure located to its module) if the model does not run on the
    input, :class:`~archbench.errors.DeviceUnavailableError` for ``cuda`` without a GPU."""
    from archbench.catalog.registry import build_model
    from archbench.resources import meta_build_within_bounds
    from archbench.timing.devices import require_device

    require_device(device)
    shape = tuple(input or spec.input)
    overrides = dict(overrides or {})
    if model is None:
        checked = meta_build_within_bounds(spec.with_args(overrides) if overrides else spec, [device])  # before building
        model = checked if str(device) == "meta" else build_model(spec, device=device, overrides=overrides) if overrides \
            else spec.build(device)
    hooks = TorchinfoHooks(model) if depth != 0 else None
    try:
        # the input alone may not fit (3x100000x100000)
        x = ModelInputs.of(inputs) if inputs is not None else ModelInputs.of(example_input(model, shape, batch, device))
        batch = x.batch or batch
        step, training_batch = _training_step_counts(spec, model, x, overrides, hooks)
        counts, fvcore_failure = fvcore_or_why(model, x) if cross_check else (None, "not asked for (counts only)")
        # the modules inference does not run: fvcore's trace saw them, else a forward without arithmetic
        uncalled = counts.uncalled_modules if counts is not None else uncalled_at_inference(model, x)
        records = None
        if hooks is not None:  # torchinfo's records from the training forward, if it ran at this batch
            records = hooks.records if training_batch == batch else torchinfo_records(model, x)
    except Exception as error:  # noqa: BLE001 - only out-of-memory is translated; the rest propagates
        if not is_out_of_memory(error):
            raise
        raise ModelOutOfMemoryError(
            f"{_model_label(spec, overrides)} ran out of memory on {device} at input {format_input(shape)}, batch "
            f"{batch} (a training step is counted): {one_line(error)}", remedies=("smaller",)) from error
    not_run = skipped_at_inference(model, uncalled)
    forward = step.forward
    stats = _stats(spec, model, shape, batch, device, forward, not_run, step)
    return ModelSummary(
        model=spec.name,
        family=spec.family,
        description=spec.description,
        reference=getattr(spec, "reference", ""),
        input=shape,  # type: ignore[arg-type]
        batch=batch,
        device=device,
        dtype=stats.dtype,
        torch_version=torch.__version__,
        overrides=overrides,
        stats=stats,
        layers=tuple(layer_rows(model, records, forward, not_run, depth)) if records else (),
        coverage=_coverage(forward, step.backward, not_run),
        cross_check=cross_check_counts(counts.macs, counts.by_operator, counts.uncounted_ops, forward.by_op(MACS, not_run),
                                forward.by_op(NORM_POOL, not_run)) if counts is not None
        else not_cross_checked(fvcore_failure, forward.by_op(MACS, not_run), forward.by_op(NORM_POOL, not_run)),
        depth=depth,
        training_batch=training_batch,
    )


def model_stats(
    spec: ModelSource,
    input: tuple[int, int, int],
    batch: int = 1,
    device: str = "cpu",
    overrides: dict | None = None,
    model: nn.Module | None = None,
    inputs: Any = None,
) -> ModelStats:
    """The counts and memory of ``spec`` at ``batch`` x ``input``: a training step, no fvcore trace and no
    layer table. Raises :class:`ModelRunError` with a located message if the model does not run."""
    return summarize(spec, input, batch, device, overrides, depth=0, model=model, inputs=inputs, cross_check=False).stats


def example_input(model: nn.Module, shape: tuple[int, ...], batch: int, device: str) -> torch.Tensor:
    """Fixed random images (seed 0) in the model's floating dtype."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, *shape, generator=generator, dtype=dtype).to(device)


# ------------------------------------------------------------------------------------------ passes


def _training_step_counts(spec: ModelSource, model: nn.Module, x: ModelInputs, overrides: dict,
                          hooks: TorchinfoHooks | None = None):
    """``(counts, batch they were taken at)`` of one training step on ``x``, scaled to ``x``'s batch.

    A model with BatchNorm on a 1x1 map (e.g. inception_v3's auxiliary head) cannot train on one
    sample; at batch 1 its training step is then counted at batch 2 and halved (FLOPs are linear in the
    batch; activation memory very nearly). Only for image inputs: other inputs are counted as given."""
    try:
        return _training_step(spec, model, x, overrides, hooks), x.batch or 1
    except ModelRunError as error:
        image = x.image
        if image is None or image.shape[0] != 1 or not _batch_norm_needs_two_samples(error.__cause__):
            raise
    pair = example_input(model, tuple(image.shape[1:]), 2, str(image.device))
    return _training_step(spec, model, ModelInputs.of(pair), overrides).scaled(1, 2), 2


def _batch_norm_needs_two_samples(error: BaseException | None) -> bool:
    return isinstance(error, ValueError) and "Expected more than 1 value per channel when training" in str(error)


def _training_step(spec: ModelSource, model: nn.Module, x: ModelInputs, overrides: dict,
                   hooks: TorchinfoHooks | None = None):
    trace = ModuleTrace(model)

    def forward():
        with trace, hooks if hooks is not None else nullcontext():
            return x.call(model)

    try:
        return count_training_step(model, forward)
    except Exception as error:  # noqa: BLE001 - re-raised as a located ModelRunError
        if is_out_of_memory(error):
            raise
        failed, failure = error, trace.failure_of(error)
    where = describe_failure(model, x.args, failed, failure) if failure is not None else (
        f"the training step failed: {one_line(failed)}.")
    image = x.image
    on = (f"input {format_input(image.shape[1:])} (batch {image.shape[0]}, training mode)" if image is not None
          else f"inputs {x.describe()} (training mode)")
    raise ModelRunError(f"{_model_label(spec, overrides)} does not run on {on}: {where}",
                        remedies=remedies_for(failed)) from failed


def _model_label(spec: ModelSource, overrides: dict) -> str:
    settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return f"model {quoted(spec.name, PATH_ECHO_LIMIT)}" + (f" ({settings})" if settings else "")


def _coverage(forward, backward, not_run) -> Coverage:
    return Coverage(
        macs_by_op=forward.by_op(MACS, not_run),
        norm_pool_macs_by_op=forward.by_op(NORM_POOL, not_run),
        other_ops_by_op=forward.by_op(OTHER, not_run),
        free_ops=forward.by_op("free", not_run),
        formulas={op: f"{kind}: {source}" for op, (kind, source) in
                  sorted({**backward.sources(), **forward.sources(not_run)}.items())},
        backward_flops_by_op={op: 2 * v for op, v in backward.by_op(MACS).items()},
        backward_other_ops_by_op=backward.by_op(OTHER),
        backward_uncounted_ops=backward.by_op(None),
    )


def _stats(spec, model: nn.Module, shape, batch: int, device: str, forward, not_run, step) -> ModelStats:
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
        macs=(macs := forward.total(MACS, not_run)),
        flops_forward=2 * macs,
        flops_backward=step.backward_flops,
        activation_bytes=step.activation_bytes,
        uncounted_ops=forward.by_op(None, not_run),
        macs_with_norm=macs + forward.total(NORM_POOL, not_run),
        other_ops=forward.total(OTHER, not_run),
        backward_uncounted_ops=step.backward.by_op(None),
    )


# ------------------------------------------------------------------------------------------- JSON


def summary_to_json(summary: ModelSummary) -> dict[str, Any]:
    """The summary as one JSON-ready object (schema in the module docstring)."""
    s = summary.stats
    check = summary.cross_check
    c = summary.coverage
    return {
        "schema": SCHEMA,
        "model": summary.model,
        "family": summary.family,
        "description": summary.description,
        "reference": summary.reference,
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
        "macs_flag": s.macs_flag,
        "macs_with_norm": s.macs_with_norm,
        "other_ops": s.other_ops,
        "flops_forward": s.flops_forward,
        "flops_backward": s.flops_backward,
        "flops_backward_flag": s.flops_backward_flag,
        "activation_bytes": s.activation_bytes,
        "training_batch": summary.training_batch,
        "macs_by_op": c.macs_by_op,
        "norm_pool_macs_by_op": c.norm_pool_macs_by_op,
        "other_ops_by_op": c.other_ops_by_op,
        "free_ops": c.free_ops,
        "uncounted_ops": dict(s.uncounted_ops),
        "formulas": c.formulas,
        "backward_flops_by_op": c.backward_flops_by_op,
        "backward_other_ops_by_op": c.backward_other_ops_by_op,
        "backward_uncounted_ops": c.backward_uncounted_ops,
        "cross_check": {"fvcore_macs": check.fvcore_macs, "fvcore_by_kind": check.fvcore_by_kind,
                        "archbench_by_kind": check.archbench_by_kind,
                        "difference": round(check.difference, 6) if check.fvcore_macs is not None else None,
                        "agrees": check.agrees, "note": check.note},
        "depth": summary.depth,
        "layers": [
            {"name": row.name, "type": row.type, "depth": row.depth,
             "output_shape": list(row.output_shape) if row.output_shape is not None else None,
             "calls": row.calls, "params": row.params, "macs": row.macs, "macs_with_norm": row.macs_with_norm,
             "uncounted_ops": row.uncounted_ops}
            for row in summary.layers
        ],
    }
