"""The environment fingerprint recorded with every set of results: versions, devices, threads and the
numeric settings that change timings (TF32, cuDNN autotuning)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(devices: list[str], threads: int | None = None) -> dict[str, Any]:
    """A JSON-able fingerprint: archbench, Python, torch, torchvision, CUDA/cuDNN versions, the devices'
    names, CPU model and core count, torch's intra-op thread count (``threads`` when the run sets it),
    TF32 and cuDNN-autotuning settings, the platform and the UTC date."""
    import torch

    from archbench import __version__
    from archbench.sweep import CUDNN_BENCHMARK

    cuda = any(str(d).startswith("cuda") for d in devices)
    env: dict[str, Any] = {
        "archbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version_of("torchvision"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "devices": {str(d): _device_name(str(d)) for d in devices},
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": int(threads) if threads is not None else torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": CUDNN_BENCHMARK if cuda else bool(torch.backends.cudnn.benchmark),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if cuda and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["cuda_capability"] = f"{props.major}.{props.minor}"
        env["cuda_memory_gb"] = round(props.total_memory / 2**30, 1)
    return env


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
        return "unavailable"
    return cpu_model()


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment_path(out_csv: str | Path) -> Path:
    """Where the fingerprint of a results CSV is kept: ``FILE.env.json`` next to ``FILE.csv``."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + ".env.json")


def append_environment(out_csv: str | Path, env: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Record ``env`` (plus ``extra``, e.g. the measured device peaks) beside ``out_csv``.

    The file holds a list with one entry per run, so a resumed sweep keeps the fingerprint of each part."""
    path = environment_path(out_csv)
    runs: list = []
    if path.exists():
        text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text)
            runs = loaded if isinstance(loaded, list) else [loaded]
        except json.JSONDecodeError:
            runs = [{"unparsed_previous_content": text}]  # keep whatever was there
    runs.append({**env, **(extra or {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=2, default=str) + "\n", encoding="utf-8")
    return path
