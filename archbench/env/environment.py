"""The environment fingerprint recorded with every set of results: versions, devices, threads and the
numeric settings that change timings (TF32, cuDNN autotuning)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from archbench.schemas import Check, Field, SchemaError, anything, mapping_of, optional, record, text


def cpu_model(cpuinfo: str | None = None, lscpu: str | None = None) -> str:
    """The CPU's full name: ``/proc/cpuinfo``'s "model name", else ``lscpu``'s "Model name", else
    ``platform.processor()``. A virtual machine often shows only a family name ("AMD EPYC"); then the
    family, model and stepping numbers (which tell the generation apart) and the hypervisor are added:
    ``AMD EPYC (family 25, model 1, stepping 1; KVM guest)``. The texts can be given (tests)."""
    info = _fields(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    virtual = "hypervisor" in info.get("flags", "").split()
    name = info.get("model name", "")
    if _specific(name) and not virtual:
        return name
    listing = _fields(_lscpu() if lscpu is None else lscpu)
    name = name or listing.get("model name") or platform.processor() or platform.machine()
    if _specific(name) and not virtual:
        return name
    numbers = [(label, info.get(key) or listing.get(key)) for label, key in
               (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))]
    details = ", ".join(f"{label} {value}" for label, value in numbers if value)
    guest = listing.get("hypervisor vendor")
    host = f"{guest} guest" if guest else ("virtual machine" if virtual else "")
    extra = "; ".join(x for x in (details, host) if x)
    return f"{name} ({extra})" if extra else name


def _specific(name: str) -> bool:
    """Whether a CPU name carries a model number ("AMD EPYC 7763"), not only a family ("AMD EPYC")."""
    return any(ch.isdigit() for ch in name)


def _fields(text: str) -> dict[str, str]:
    """``key: value`` lines of the first block (one processor of ``/proc/cpuinfo``), keys lower-cased."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _lscpu() -> str:
    import subprocess

    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False,
                              env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(devices: list[str], threads: int | None = None) -> dict[str, Any]:
    """A JSON-able fingerprint: archbench, Python, torch, torchvision, CUDA/cuDNN versions, the devices'
    names, CPU model and core count, torch's intra-op thread count (``threads`` when the run sets it),
    TF32 and cuDNN-autotuning settings, the platform and the UTC date."""
    import torch

    from archbench.env.gpu import gpu_environment
    from archbench.timing.precision import CUDNN_BENCHMARK, tf32_settings
    from archbench.version import __version__

    cuda = any(str(d).startswith("cuda") for d in devices)
    tf32 = tf32_settings()  # the new fp32_precision API where it exists: the legacy getters may raise
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
        "tf32_matmul": tf32.matmul,
        "tf32_cudnn": tf32.conv,
        "cudnn_benchmark": CUDNN_BENCHMARK if cuda else bool(torch.backends.cudnn.benchmark),
        **gpu_environment(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
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
    from archbench.files import atomic_write_text

    return atomic_write_text(path, json.dumps(runs, indent=2, default=str) + "\n")  # a full disk keeps the old file


# -------------------------------------------------------------------------------- reading it back

# A fingerprint's values are shown as they are; the keys that reports take apart must have their shape.
ENVIRONMENT = record({
    "devices": Field(optional(mapping_of(anything())), False, None),
    "date": Field(text(), False, ""),
    "worker": Field(optional(text()), False, None),
}, what="an environment (an object of torch, devices, date, ...)")


def _environment_check() -> Check:
    """An environment object, kept whole (its other keys are free), with :data:`ENVIRONMENT`'s keys checked."""

    def check(value: Any, path: str) -> dict[str, Any]:
        ENVIRONMENT(value, path)
        return dict(value)

    return check


ENVIRONMENT_CHECK = _environment_check()


def environment_sessions(value: Any) -> list[dict[str, Any]]:
    """The fingerprints in a bench CSV's ``.env.json`` (one object, or a list with one per session); entries
    of another shape are left out, as an unreadable file is: the file is optional, the CSV reads without it."""
    sessions = value if isinstance(value, list) else [value]
    kept = []
    for session in sessions:
        try:
            kept.append(ENVIRONMENT_CHECK(session, ""))
        except (SchemaError, RecursionError):
            continue
    return kept


def read_environment(out_csv: str | Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The fingerprints kept beside ``out_csv`` (:func:`environment_path`), one per session that added rows;
    none, with a warning naming the file, when it is there but unreadable (the rows are reported without
    their environment); none, without one, when there is no file."""
    from archbench.errors import UsageError
    from archbench.files import read_json_file

    path = environment_path(out_csv)
    if not path.exists():
        return [], ()
    try:
        return environment_sessions(read_json_file(path, "an environment file")), ()
    except UsageError as exc:
        return [], (f"{exc} The rows are reported without their environment.",)
