"""Where a forward pass fails: the innermost module, what it received, and input sizes that do work.

:func:`forward_located` runs a model like ``model(*inputs)``; when the forward raises, it raises
:class:`~archbench.errors.ModelRunError` whose message names the innermost module that was running
(its dotted path, type and settings), the shape(s) it received, the last submodule that finished inside
it, the underlying error in one line and, where a few cheap probes on the ``meta`` device find them,
square input sizes that do run (or that no size does, when the failure does not depend on it).

:class:`ModuleTrace` is the instrument: forward hooks on every submodule (removed on exit) recording each
module's output shapes, and for an exception, the first module it left. It works in train and eval
mode, under ``torch.no_grad()`` and ``torch.inference_mode()``. Out-of-memory errors pass through
unchanged (callers classify them).
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from archbench.catalog.meta import meta_twin
from archbench.errors import ModelRunError, one_line
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory
from archbench.usercode import UserCodeExit

# Square sizes probed (on meta) for a failing image model, and how many working ones to name. The small
# ones matter: an MNIST-style CNN with a fixed-size classifier runs at 28x28 only.
PROBE_SIZES = (8, 16, 24, 28, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
_WORKING_TO_NAME = 3

Shapes = tuple[tuple[int, ...], ...]


def format_shapes(shapes: Shapes) -> str:
    """``((1, 16, 32, 32),)`` -> ``'1x16x32x32'``; several tensors are comma-separated."""
    if not shapes:
        return "no tensor"
    return ", ".join("x".join(map(str, s)) if s else "scalar" for s in shapes)


def tensor_shapes(value: Any) -> Shapes:
    """Shapes of every tensor in a (nested) value, in order."""
    return tuple(tuple(t.shape) for t in tree_leaves(value) if isinstance(t, torch.Tensor))


@dataclass
class _Frame:
    name: str
    received: Shapes
    last_child: tuple[str, Shapes] | None = None


@dataclass(frozen=True)
class Failure:
    """Where a forward pass failed (the innermost module that the exception left first)."""

    module: str  # dotted path; "" for the model itself
    module_type: str
    settings: str  # the module's extra_repr(): kernel sizes, channels, ...
    received: Shapes
    after: tuple[str, Shapes] | None  # the last submodule that finished inside it, and its output
    error: str  # the underlying error in one line
    working_inputs: tuple[str, ...] = ()  # e.g. ("3x64x64", "3x96x96")
    smallest_input: str | None = None  # smallest square input that runs, e.g. "3x57x57"
    size_independent: bool = False  # every probed size fails the same way

    def message(self) -> str:
        where = f"`{self.module}`" if self.module else "the model's own forward"
        kind = f"{self.module_type}({self.settings})" if self.settings else self.module_type
        text = f"the forward pass failed in {where} ({kind}), which received {format_shapes(self.received)}"
        if self.after is not None:
            text += f", after `{self.after[0]}` returned {format_shapes(self.after[1])}"
        text += f": {self.error}"
        return text.rstrip(".!") + self._hint()

    def _hint(self) -> str:
        if self.working_inputs:
            hint = f". Inputs that run: {', '.join(self.working_inputs)}"
            if self.smallest_input and self.smallest_input not in self.working_inputs:
                hint += f" (smallest square input that runs: {self.smallest_input})"
            return hint + "."
        if self.size_independent:
            lo, hi = PROBE_SIZES[0], PROBE_SIZES[-1]
            return f". It fails the same way at every square input from {lo}x{lo} to {hi}x{hi}: the input size is not the cause."
        return "."


class ModuleTrace:
    """Context manager: hooks on every submodule of ``model`` recording output shapes per call
    (``outputs``) and, for each exception, the first module it left (:meth:`failure_of`)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.outputs: dict[str, list[Shapes]] = {}
        self._stack: list[_Frame] = []
        self._failures: dict[int, tuple[BaseException, Failure]] = {}
        self._handles: list = []

    def __enter__(self) -> ModuleTrace:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post_hook(name), always_call=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre_hook(self, name: str):
        def hook(module, args, kwargs):
            self._stack.append(_Frame(name, tensor_shapes((args, kwargs))))

        return hook

    def _post_hook(self, name: str):
        def hook(module, args, output):
            frame = self._stack.pop() if self._stack else _Frame(name, tensor_shapes(args))
            error = sys.exc_info()[1]
            if error is not None and output is None:  # leaving because of an exception
                if id(error) not in self._failures:  # the first module it leaves is the innermost
                    self._failures[id(error)] = (error, _failure(name, module, frame, error))
                return
            shapes = tensor_shapes(output)
            self.outputs.setdefault(name, []).append(shapes)
            if self._stack:
                self._stack[-1].last_child = (name, shapes)

        return hook

    def failure_of(self, error: BaseException) -> Failure | None:
        entry = self._failures.get(id(error))
        if entry is None and isinstance(error, UserCodeExit) and self._stack:
            # torch runs no always_call hook for a SystemExit: the modules it left are still on the stack
            frame = self._stack[-1]
            module = dict(self.model.named_modules())[frame.name]
            entry = self._failures[id(error)] = (error, _failure(frame.name, module, frame, error))
        return entry[1] if entry is not None and entry[0] is error else None


def _failure(name: str, module: nn.Module, frame: _Frame, error: BaseException) -> Failure:
    try:
        settings = module.extra_repr()
    except Exception:  # noqa: BLE001 - a broken extra_repr must not hide the real error
        settings = ""
    return Failure(name, type(module).__name__, settings, frame.received, frame.last_child, one_line(error))


# ------------------------------------------------------------------------------------------- API


def forward_located(model: nn.Module, *inputs: Any, **kwargs: Any) -> Any:
    """``model(*inputs, **kwargs)``; if it raises, :class:`ModelRunError` locating the failure (see the
    module docstring). Out-of-memory errors and KeyboardInterrupt propagate unchanged; no hooks stay behind."""
    with ModuleTrace(model) as trace:
        try:
            return ModelInputs(inputs, kwargs).call(model)
        except Exception as error:  # noqa: BLE001 - re-raised, located
            if is_out_of_memory(error):
                raise
            failed, failure = error, trace.failure_of(error)
    raise ModelRunError(describe_failure(model, inputs, failed, failure), remedies=remedies_for(failed)) from failed


_SIGNATURE_MISMATCH = ("required positional argument", "keyword-only argument", "unexpected keyword argument",
                       "positional arguments but")


def remedies_for(error: BaseException) -> tuple[str, ...]:
    """What the user can do about a failed forward: a call that does not match forward's signature (a model
    with two inputs given one image) is fixed by giving its inputs (``inputs``)."""
    if isinstance(error, TypeError) and any(text in str(error) for text in _SIGNATURE_MISMATCH):
        return ("inputs",)
    return ()


def describe_failure(model: nn.Module, inputs: tuple, error: BaseException, failure: Failure | None) -> str:
    """The message for a failed ``model(*inputs)``; with the working input sizes probed (after the trace's
    hooks are gone, so the meta twin does not copy them)."""
    if failure is None:  # raised outside any module call (e.g. before the model's forward ran)
        return f"the forward pass failed on {format_shapes(tensor_shapes(inputs))}: {one_line(error)}."
    cached = _PROBES.get()
    if cached is None:
        return with_working_inputs(model, inputs, failure).message()
    found, model_key = cached
    key = (model_key, _inputs_key(model, inputs), failure)
    if key not in found:
        found[key] = with_working_inputs(model, inputs, failure)
    return found[key].message()


# What a run probed: (its dict of failures with their working sizes, the key of the model being run).
_PROBES: ContextVar[tuple[dict, Hashable] | None] = ContextVar("archbench_probes", default=None)


@contextlib.contextmanager
def probes_kept(found: dict, model_key: Hashable) -> Iterator[None]:
    """Inside the block, :func:`describe_failure` keeps the working sizes it probes in ``found`` (a run's, see
    :class:`archbench.sweep.cell_measure.RunCaches`) and reuses them for the same failure of the same model
    (``model_key``: what the model was built from, e.g. its source) on the same inputs: each failed cell of a
    model that cannot run on an input otherwise re-probed every size for the same answer."""
    token = _PROBES.set((found, model_key))
    try:
        yield
    finally:
        _PROBES.reset(token)


def _inputs_key(model: nn.Module, inputs: tuple) -> tuple:
    """The inputs as the probes see them (shapes, dtypes, devices) and the model's parameter dtypes."""
    tensors = tuple((tuple(t.shape), t.dtype, str(t.device)) if isinstance(t, torch.Tensor) else (type(t).__name__,)
                    for t in tree_leaves(inputs))
    return tensors, tuple(sorted({str(p.dtype) for p in model.parameters()}))


# --------------------------------------------------------------------------------------- probing


def with_working_inputs(model: nn.Module, inputs: tuple, failure: Failure) -> Failure:
    """``failure`` with the square input sizes that run, probed on a meta twin of the model (shape
    checks only, no arithmetic). Only for one image batch (N, C, H, W), and only when the meta twin
    reproduces the failure in the same module; otherwise ``failure`` unchanged."""
    images = [x for x in inputs if isinstance(x, torch.Tensor)]
    if len(images) != 1 or len(inputs) != 1 or images[0].dim() != 4:
        return failure
    batch, channels, height, width = images[0].shape
    try:
        twin = _shape_only_batch_norms(meta_twin(model))
        probe = _Prober(twin, batch, channels, failure)
        # eval mode first: meta BatchNorm in training mode runs a slow Python decomposition
        if not any(probe.same_failure(height, width, training) for training in (False, True)):
            return failure
        working = probe.working_sizes()
    except Exception:  # noqa: BLE001 - probing is a courtesy: the located failure stands without it
        return failure
    if not working:
        return _replace(failure, size_independent=probe.all_failed_alike)
    names = tuple(f"{channels}x{s}x{s}" for s in working[:_WORKING_TO_NAME])
    smallest = probe.smallest_working(working[0])
    return _replace(failure, working_inputs=names, smallest_input=f"{channels}x{smallest}x{smallest}" if smallest else None)


def _shape_only_batch_norms(twin: nn.Module) -> nn.Module:
    """``twin`` with its standard BatchNorm layers checking shapes only. On ``meta`` torch runs BatchNorm as its
    Python decomposition (~17 ms a call, most of a probe's time in a ResNet), and a probe asks only where the
    model fails: each layer keeps its own input checks, checks the channels against its parameters and
    statistics as ``torch.batch_norm`` does, and returns an output shaped like its input."""
    for module in twin.modules():
        if type(module).forward is nn.BatchNorm2d.forward:  # BatchNorm1d/2d/3d's own forward, not a subclass's
            module.forward = types.MethodType(_batch_norm_shape, module)
    return twin


def _batch_norm_shape(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    self._check_input_dim(x)
    if self.training and x.shape[0] * math.prod(x.shape[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
    if (self.weight is not None or self.running_mean is not None) and x.shape[1] != self.num_features:
        raise RuntimeError(f"running_mean should contain {x.shape[1]} elements not {self.num_features}")
    return torch.empty_like(x)


def _replace(failure: Failure, **changes) -> Failure:
    from dataclasses import replace

    return replace(failure, **changes)


@dataclass
class _Prober:
    twin: nn.Module
    batch: int
    channels: int
    failure: Failure
    outcomes: dict[int, str | None] = field(default_factory=dict)  # size -> failing module, None: runs
    all_failed_alike: bool = True

    def attempt(self, height: int, width: int) -> str | None:
        """``None`` if the twin runs on this size, else the name of the module where it failed."""
        x = torch.empty(self.batch, self.channels, height, width, device="meta")
        with torch.inference_mode(False), torch.no_grad(), ModuleTrace(self.twin) as trace:
            try:
                ModelInputs((x,)).call(self.twin)
                return None
            except Exception as error:  # noqa: BLE001 - a probe's failure is its answer
                where = trace.failure_of(error)
                return where.module if where is not None else "?"

    def same_failure(self, height: int, width: int, training: bool) -> bool:
        """Whether the twin, in this mode, fails at the original size in the same module (then it
        stays in this mode for the probes)."""
        self.twin.train(training)
        return self.attempt(height, width) == self.failure.module

    def square(self, size: int) -> str | None:
        if size not in self.outcomes:
            self.outcomes[size] = self.attempt(size, size)
        return self.outcomes[size]

    def working_sizes(self) -> list[int]:
        """Probed sizes that run, in order; stops after a few, or where a working range ends (e.g. a
        fixed-size pooling that needs 64 to 127)."""
        working: list[int] = []
        for size in PROBE_SIZES:
            outcome = self.square(size)
            if outcome is None:
                working.append(size)
                if len(working) >= _WORKING_TO_NAME:
                    break
            elif working:
                break
            elif outcome != self.failure.module:
                self.all_failed_alike = False
        return working

    def smallest_working(self, first_working: int) -> int | None:
        """Bisect between the largest probed size below ``first_working`` (which fails) and it."""
        below = [s for s in self.outcomes if s < first_working]
        if not below:
            return None
        lo, hi = max(below), first_working  # lo fails, hi runs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.square(mid) is None:
                hi = mid
            else:
                lo = mid
        return hi
