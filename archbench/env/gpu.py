"""What the environment record says about GPUs: the driver, how many, and each one's name, memory,
compute capability — and clocks and power limit when NVML (the ``pynvml`` module) is installed.

Every field is present on every machine: ``None`` (JSON ``null``) where there is no GPU or no way to
know, so a CPU-only record and a GPU record have the same keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def gpu_environment() -> dict[str, Any]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "gpu_driver": nvidia_driver_version(),
        "gpu_count": count,
        "gpus": [_gpu(torch, index) for index in range(count)] or None,
    }


def nvidia_driver_version(text: str | None = None) -> str | None:
    """The kernel driver's version from ``/proc/driver/nvidia/version`` (``None`` without one)."""
    if text is None:
        try:
            text = _DRIVER_FILE.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    match = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else None


def _gpu(torch, index: int) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(index)
    return {
        "index": index,
        "name": props.name,
        "memory_mib": props.total_memory // 2**20,
        "capability": f"{props.major}.{props.minor}",
        **_nvml_fields(index),
    }


def _nvml_fields(index: int) -> dict[str, Any]:
    """SM clock limits and the power limit, when NVML can be asked; ``None`` each otherwise."""
    empty = {"sm_clock_max_mhz": None, "power_limit_w": None}
    try:
        import pynvml
    except ImportError:
        return empty
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return {
            "sm_clock_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
        }
    except Exception:  # noqa: BLE001 - NVML refusing (permissions, MIG) must not lose the run's record
        return empty
