"""One answer to "did this fail because memory ran out?", for every path (a sweep cell, counting,
locating a failure, ``summary``).

Memory runs out in more ways than ``torch.OutOfMemoryError``: Python's ``MemoryError``; torch's CPU
allocator ("DefaultCPUAllocator: can't allocate memory", a plain RuntimeError); cuDNN and cuBLAS failing
to allocate their workspaces (``CUDNN_STATUS_ALLOC_FAILED``, ``CUBLAS_STATUS_ALLOC_FAILED``); cuDNN
finding no algorithm or engine because none fits in the memory left ("Unable to find a valid cuDNN
algorithm", v9's "unable to find an engine"); and archbench's own :class:`ModelOutOfMemoryError`, which
wraps any of these with the model and input. The exception's causes are followed too.
"""

from __future__ import annotations

from archbench.errors import ModelOutOfMemoryError

OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "not enough memory",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "unable to find a valid cudnn algorithm",
    "unable to find an engine",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is one of the out-of-memory failures above."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_oom_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_oom_itself(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, ModelOutOfMemoryError)):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in OOM_MARKERS)


def oom_reason(exc: BaseException) -> str:
    """The informative part of an allocator's message, on one line: torch's CPU allocator puts an
    "[enforce fail at alloc_cpu.cpp]" line before the sentence that says how much it tried to allocate."""
    if isinstance(exc, ModelOutOfMemoryError):  # archbench's wrapper: the allocator's own words are in its cause
        return oom_reason(exc.__cause__) if exc.__cause__ is not None else str(exc)
    text = " ".join(str(exc).split())
    lowered = text.lower()
    for marker in OOM_MARKERS:
        at = lowered.find(marker)
        if at >= 0:
            start = text.rfind(": ", 0, at)
            return text[start + 2:] if start >= 0 else text
    return text or type(exc).__name__
