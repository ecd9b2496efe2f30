"""The worker side of the max-batch search (:mod:`archbench.sweep.maxbatch`): a process that runs a cell's step
at the batches it is asked for, under a memory limit, and says whether each fits.

``python -m archbench.sweep.batch_probe REQUEST_FD REPLY_FD``: requests and replies are JSON lines on two
pipes (stdout and stderr stay free for whatever torch prints). The first request sets the worker up::

    {"model": {...ModelSpec fields...}, "device": "cpu", "mode": "train", "input": "3x64x64", "dtype": "fp32",
     "channels_last": false, "threads": 1, "limit_bytes": 2147483648, "optimizer": "none"}

runs one step at batch 2 (see :meth:`Prober._warm_up`), and is answered ``{"ready": true, "limit": "..."}``
(how the limit is enforced); each later ``{"batch": N}`` builds the model, runs :data:`STEPS` steps and
answers ``{"batch": N, "fits": true, "peak_bytes": ...}``, or ``"fits": false`` with the allocator's words
when memory ran out. Any other failure answers ``{"error": ...}``.

The limit, enforced here so an allocation beyond it fails in this process and nowhere else:

* CPU: ``RLIMIT_DATA`` set to the process's data segment once torch is loaded and warm (``VmData``) plus the
  limit. It counts private writable memory — the heap and anonymous mappings, where every tensor lives —
  and not the torch libraries' code or the address space that glibc and the CUDA build reserve without
  using (``RLIMIT_AS`` would count those: ~3.5 GiB of mappings for a process that imported torch, against
  ~0.9 GiB of data). An allocation past it fails with ENOMEM, which torch raises as "DefaultCPUAllocator:
  can't allocate memory" and Python as MemoryError. The parent starts this process with glibc's mmap
  threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``), so every tensor's memory is returned to the
  system when it is freed and each probe starts from the same data segment.
* CUDA: ``torch.cuda.set_per_process_memory_fraction(limit / total)`` caps torch's caching allocator (the
  CUDA context itself is outside it); without a limit the device's memory is the bound. After an
  out-of-memory error the cache is emptied; after any other CUDA error the process exits (its context may be
  unusable), and the parent starts a new one.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from typing import Any

STEPS = 2  # steps per probe: the second runs with the first's gradient and allocator state
MMAP_THRESHOLD = 128 * 1024
WARM_BATCH = 2  # BatchNorm cannot train on one sample


def _vm_data_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")


def enforce_limit(device: str, limit_bytes: int | None) -> str:
    """Bound this process's memory as the module docstring says; returns how, in words."""
    import torch

    if device.startswith("cuda"):
        if limit_bytes is None:
            return "the device's memory"
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_bytes / total), device)
        return f"torch.cuda.set_per_process_memory_fraction({min(1.0, limit_bytes / total):.4f}) of {total} bytes"
    if limit_bytes is None:
        return "none"
    base = _vm_data_bytes()
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    wanted = base + int(limit_bytes)
    resource.setrlimit(resource.RLIMIT_DATA, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    return f"RLIMIT_DATA = {base} bytes (data segment once torch is loaded) + {int(limit_bytes)}"


class Prober:
    """Runs one cell's step at the batches asked for."""

    def __init__(self, setup: dict[str, Any]):
        import torch

        from archbench.catalog.spec import model_from_json
        from archbench.parsing import parse_input
        from archbench.sweep.cell_measure import warm_process

        self.source = model_from_json(setup["model"])
        self.device, self.mode, self.dtype = setup["device"], setup["mode"], setup["dtype"]
        self.input = parse_input(setup["input"])
        self.channels_last = bool(setup.get("channels_last"))
        self.optimizer = setup.get("optimizer") or "none"
        torch.set_num_threads(int(setup.get("threads") or 1))
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
        warm_process(self.device, counters=False)  # thread pools, oneDNN/cuDNN handles: before the limit's baseline
        self._warm_up()  # ends with a collection
        gc.freeze()  # this process's heap from now on is torch's and the warm-up's: each probe's collection skips it
        self.limit = enforce_limit(self.device, setup.get("limit_bytes"))

    def _warm_up(self) -> None:
        """One step of the model at batch :data:`WARM_BATCH` before the baseline: what a process pays once (the
        library code the step runs, paged in; oneDNN's kernels, compiled) is not counted to any batch, as in a
        training job past its first iteration."""
        self.warmed = False
        try:
            self._run(WARM_BATCH)
            self.warmed = True
        except Exception:  # noqa: BLE001 - the probes report what fails; the warm-up only warms
            pass
        finally:
            self._release()

    def probe(self, batch: int) -> dict[str, Any]:
        from archbench.oom import is_out_of_memory, oom_reason
        from archbench.timing.memory import MemoryTracker

        tracker = None
        try:
            tracker = MemoryTracker(self.device)
            tracker.start()
            self._run(batch)
            return {"batch": batch, "fits": True, "peak_bytes": tracker.peak_bytes()}
        except Exception as exc:  # noqa: BLE001 - out of memory is the answer; anything else is reported
            if is_out_of_memory(exc):
                return {"batch": batch, "fits": False, "reason": oom_reason(exc)}
            if self.warmed and batch > WARM_BATCH and isinstance(exc, RuntimeError) and not self.device.startswith("cuda"):
                # oneDNN says "could not create a primitive" when its memory runs out: the same step ran at
                # batch 2, so a failure at a larger batch under the limit is taken as the limit's
                return {"batch": batch, "fits": False,
                        "reason": f"{' '.join(str(exc).split())[:200]} (taken as out of memory: the step ran at batch "
                                  f"{WARM_BATCH})"}
            return {"batch": batch, "error": f"{type(exc).__name__}: {exc}", "cuda": "cuda" in str(exc).lower()}
        finally:
            self._release()

    def _run(self, batch: int) -> None:
        import torch

        from archbench.memory_estimate import make_optimizer, training_step
        from archbench.sweep.cell_measure import cell_inputs

        cell = _CellView(self.source, self.device, self.input, batch, self.dtype, self.channels_last)
        model = self.source.build(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        inputs = cell_inputs(cell)
        opt = make_optimizer(self.optimizer, model.parameters()) if self.mode == "train" else None
        step = training_step(model, inputs, self.mode, self.dtype, self.device, opt)
        for _ in range(STEPS):
            step()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)

    def _release(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


class _CellView:
    """What :func:`archbench.sweep.cell_measure.cell_inputs` reads of a cell."""

    def __init__(self, source, device, input, batch, dtype, channels_last):
        self.source, self.device, self.input, self.batch = source, device, input, batch
        self.dtype, self.channels_last = dtype, channels_last


def serve(requests, replies) -> None:
    """Answer the requests on ``requests`` (a text file) on ``replies`` until it closes."""
    prober = None
    for line in requests:
        request = json.loads(line)
        if prober is None:
            try:
                prober = Prober(request)
                reply: dict[str, Any] = {"ready": True, "limit": prober.limit}
            except Exception as exc:  # noqa: BLE001 - a model that cannot be built is the parent's to report
                reply = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            reply = prober.probe(int(request["batch"]))
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if "error" in reply and (prober is None or reply.get("cuda")):
            return  # nothing was set up, or a CUDA context that may be unusable: the parent starts another


def main(argv: list[str]) -> None:
    request_fd, reply_fd = int(argv[0]), int(argv[1])
    with os.fdopen(request_fd, "r", encoding="utf-8") as requests, os.fdopen(reply_fd, "w", encoding="utf-8") as replies:
        serve(requests, replies)


if __name__ == "__main__":
    main(sys.argv[1:])
