"""The device's measured memory-bandwidth peak (GB/s), the sloped roof of a roofline beside the matmul peak
(:mod:`archbench.timing.peak`).

STREAM-style (McCalpin's STREAM benchmark), in torch: a **copy** ``b[:] = a`` (2 arrays moved: 8 bytes per
fp32 element) and a **triad** ``a[:] = b + s * c`` (3 arrays: 12 bytes per element), each over arrays far
larger than the caches (64 MiB each on the CPU, 1 GiB on a GPU), best of several runs. The peak is the
better of the two rates. STREAM counts the bytes the program asks for (read + written, no write-allocate
traffic), the same model archbench's per-layer bytes use (:mod:`archbench.costs.traffic`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archbench.timing.timer import make_sampler

CPU_ARRAY_BYTES = 64 * 2**20  # per array: 3 x 64 MiB is far beyond any CPU's last-level cache
CUDA_ARRAY_BYTES = 2**30  # per array on a GPU (an H100's L2 is 50 MiB)
RUNS = 10  # best of: the first touches pages, later ones see the machine at its quietest


@dataclass(frozen=True)
class Bandwidth:
    """STREAM copy and triad rates (GB/s, 10^9 bytes per second) of one device; ``gbps`` is the peak."""

    device: str
    threads: int  # CPU intra-op threads it was measured with (0 on CUDA)
    copy_gbps: float
    triad_gbps: float
    array_bytes: int

    @property
    def gbps(self) -> float:
        rates = [r for r in (self.copy_gbps, self.triad_gbps) if math.isfinite(r)]
        return max(rates) if rates else math.nan

    def to_dict(self) -> dict:
        return {"device": self.device, "threads": self.threads, "copy_gbps": self.copy_gbps,
                "triad_gbps": self.triad_gbps, "array_bytes": self.array_bytes, "gbps": self.gbps}

    @classmethod
    def from_dict(cls, data: dict) -> Bandwidth:
        return cls(str(data["device"]), int(data["threads"]), float(data["copy_gbps"]), float(data["triad_gbps"]),
                   int(data["array_bytes"]))


def measure_bandwidth(device: str = "cpu", threads: int | None = None, array_bytes: int | None = None) -> Bandwidth:
    """Copy and triad rates of ``device`` (on the CPU with ``threads`` intra-op threads, default torch's
    current count). Arrays that do not fit give NaN rates (no roof), never an error."""
    import torch

    cuda = str(device).startswith("cuda")
    size = int(array_bytes or (CUDA_ARRAY_BYTES if cuda else CPU_ARRAY_BYTES))
    previous = torch.get_num_threads()
    used = 0 if cuda else int(threads or previous)
    try:
        if not cuda:
            torch.set_num_threads(used)
        copy, triad = _stream(str(device), size // 4)
    except (RuntimeError, MemoryError) as exc:
        from archbench.oom import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        copy = triad = math.nan
    finally:
        torch.set_num_threads(previous)
    return Bandwidth(str(device), used, copy, triad, size)


def _stream(device: str, n: int) -> tuple[float, float]:
    import torch

    with torch.inference_mode():
        a = torch.ones(n, device=device)
        b = torch.full((n,), 2.0, device=device)
        c = torch.zeros(n, device=device)
        copy_ms = _best_ms(lambda: b.copy_(a), device)
        triad_ms = _best_ms(lambda: torch.add(b, c, alpha=3.0, out=a), device)
    element = 4
    return _gbps(2 * n * element, copy_ms), _gbps(3 * n * element, triad_ms)


def _best_ms(kernel, device: str) -> float:
    sample = make_sampler(kernel, device)
    return min(sample() for _ in range(RUNS))


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms / 1e3) / 1e9 if ms > 0 else math.nan
