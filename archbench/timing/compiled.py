"""``torch.compile`` for a timed cell, so that what is timed is what was compiled.

Dynamo's cache lives on the model class's ``forward`` code object, so cells of one architecture share it:
left alone, each new batch size recompiles, from the second on with a symbolic batch, and after
``recompile_limit`` the cell silently runs eager. Each compiled cell therefore starts from a reset Dynamo
and compiles with static shapes; the compiling call happens before the cell's time budget starts and is
recorded on its own (``compile_s``); and sampling runs under Dynamo's ``fail_on_recompile`` stance, so a
recompilation — or a fall-back to eager — is an error row, never a silent one.

``ARCHBENCH_COMPILE_BACKEND`` picks the backend (default ``inductor``; the tests use ``eager``, which
goes through Dynamo's capture without code generation).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from archbench.errors import ModelRunError

DEFAULT_BACKEND = "inductor"


def compile_backend() -> str:
    return os.environ.get("ARCHBENCH_COMPILE_BACKEND", DEFAULT_BACKEND)


def compile_model(model, mode: str | None = None):
    """A fresh static-shape compilation of ``model`` (Dynamo's caches and counters reset first); ``mode`` is
    torch.compile's (``max-autotune``; None: its default), given to inductor only (other backends take none)."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    backend = compile_backend()
    return torch.compile(model, backend=backend, dynamic=False, mode=mode if backend == DEFAULT_BACKEND else None)


def compiled_frames() -> int:
    """Frames Dynamo compiled since :func:`compile_model` (its own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"].get("ok", 0))


def run_compiling_call(step: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> float:
    """Run the first (compiling) call of a compiled step; return its seconds. Raises
    :class:`ModelRunError` when Dynamo compiled nothing (the step would run eager)."""
    start = clock()
    step()
    seconds = clock() - start
    if compiled_frames() == 0:
        raise ModelRunError("torch.compile compiled no frame of the model (it would run eager): "
                            "see TORCH_LOGS=recompiles,graph_breaks for why.")
    return seconds


@contextlib.contextmanager
def no_recompiles(active: bool) -> Iterator[None]:
    """Within the block, a recompilation (or eager fall-back) of a compiled step raises ModelRunError."""
    if not active:
        yield
        return
    import torch

    try:
        with torch.compiler.set_stance("fail_on_recompile"):
            yield
    except RuntimeError as exc:
        if "recompil" not in str(exc).lower():
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelRunError(f"torch.compile recompiled the model while it was being timed, so the samples "
                            f"would mix compiled and other runs: {first}") from exc
