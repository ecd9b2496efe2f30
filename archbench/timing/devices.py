"""Device names and availability (``--device cpu,cuda:1``); checked before anything runs.

A device is ``cpu``, ``cuda`` (torch's current GPU, normally ``cuda:0``) or ``cuda:N``. ``auto`` means the
CPU plus CUDA when a usable GPU is present. Whether a GPU is usable is said precisely: no CUDA in this
torch build, a driver torch cannot use, an index beyond the GPUs present, or a GPU whose compute
capability this torch build has no kernels for.
"""

from __future__ import annotations

import os

from archbench.errors import DeviceUnavailableError, UsageError
from archbench.parsing import parse_device, split_list

DEVICE_KINDS = ("cpu", "cuda")


def device_type(device: str) -> str:
    """``cuda:1`` -> ``cuda``; ``cpu`` -> ``cpu``."""
    return str(device).split(":", 1)[0]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_devices(text: str, option: str = "--device") -> list[str]:
    """Parse ``cpu``, ``cuda``, ``cuda:N``, a comma-separated list of them, or ``auto`` (CPU, plus CUDA
    when a GPU is present), and fail before anything runs when a GPU is asked for but not usable."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: choose from cpu, cuda, cuda:N or auto.")
    devices: list[str] = []
    for item in items:
        if item == "auto":
            devices += ["cpu", "cuda"] if cuda_available() else ["cpu"]
        else:
            devices.append(parse_device(item, option))
    for device in dict.fromkeys(devices):
        require_device(device)
    return list(dict.fromkeys(devices))


def require_device(device: str) -> None:
    """Raise :class:`DeviceUnavailableError` saying exactly why ``device`` cannot be used."""
    if device_type(device) != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device} was asked for, but {_why_no_cuda(torch)} "
                                     "Use --device cpu, or run on a machine with a GPU.")
    index = cuda_index(device)
    count = torch.cuda.device_count()
    if index >= count:
        names = ", ".join(f"cuda:{i}" for i in range(count))
        raise DeviceUnavailableError(f"--device {device} was asked for, but torch sees {count} GPU(s): {names}.")
    unsupported = unsupported_capability(torch, index)
    if unsupported:
        raise DeviceUnavailableError(f"--device {device}: {unsupported}")


def cuda_index(device: str) -> int:
    """``cuda:1`` -> 1; plain ``cuda`` -> torch's current device."""
    if ":" in device:
        return int(device.split(":", 1)[1])
    import torch

    return torch.cuda.current_device()


def _why_no_cuda(torch) -> str:
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build of torch."
    if _nvidia_driver_present():
        return (f"torch cannot use the GPU although an NVIDIA driver is loaded: the driver may be too old for "
                f"this torch build's CUDA {torch.version.cuda} (see `nvidia-smi`), or CUDA_VISIBLE_DEVICES hides it.")
    return "torch sees no CUDA GPU on this machine (torch.cuda.is_available() is False)."


def _nvidia_driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version")


def unsupported_capability(torch, index: int) -> str | None:
    """A message when GPU ``index``'s compute capability has no kernels in this torch build."""
    arch_list = torch.cuda.get_arch_list()
    if not arch_list:
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return capability_message(torch.cuda.get_device_name(index), (major, minor), arch_list, torch.__version__)


def capability_message(name: str, capability: tuple[int, int], arch_list: list[str], torch_version: str) -> str | None:
    """``None`` when ``arch_list`` (e.g. ``['sm_80', 'sm_90', 'compute_90']``) can run ``capability``:
    an exact ``sm_XY``, or PTX (``compute_XY``) for an older or equal capability, which the driver JIT-compiles."""
    major, minor = capability
    code = major * 10 + minor
    sm = {int(a[3:]) for a in arch_list if a.startswith("sm_") and a[3:].isdigit()}
    ptx = {int(a[8:]) for a in arch_list if a.startswith("compute_") and a[8:].isdigit()}
    if code in sm or any(p <= code for p in ptx):
        return None
    return (f"{name} has compute capability {major}.{minor}, which this torch build ({torch_version}) has no "
            f"kernels for (it supports {', '.join(arch_list)}); install a torch build for this GPU.")


def unsupported_dtype(device: str, dtype: str) -> str | None:
    """Why ``dtype`` cannot be timed fairly on ``device`` (``None`` when it can): bf16 on a GPU older
    than Ampere is emulated, so its timing would describe the emulation, not the hardware."""
    if device_type(device) != "cuda" or dtype != "bf16":
        return None
    import torch

    index = cuda_index(device)
    return bf16_message(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index))


def bf16_message(name: str, capability: tuple[int, int]) -> str | None:
    if tuple(capability) >= (8, 0):
        return None
    major, minor = capability
    return (f"bf16 needs compute capability 8.0 (Ampere) or newer; {name} has {major}.{minor}, where bf16 "
            "is emulated: use fp16 or fp32 on this GPU.")
