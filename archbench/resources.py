"""What a run may ask of the machine, bounded before anything is built or timed: the ONE place for these
bounds, used by the command line, study files and the Python API alike (no torch import at module level).

* **Threads**: at most :data:`THREADS_PER_CORE` x the machine's cores (``os.cpu_count()``). More threads
  than cores only time-share them (``bench`` warns from the first one over), and libgomp fails to start
  ~10^5 threads ("Out of memory") or crashes inside ``torch.set_num_threads``.
* **Modules built**: a model is first built on ``meta`` (no weights allocated) while its submodules are
  counted; past :func:`max_modules` (50,000 by default, ``ARCHBENCH_MAX_MODULES``) the build is stopped. That
  is ten times the 1202-layer CIFAR ResNet, and stops a spec with ``depth = 10000000`` within seconds,
  before Python objects alone fill the memory.
* **Parameter memory**: the parameters and buffers of that meta build (in the dtype the model is built in)
  must fit in the memory of each device the model is to run on: the machine's RAM for ``cpu``, the GPU's
  for ``cuda``. A model that cannot even be built there is refused with its size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from archbench.errors import PATH_ECHO_LIMIT, ResourceLimitError, quoted
from archbench.units import mib

THREADS_PER_CORE = 4
DEFAULT_MAX_MODULES = 50_000
MAX_MODULES_ENV = "ARCHBENCH_MAX_MODULES"


# ------------------------------------------------------------------------------------------- threads


def machine_cores() -> int:
    return os.cpu_count() or 1


def max_threads() -> int:
    """The most intra-op threads a cell may ask for on this machine."""
    return THREADS_PER_CORE * machine_cores()


def threads_problem(threads: int) -> str | None:
    """Why ``threads`` is more than this machine may be asked for (``None`` when it is within the bound)."""
    if threads <= max_threads():
        return None
    return (f"{threads:,} is more threads than this machine can run: at most {max_threads()} ({THREADS_PER_CORE} per "
            f"core, {machine_cores()} cores).")


def check_threads(threads: int, what: str = "threads") -> int:
    """``threads``, or :class:`ResourceLimitError` naming ``what`` when it exceeds :func:`max_threads`."""
    problem = threads_problem(threads)
    if problem:
        raise ResourceLimitError(f"{what} {problem}")
    return threads


# ------------------------------------------------------------------------------------------- memory


def device_memory_bytes(device: str) -> int | None:
    """Total memory of ``device``: physical RAM for ``cpu``, the GPU's for ``cuda[:N]``; ``None`` when unknown
    (another kind of device, or a device of a cluster target measured elsewhere: ``cpu@a100``)."""
    if "@" in device:
        return None
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not on every platform
            return None
    if kind == "cuda":
        import torch

        from archbench.timing.devices import cuda_index

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.get_device_properties(cuda_index(device)).total_memory)
    return None


def max_modules() -> int:
    """The most submodules a model may register while it is built (``ARCHBENCH_MAX_MODULES`` changes it)."""
    text = os.environ.get(MAX_MODULES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MODULES
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        raise ResourceLimitError(f"{MAX_MODULES_ENV}={text[:40]!r} is not a positive integer (the most submodules "
                                 f"a model may have; default {DEFAULT_MAX_MODULES:,}).")
    return int(text)


class _TooManyModules(BaseException):
    """Stops a build from inside torch's registration hook. A BaseException, so that a builder's own
    ``except Exception`` (or archbench's wrapping of user-code errors) does not swallow it."""


def meta_build_within_bounds(source: Any, devices: Iterable[str] = ()) -> Any:
    """``source`` built on ``meta``, refused with :class:`ResourceLimitError` when it registers more than
    :func:`max_modules` submodules while being built, or when its parameters and buffers exceed the memory
    of one of ``devices``. Any other build failure propagates as the builder raised it."""
    from torch.nn.modules.module import register_module_module_registration_hook

    limit = max_modules()
    seen = 0

    def count(module, name, submodule):  # torch's global hook: called for every submodule registered
        nonlocal seen
        seen += 1
        if seen > limit:
            raise _TooManyModules

    handle = register_module_module_registration_hook(count)
    try:
        model = source.build("meta")
    except _TooManyModules:
        raise ResourceLimitError(
            f"model {quoted(source.name, PATH_ECHO_LIMIT)} has more than {limit:,} submodules (building it was stopped there, before "
            f"allocating anything); archbench builds models of at most {limit:,} (set {MAX_MODULES_ENV} to allow "
            "more). Check its depth or number of blocks.") from None
    except Exception as exc:
        from archbench.oom import is_out_of_memory, oom_reason

        if not is_out_of_memory(exc):
            raise
        raise ResourceLimitError(f"model {quoted(source.name, PATH_ECHO_LIMIT)} cannot be built even without its weights: one of its "
                                 f"tensors alone does not fit in this machine's memory ({oom_reason(exc)}). Choose a smaller "
                                 "configuration.") from exc
    finally:
        handle.remove()
    _check_fits(source.name, model, devices)
    return model


def parameter_bytes(model: Any) -> int:
    """Bytes of the model's parameters and buffers (each tensor once), as built."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _check_fits(name: str, model: Any, devices: Iterable[str]) -> None:
    size = parameter_bytes(model)
    for device in dict.fromkeys(devices):
        memory = device_memory_bytes(device)
        if memory is not None and size > memory:
            params = sum(p.numel() for p in model.parameters())
            raise ResourceLimitError(
                f"model {quoted(name, PATH_ECHO_LIMIT)} needs {mib(size)} for its parameters and buffers ({params:,} parameters), more "
                f"than the {mib(memory)} of memory {_device_label(device)} has: it cannot be built there. Choose a smaller "
                "configuration.")


def _device_label(device: str) -> str:
    return "this machine" if device == "cpu" else f"{device}"
