"""Peak memory of one cell (CUDA allocator peak, or the process's peak resident set on the CPU)."""

from __future__ import annotations

import gc
import math


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so the resident
    set reflects live memory before a baseline is read."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class MemoryTracker:
    """Peak memory of one cell, in bytes above the baseline read when the tracker is created.

    * CUDA: ``torch.cuda.max_memory_allocated`` (peak reset at :meth:`start`) minus the bytes allocated
      at creation — tensors only (weights, gradients, activations, workspaces), not the caching
      allocator's reserve.
    * CPU: the kernel's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` at
      :meth:`start`) minus the resident set at creation, read after freed heap was returned to the OS.
      It counts everything the process touched for the cell (weights, gradients, activations, scratch,
      allocator slack); NaN where ``/proc`` cannot do this (non-Linux).

    Create it before building the model so the weights are included, as on CUDA. Everything resident
    between the baseline and the peak is charged to the cell, so the process's one-time costs must be paid
    before the first baseline (the sweep's ``warm_process``: thread pool, oneDNN, and the FLOP counters'
    first call, which loads ~170 MB of Python modules). A baseline read after the cell's build and count
    instead would lose the weights, and whatever lazily made state the count leaves in the model."""

    def __init__(self, device: str):
        self.device = str(device)
        self._cuda = self.device.startswith("cuda")
        self._ok = True
        if self._cuda:
            import torch

            torch.cuda.synchronize(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            _release_free_heap()
            rss = _proc_status_kb("VmRSS")
            self._ok = rss is not None
            self._baseline = (rss or 0) * 1024

    def start(self) -> None:
        """Start the peak window (after the model is built and the inputs made)."""
        if self._cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_free_heap()
            self._ok = self._ok and _reset_peak_rss()

    def peak_bytes(self) -> float:
        if self._cuda:
            import torch

            torch.cuda.synchronize(self.device)
            return float(torch.cuda.max_memory_allocated(self.device) - self._baseline)
        hwm = _proc_status_kb("VmHWM")
        if not self._ok or hwm is None:
            return math.nan
        return float(max(hwm * 1024 - self._baseline, 0))


