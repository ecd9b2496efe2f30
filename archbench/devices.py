"""Device names and availability (``--device cpu,cuda``); checked before anything runs."""

from __future__ import annotations

from archbench.errors import DeviceUnavailableError
from archbench.options import parse_choices

DEVICES = ("cpu", "cuda")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_devices(text: str, option: str = "--device") -> list[str]:
    """Parse ``cpu``, ``cuda``, ``cpu,cuda`` or ``auto`` (CPU, plus CUDA when a GPU is present), and
    fail before anything runs when CUDA is asked for but absent."""
    if text.strip() == "auto":
        return ["cpu", "cuda"] if cuda_available() else ["cpu"]
    devices = parse_choices(text, option, (*DEVICES, "auto"))
    if "auto" in devices:
        devices = [d for d in devices if d != "auto"] + (["cuda"] if cuda_available() else [])
    for device in devices:
        require_device(device)
    return list(dict.fromkeys(devices))


def require_device(device: str) -> None:
    if device == "cuda" and not cuda_available():
        raise DeviceUnavailableError(
            "--device cuda was asked for, but torch sees no CUDA GPU on this machine "
            "(torch.cuda.is_available() is False). Use --device cpu, or run on a machine with a GPU."
        )
