"""The timing engine: warm-up, adaptive per-iteration sampling, statistics, peak memory, device peak.

Three layers, after ``torch/utils/benchmark/utils/{timer,common}.py``:

* statistics on raw samples (pure Python): :func:`median`, :func:`quantile`, :func:`median_ci`;
* :func:`measure` runs a step callable: a time-aware warm-up, then one sample per iteration (CUDA events
  on GPU, ``perf_counter_ns`` on CPU) until the 95% CI of the median is within ``precision`` of it, the
  time budget runs out, or ``max_samples`` is reached; it returns a :class:`Measurement` that keeps the
  raw samples and derives median/IQR/CI/min from them;
* :class:`MemoryTracker` (peak memory of a cell) and :func:`device_peak_tflops` (a large matmul);
  :func:`device_ceiling_tflops` keeps only peaks that are a real ceiling for their dtype.

The CI of the median is the distribution-free order-statistic interval: with ``n`` sorted samples and
``B ~ Binomial(n, 1/2)``, ``[x_(k), x_(n-k+1)]`` covers the true median with probability
``1 - 2 P(B <= k-1)``; ``k`` is the largest index keeping that at or above 95%. Below 6 samples no such
``k`` exists; the interval is then the sample range (coverage ``1 - 2^(1-n)``, 94% at n=5) and never
counts as precise enough to stop early.

Nothing here imports torch at module level (the statistics are used without it).
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass
from typing import Callable

NOISY_IQR_FRACTION = 0.10  # a cell is flagged noisy when IQR/median exceeds this
CONFIDENCE = 0.95

# ------------------------------------------------------------------------------------------ statistics


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median(values) -> float:
    return quantile(sorted(values), 0.5)


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks ``(lo, hi)`` of the order-statistic CI of the median and its exact coverage.

    ``lo = k`` is the largest rank with ``P(B <= k-1) <= (1-confidence)/2``, ``B ~ Binomial(n, 1/2)``;
    ``hi = n-k+1``. With too few samples for the confidence (n < 6 at 95%) the ranks are ``(1, n)``."""
    if n <= 0:
        return 0, 0, 0.0
    alpha_half = (1.0 - confidence) / 2.0
    log_pmf = -n * math.log(2.0)  # log P(B = 0), in log space: no underflow for large n
    cdf_below, k = 0.0, 0  # cdf_below = P(B <= k-1)
    while k < n and cdf_below + math.exp(log_pmf) <= alpha_half:
        cdf_below += math.exp(log_pmf)
        log_pmf += math.log(n - k) - math.log(k + 1)
        k += 1
    if k == 0:
        return 1, n, 1.0 - 2.0 * math.exp(-n * math.log(2.0))
    return k, n - k + 1, 1.0 - 2.0 * cdf_below


def median_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the distribution-free CI of the median of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan, 0.0
    lo, hi, coverage = median_ci_ranks(len(ordered), confidence)
    return ordered[lo - 1], ordered[hi - 1], coverage


def ci_within(values, precision: float, confidence: float = CONFIDENCE) -> bool:
    """Whether both ends of the median's CI (at full ``confidence``) lie within ``precision`` x median."""
    ordered = sorted(values)
    if not ordered:
        return False
    lo, hi, coverage = median_ci(ordered, confidence)
    if coverage < confidence:
        return False
    mid = quantile(ordered, 0.5)
    return max(mid - lo, hi - mid) <= precision * mid


@dataclass(frozen=True)
class Measurement:
    """Raw per-iteration samples of one cell (milliseconds) and what stopped the sampling.

    ``stop_reason``: ``precision`` (CI within the target), ``max_time`` (budget spent) or
    ``max_samples``. Statistics are derived from the samples, never stored separately."""

    samples_ms: tuple[float, ...]
    warmup_ms: tuple[float, ...]
    stop_reason: str
    wall_s: float  # warm-up + sampling, host wall clock
    precision: float

    @property
    def n_samples(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return median(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        ordered = sorted(self.samples_ms)
        return quantile(ordered, 0.75) - quantile(ordered, 0.25)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms) if self.samples_ms else math.nan

    @property
    def ci_ms(self) -> tuple[float, float]:
        low, high, _ = median_ci(self.samples_ms)
        return low, high

    @property
    def ci_coverage(self) -> float:
        return median_ci(self.samples_ms)[2]

    @property
    def noisy(self) -> bool:
        mid = self.median_ms
        return bool(mid > 0 and self.iqr_ms / mid > NOISY_IQR_FRACTION)


# ------------------------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class WarmupPolicy:
    """When the warm-up stops: after ``min_iters`` iterations (1; 3 for ``torch.compile``, whose first
    call compiles) once the last ``steady_window`` iterations agree within ``steady_tolerance`` and at
    least ``min_time_s`` has passed; or, whatever the agreement, once ``budget_share`` of the cell's time
    budget (``default_budget_s`` without one) is spent — a step that takes 15 s gets one warm-up
    iteration, not ten. An iteration that would overrun the warm-up budget is not started."""

    min_iters: int = 1
    steady_window: int = 3
    steady_tolerance: float = 0.05
    min_time_s: float = 0.1
    budget_share: float = 0.25
    default_budget_s: float = 5.0
    max_iters: int = 1000

    def budget_s(self, max_time_s: float | None) -> float:
        return self.default_budget_s if max_time_s is None else self.budget_share * max_time_s


def _is_steady(times: list[float], window: int, tolerance: float) -> bool:
    if len(times) < window:
        return False
    last = times[-window:]
    return (max(last) - min(last)) <= tolerance * min(last)


def _cpu_sampler(step: Callable[[], object]) -> Callable[[], float]:
    def one() -> float:
        start = time.perf_counter_ns()
        step()
        return (time.perf_counter_ns() - start) / 1e6

    return one


def _cuda_sampler(step: Callable[[], object], device: str) -> Callable[[], float]:
    """Device time between two events around the step; the host waits on the end event, so each
    sample is complete before the next one starts."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream(device)

    def one() -> float:
        start.record(stream)
        step()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end)

    return one


def make_sampler(step: Callable[[], object], device: str) -> Callable[[], float]:
    """A callable running ``step`` once and returning its time in milliseconds."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        return _cuda_sampler(step, device)
    return _cpu_sampler(step)


def measure(
    step: Callable[[], object],
    device: str = "cpu",
    *,
    precision: float = 0.02,
    max_time_s: float | None = None,
    min_samples: int = 5,
    max_samples: int = 10_000,
    warmup: WarmupPolicy = WarmupPolicy(),
    on_phase: Callable[[str], None] | None = None,
    sampler: Callable[[], float] | None = None,
) -> Measurement:
    """Warm ``step`` up, then sample it until the median is known to ``precision`` (95% CI), the cell's
    ``max_time_s`` (warm-up included) is spent, or ``max_samples`` is reached.

    ``sampler`` (runs one iteration, returns its milliseconds) replaces the device's timer: tests script
    the sample sequence with it, so the stopping rules are checked without depending on real timings.

    At least ``min_samples`` (>= 5 is the default; never fewer than 1) samples and one warm-up iteration
    are always taken, even past ``max_time_s``; beyond those, no iteration is started that the budget
    could not finish (estimated from the median so far)."""
    min_samples = max(1, int(min_samples))
    sample = sampler if sampler is not None else make_sampler(step, device)
    began = time.perf_counter()
    elapsed = lambda: time.perf_counter() - began  # noqa: E731

    if on_phase:
        on_phase("warming up")
    warm: list[float] = []
    budget = warmup.budget_s(max_time_s)
    min_time = min(warmup.min_time_s, budget)
    while True:
        warm.append(sample())
        if len(warm) < warmup.min_iters:
            continue
        spent = elapsed()
        if _is_steady(warm, warmup.steady_window, warmup.steady_tolerance) and spent >= min_time:
            break
        if spent + warm[-1] / 1e3 > budget or len(warm) >= warmup.max_iters:
            break

    if on_phase:
        on_phase("sampling")
    samples: list[float] = []
    stop_reason = "max_samples"
    next_check = 6
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit / torch.utils.benchmark do: no collector pauses inside samples
    try:
        while len(samples) < max_samples:
            samples.append(sample())
            n = len(samples)
            if n < min_samples:
                continue
            if n >= next_check:
                next_check = max(n + 1, int(n * 1.05))
                if ci_within(samples, precision):
                    stop_reason = "precision"
                    break
            if max_time_s is not None and elapsed() + median(samples[-5:]) / 1e3 > max_time_s:
                stop_reason = "max_time"
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(tuple(samples), tuple(warm), stop_reason, elapsed(), precision)


# ------------------------------------------------------------------------------------------- memory


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

    Create it before building the model so the weights are included, as on CUDA."""

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


# ------------------------------------------------------------------------------------- device peak

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_PEAKS: dict[tuple, float] = {}


def torch_dtype(dtype: str):
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


def device_peak_tflops(device: str, dtype: str) -> float:
    """The device's measured matmul throughput in TFLOP/s for ``dtype`` (``fp32``/``bf16``/``fp16``).

    Measured once per device, dtype, CPU thread count and TF32 setting in this process and cached: a
    square matmul grown until one product takes ~0.1 s (up to 8192 on GPU, 4096 on CPU), best of several
    runs. ``fp32`` on a GPU is measured under the precision the cells' fp32 work runs at: when cuDNN runs
    fp32 convolutions as TF32 (torch's default), the ceiling is the TF32 matmul rate, not IEEE fp32's.
    A peak that cannot be measured (out of memory) is NaN: no % of peak, never a failed cell."""
    import torch

    from archbench.precision import tf32_settings

    cuda = str(device).startswith("cuda")
    tf32 = tf32_settings() if cuda else None
    key = (str(device), dtype, 0 if cuda else torch.get_num_threads(), tf32)
    if key not in _PEAKS:
        try:
            with _matmul_as_tf32(cuda and dtype == "fp32" and tf32.any):
                _PEAKS[key] = _measure_matmul_tflops(str(device), torch_dtype(dtype))
        except (RuntimeError, MemoryError) as exc:
            from archbench.oom import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
            _PEAKS[key] = math.nan
    return _PEAKS[key]


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


def device_ceiling_tflops(device: str, dtype: str) -> tuple[float, str]:
    """The measured peak for ``dtype`` when it is a real throughput ceiling, else NaN and why not.

    A low-precision matmul slower than fp32 on the same device (bf16/fp16 on most CPUs: ~0.001 TFLOP/s
    here) is emulated or converted in software, so its "peak" is no ceiling: a batch-1 MNIST network
    would run at ~100% of it. ``fp32`` always counts; other dtypes only when at least as fast as fp32."""
    peak = device_peak_tflops(device, dtype)
    if dtype == "fp32":
        return peak, ""
    note = emulated_peak_note(device, dtype, peak, device_peak_tflops(device, "fp32"))
    return (math.nan, note) if note else (peak, "")


def emulated_peak_note(device: str, dtype: str, peak_tflops: float, fp32_peak_tflops: float) -> str:
    """Why ``dtype``'s measured peak is no throughput ceiling ('' when it is one): it is below fp32's."""
    if dtype == "fp32" or peak_tflops >= fp32_peak_tflops:
        return ""
    return (f"no % of peak for {dtype} on {device}: its matmul peak ({peak_tflops:.3g} TFLOP/s) is below fp32's "
            f"({fp32_peak_tflops:.3g} TFLOP/s), so {dtype} matrix products are emulated there and that peak is no ceiling")


def _measure_matmul_tflops(device: str, dtype) -> float:
    import torch

    cuda = device.startswith("cuda")
    limit = 8192 if cuda else 4096
    n, best = 256, 0.0
    with torch.inference_mode():
        while True:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            sample = make_sampler(lambda: torch.mm(a, b), device)
            sample()  # warm-up (kernel selection, page faults)
            times = [sample() for _ in range(3 if n < limit else 5)]
            seconds = min(times) / 1e3
            best = max(best, 2.0 * n**3 / seconds / 1e12)
            if seconds >= 0.1 or n >= limit:
                return best
            n *= 2
