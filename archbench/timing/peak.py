"""The device's measured matmul peak (TFLOP/s), the ceiling that ``peak_fraction`` is taken against."""

from __future__ import annotations

import contextlib
import math

from archbench.timing.timer import make_sampler

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(dtype: str):
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


class DevicePeaks:
    """The device peaks of one run: each device/dtype's matmul throughput, measured once and then reused.

    A run owns one (no process-wide cache), so a resumed run can be given the peaks its first part stored,
    and two runs in one process never share a figure measured under other settings."""

    def __init__(self, known: dict[tuple, float] | None = None):
        self._peaks: dict[tuple, float] = dict(known or {})

    def tflops(self, device: str, dtype: str, threads: int | None = None) -> float:
        """The device's measured matmul throughput in TFLOP/s for ``dtype`` (``fp32``/``bf16``/``fp16``).

        Measured once per device, dtype, CPU thread count and TF32 setting: a square matmul grown until one
        product takes ~0.1 s or its rate plateaus (up to 8192 on GPU, 4096 on CPU), best of several runs
        (:func:`_measure_matmul_tflops`). ``fp32`` on a GPU is
        measured under the precision the cells' fp32 work runs at: when cuDNN runs fp32 convolutions as
        TF32 (torch's default), the ceiling is the TF32 matmul rate, not IEEE fp32's. A peak that cannot be
        measured (out of memory) is NaN: no % of peak, never a failed cell. On the CPU it is measured with
        ``threads`` intra-op threads (default: torch's current count), the count the cells run with."""
        key = self.key(device, dtype, threads)
        if key not in self._peaks:
            self._peaks[key] = _measure_peak(str(device), dtype, key[2])
        return self._peaks[key]

    def ceiling(self, device: str, dtype: str, threads: int | None = None) -> tuple[float, str]:
        """The measured peak for ``dtype`` when it is a real throughput ceiling, else NaN and why not.

        A low-precision matmul slower than fp32 on the same device (bf16/fp16 on most CPUs: ~0.001 TFLOP/s
        here) is emulated or converted in software, so its "peak" is no ceiling: a batch-1 MNIST network
        would run at ~100% of it. ``fp32`` always counts; other dtypes only when at least as fast as fp32."""
        peak = self.tflops(device, dtype, threads)
        if dtype == "fp32":
            return peak, ""
        note = emulated_peak_note(device, dtype, peak, self.tflops(device, "fp32", threads))
        return (math.nan, note) if note else (peak, "")

    def known(self) -> dict[tuple, float]:
        """Every peak measured or adopted so far, by :meth:`key` (a copy)."""
        return dict(self._peaks)

    def adopt(self, device: str, dtype: str, threads: int | None, tflops: float) -> None:
        """Take a peak measured elsewhere (a worker, a stored run); the run's first figure for a key wins."""
        self._peaks.setdefault(self.key(device, dtype, threads), tflops)

    def is_measured(self, device: str, dtype: str, threads: int | None = None) -> bool:
        return self.key(device, dtype, threads) in self._peaks

    @staticmethod
    def key(device: str, dtype: str, threads: int | None = None) -> tuple:
        import torch

        from archbench.timing.precision import tf32_settings

        cuda = str(device).startswith("cuda")
        if cuda:
            return (str(device), dtype, 0, tf32_settings())
        return (str(device), dtype, int(threads) if threads else torch.get_num_threads(), None)


def _measure_peak(device: str, dtype: str, threads: int) -> float:
    import torch

    from archbench.timing.precision import tf32_settings

    cuda = device.startswith("cuda")
    previous = torch.get_num_threads()
    try:
        if not cuda:
            torch.set_num_threads(threads)
        with _matmul_as_tf32(cuda and dtype == "fp32" and tf32_settings().any):
            return _measure_matmul_tflops(device, torch_dtype(dtype))
    except (RuntimeError, MemoryError) as exc:
        from archbench.oom import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        return math.nan
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _matmul_as_tf32(active: bool):
    """fp32 matrix multiplies as TF32 within the block (torch's new API where it exists), restored after."""
    import torch

    matmul = torch.backends.cuda.matmul
    if not active:
        yield
        return
    name, value = ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    previous = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, previous)


def emulated_peak_note(device: str, dtype: str, peak_tflops: float, fp32_peak_tflops: float) -> str:
    """Why ``dtype``'s measured peak is no throughput ceiling ('' when it is one): it is below fp32's."""
    if dtype == "fp32" or peak_tflops >= fp32_peak_tflops:
        return ""
    return (f"no % of peak for {dtype} on {device}: its matmul peak ({peak_tflops:.3g} TFLOP/s) is below fp32's "
            f"({fp32_peak_tflops:.3g} TFLOP/s), so {dtype} matrix products are emulated there and that peak is no ceiling")


PLATEAU_FROM = 1024  # below this size a matmul is still limited by call overhead and caches
PLATEAU_GAIN = 0.03  # a size doubling that raises the rate by less than this is the plateau


def _measure_matmul_tflops(device: str, dtype) -> float:
    """Square matmuls of growing size (256, 512, ...), best rate of several runs each, until one product
    takes ~0.1 s, the size limit is reached, or the rate has plateaued (from 1024 on, doubling the size
    gains < 3%: on this 2-core CPU that saves a 4096 step costing ~5 s for a rate ~4% higher)."""
    import torch

    cuda = device.startswith("cuda")
    limit = 8192 if cuda else 4096
    n, best = 256, 0.0
    with torch.inference_mode():
        while True:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            sample = make_sampler(lambda a=a, b=b: torch.mm(a, b), device)
            sample()  # warm-up (kernel selection, page faults)
            times = [sample() for _ in range(3 if n < limit else 5)]
            seconds = min(times) / 1e3
            rate = 2.0 * n**3 / seconds / 1e12
            plateau = n >= PLATEAU_FROM and rate < best * (1 + PLATEAU_GAIN)  # doubling n no longer pays
            best = max(best, rate)
            if seconds >= 0.1 or n >= limit or plateau:
                return best
            n *= 2
