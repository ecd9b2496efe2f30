"""How a cell runs its model: the backends of the ``backend`` grid axis, and the check of their outputs.

* ``eager``: the model as it is.
* ``compile`` (``compile:MODE``): ``torch.compile`` (:mod:`archbench.timing.compiled`; the compiling first call is
  timed by the sweep as ``compile_s``).
* ``export``: ``torch.export.export`` then AOTInductor (``torch._inductor.aoti_compile_and_package`` and
  ``aoti_load_package``): an ahead-of-time compiled artefact, built once per cell.
* ``onnxruntime``: the same exported program converted by ``torch.onnx.export`` (the dynamo exporter) and run by an
  ``onnxruntime.InferenceSession`` (CPU provider; CUDA provider for a CUDA cell when onnxruntime has it), its
  intra-op threads the cell's threads.

Both exporting backends go through ``torch.export.export`` first, so a model it rejects (data-dependent control
flow, an untraceable call) fails the same way for both, with the exporter's own reason in one line; nothing falls
back to tracing, which would silently bake one branch into the graph.

:func:`prepare` builds a backend's runner (called like the model) and times the build; :func:`output_error`
compares a backend's output with eager's on the same input. ``max_rel_err`` is normwise — the largest absolute
difference over the largest magnitude of eager's output — so a logit near zero cannot blow it up.
:data:`REL_TOLERANCE` is the dtype-aware bound beyond which a row is flagged: fp32 1e-3 (fused kernels and other
convolution algorithms reorder sums, ~1e-6 typically), bf16 5e-2 and fp16 1e-2 (autocast's rounding of each
matrix product: bf16 keeps 8 bits of mantissa, fp16 11).

torch (and onnxruntime) are imported inside functions only.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archbench.errors import ModelRunError, UsageError, quoted
from archbench.inputs import ModelInputs
from archbench.rows import BACKENDS, COMPILE_MODES, backend_kind

REL_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 1e-2}
EXPORTED = ("export", "onnxruntime")  # built from torch.export's program: infer and fp32 only (see unsupported_backend)
REASON_CHARS = 300  # an exporter's reason, in one line of at most this many characters


def check_backends(labels: list[str] | tuple[str, ...], where: str = "backend") -> tuple[str, ...]:
    """The backend labels, checked: ``eager``, ``compile``, ``compile:MODE`` (MODE one of :data:`COMPILE_MODES`;
    ``compile:default`` is ``compile``), ``export``, ``onnxruntime``. Raises :class:`UsageError` naming the bad one."""
    checked = []
    for label in labels:
        label = str(label).strip()
        kind, _, mode = label.partition(":")
        if kind not in BACKENDS or (mode and kind != "compile"):
            raise UsageError(f"{where} {quoted(label)} is not one of: {', '.join(BACKENDS)} (or compile:MODE, MODE one of "
                             f"{', '.join(COMPILE_MODES)}).")
        if mode and mode not in COMPILE_MODES:
            raise UsageError(f"{where} {quoted(label)}: compile mode {quoted(mode)} is not one of: {', '.join(COMPILE_MODES)}.")
        checked.append("compile" if label == "compile:default" else label)
    return tuple(dict.fromkeys(checked))


def with_compile_mode(labels: tuple[str, ...], mode: str | None) -> tuple[str, ...]:
    """``compile`` in ``labels`` run in ``mode`` (``compile:max-autotune``); ``None``/``default`` leaves them."""
    if mode is None or mode == "default":
        return labels
    if mode not in COMPILE_MODES:
        raise UsageError(f"compile mode {quoted(mode)} is not one of: {', '.join(COMPILE_MODES)}.")
    return tuple(dict.fromkeys(f"compile:{mode}" if label == "compile" else label for label in labels))


def compile_mode(backend: str) -> str | None:
    """torch.compile's ``mode`` for a compile backend label (``None``: the default)."""
    _, _, mode = backend.partition(":")
    return mode if mode and mode != "default" else None


def unsupported_backend(backend: str, mode: str, dtype: str, device: str) -> str:
    """Why ``backend`` cannot run this cell (``""`` when it can): the exported backends run inference only (an
    exported program has no backward here) and fp32 only (autocast is not carried into the exported graph);
    onnxruntime on CUDA needs its CUDA provider."""
    kind = backend_kind(backend)
    if kind not in EXPORTED:
        return ""
    if mode != "infer":
        return f"the {kind} backend runs inference only (train mode needs eager or compile)."
    if dtype != "fp32":
        return f"the {kind} backend runs fp32 only here (autocast's {dtype} is not carried into an exported program)."
    if kind == "onnxruntime" and str(device).startswith("cuda") and "CUDAExecutionProvider" not in _ort_providers():
        return "onnxruntime has no CUDA provider in this environment (install onnxruntime-gpu)."
    return ""


def _ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


@dataclass
class Built:
    """A backend's runner (called with the model's inputs, like the model) and the seconds its build took."""

    runner: Callable[..., Any]
    build_s: float = math.nan


def prepare(model, inputs, backend: str, threads: int, device: str,
            clock: Callable[[], float] = time.perf_counter) -> Built:
    """The runner of an exported backend (``export`` or ``onnxruntime``), built from ``model`` (in eval mode) on
    ``inputs``, and its build seconds (export, conversion or compilation, loading; the first run is the
    warm-up's). Raises :class:`ModelRunError` with the exporter's one-line reason when the model cannot be
    exported or converted."""
    kind = backend_kind(backend)
    x = ModelInputs.of(inputs)
    start = clock()
    with tempfile.TemporaryDirectory(prefix="archbench-") as folder:
        program = _exported(model, x, kind)
        if kind == "export":
            runner = _aoti_runner(program, os.path.join(folder, "model.pt2"))
        elif kind == "onnxruntime":
            runner = _ort_runner(program, x, os.path.join(folder, "model.onnx"), threads, device)
        else:
            raise ValueError(f"prepare() builds export and onnxruntime, not {backend!r}")
    return Built(runner, clock() - start)


def one_line(exc: BaseException, limit: int = REASON_CHARS) -> str:
    """``Type: first line of the message`` of the exception's deepest cause (the ONNX exporter wraps "No ONNX
    function found for aten.cummax" in pages of advice), colour codes removed, at most ``limit`` characters."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _exported(model, x: ModelInputs, kind: str):
    import torch

    try:
        return torch.export.export(model, tuple(x.args), dict(x.kwargs))
    except Exception as exc:  # noqa: BLE001 - any exporter failure is the cell's error row, with its reason
        raise ModelRunError(f"torch.export cannot export the model (needed by the {kind} backend): {one_line(exc)}") from exc


def _aoti_runner(program, path: str):
    """Wraps torch._inductor's AOTInductor: compile the exported program into a package, load it."""
    import torch._inductor

    try:
        package = torch._inductor.aoti_compile_and_package(program, package_path=path)
        return torch._inductor.aoti_load_package(package)
    except Exception as exc:  # noqa: BLE001 - as above
        raise ModelRunError(f"AOTInductor cannot compile the exported model: {one_line(exc)}") from exc


def _ort_runner(program, x: ModelInputs, path: str, threads: int, device: str):
    """Wraps torch.onnx.export (the dynamo exporter, from the exported program) and onnxruntime's session: a
    callable taking the model's inputs and returning the outputs as tensors."""
    import contextlib
    import io

    import torch

    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelRunError("the onnxruntime backend needs onnxruntime, onnx and onnxscript (the archbench[onnx] "
                            "extra).") from exc
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps on stdout
            torch.onnx.export(program, f=path, dynamo=True, verbose=False, external_data=False)
    except Exception as exc:  # noqa: BLE001 - as above
        raise ModelRunError(f"torch.onnx.export cannot convert the model to ONNX: {one_line(exc)}") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime warns on stderr otherwise
    cuda = str(device).startswith("cuda")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    try:
        session = onnxruntime.InferenceSession(path, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - an op onnxruntime has no kernel for, and the like
        raise ModelRunError(f"onnxruntime cannot load the converted model: {one_line(exc)}") from exc
    names = [i.name for i in session.get_inputs()]
    out_device = torch.device(device)

    def run(*args, **kwargs):
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        feed = {name: t.detach().cpu().numpy() for name, t in zip(names, tensors)}
        outputs = session.run(None, feed)
        return [torch.from_numpy(o).to(out_device) for o in outputs]

    return run


@dataclass(frozen=True)
class OutputError:
    """How far a backend's output is from eager's: ``max_abs`` the largest absolute difference, ``max_rel``
    that over the largest magnitude of eager's output (both over every floating tensor of the output)."""

    max_abs: float
    max_rel: float


def output_error(eager_out, out) -> OutputError:
    """Compare two outputs tensor by tensor (their floating tensors, flattened in order: a tuple, a dict, a
    dataclass, a list of tensors from onnxruntime). Raises :class:`ModelRunError` when the structures differ."""
    ref, got = _float_tensors(eager_out), _float_tensors(out)
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        raise ModelRunError(f"the backend's output ({_shapes(got)}) does not match eager's ({_shapes(ref)}).")
    if not ref:
        return OutputError(math.nan, math.nan)
    max_abs = max(float((b.float().cpu() - a.float().cpu()).abs().max()) if a.numel() else 0.0 for a, b in zip(ref, got))
    scale = max(float(a.float().abs().max()) if a.numel() else 0.0 for a in ref)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return OutputError(max_abs, max_rel)


def _float_tensors(output) -> list:
    import torch
    from torch.utils._pytree import tree_leaves

    if hasattr(output, "to_tuple"):  # a Hugging Face ModelOutput
        output = output.to_tuple()
    return [t.detach() for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _shapes(tensors: list) -> str:
    return ", ".join("x".join(map(str, t.shape)) for t in tensors) or "no floating tensor"


def numerics_note(max_rel_err: float, dtype: str) -> str:
    """``"numerics: ..."`` when ``max_rel_err`` is beyond ``dtype``'s tolerance (or not finite); ``""`` within it
    or unmeasured (NaN: an eager row, a train cell)."""
    if isinstance(max_rel_err, float) and math.isnan(max_rel_err):
        return ""
    tolerance = REL_TOLERANCE.get(dtype, REL_TOLERANCE["fp32"])
    if max_rel_err <= tolerance:
        return ""
    return f"numerics: output differs from eager by {max_rel_err:.2g} (relative) > {tolerance:g} tolerated for {dtype}"


def forward_output(runner, inputs, device: str, dtype: str):
    """One forward of ``runner`` (the model or a backend's) on ``inputs`` as the infer step runs it
    (``inference_mode``, autocast for bf16/fp16): the output the numerics check compares."""
    import torch

    from archbench.timing.step import autocast_for

    with torch.inference_mode(), autocast_for(device, dtype)():
        return ModelInputs.of(inputs).call(runner)
