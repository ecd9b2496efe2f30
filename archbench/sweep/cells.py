"""The planned cells of a run: one :class:`Cell` per model x device x input x dtype x batch x mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archbench.catalog.source import ModelSource
from archbench.errors import UsageError, quoted
from archbench.parsing import InputShape, format_input
from archbench.resources import check_threads
from archbench.rows import DTYPES, MODES, CellKey, cell_key, normal_backend
from archbench.timing.devices import require_device


@dataclass(frozen=True)
class Cell:
    """One point of a sweep: which model (``source``: a spec with its overrides applied, or any other
    :class:`~archbench.catalog.source.ModelSource`), where and how to time it.

    ``model`` is the name written to the rows (normally ``source.name``); ``threads`` is torch's intra-op
    thread count for the cell (always a number, so resumed runs match)."""

    model: str
    source: ModelSource
    device: str
    mode: str
    batch: int
    input: InputShape
    dtype: str = "fp32"
    channels_last: bool = False
    compiled: bool = False
    threads: int = 1
    search: Any = field(default=None, compare=False)  # how ``batch`` was found (archbench.sweep.maxbatch); None: given
    backend: str = ""  # eager | compile[:mode] | export | onnxruntime ("": compile when ``compiled``, else eager)

    def __post_init__(self) -> None:
        backend, compiled = normal_backend(self.backend, self.compiled)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "compiled", compiled)

    @property
    def input_str(self) -> str:
        return format_input(self.input)

    def key(self) -> CellKey:
        """Same identity as :meth:`ResultRow.key` (what ``--resume`` matches on)."""
        return cell_key(self.model, self.device, self.mode, self.batch, self.input_str, self.dtype,
                        self.channels_last, self.compiled, self.threads, self.backend)

    def label(self) -> str:
        extras = [x for x, on in (("channels-last", self.channels_last), (self.backend, self.backend != "eager")) if on]
        return " ".join([self.model, self.device, self.mode, f"batch {self.batch}", self.input_str, self.dtype, *extras])


def default_threads() -> int:
    import torch

    return torch.get_num_threads()


def plan_cells(
    sources: Sequence[ModelSource],
    devices: Sequence[str],
    batches: Sequence[int],
    inputs: Sequence[InputShape] | None,
    modes: Sequence[str],
    dtypes: Sequence[str],
    channels_last: bool = False,
    compiled: bool = False,
    threads: int | None = None,
    backends: Sequence[str] | None = None,
) -> list[Cell]:
    """Every combination, in run order: model, device, input, dtype, batch, backend, mode (the mode varies
    fastest, so both modes of a model/input/batch share one FLOP count; the backends of a batch run one after
    the other, so what they are compared with was measured just before). ``inputs=None`` uses each model's
    default input; ``threads=None`` records torch's current thread count; ``backends=None`` is ``compile``
    when ``compiled``, else ``eager`` (archbench.timing.backends)."""
    _check_values(batches, modes, dtypes, threads)
    if backends is None:
        backends = ["compile" if compiled else "eager"]
    else:
        from archbench.timing.backends import check_backends

        backends = check_backends(list(backends))
    for device in devices:
        require_device(device)
    n_threads = int(threads) if threads is not None else default_threads()
    return [
        Cell(source.name, source, device, mode, int(batch), tuple(shape), dtype, bool(channels_last), False, n_threads,
             backend=backend)
        for source in sources
        for device in devices
        for shape in (inputs or [source.input])
        for dtype in dtypes
        for batch in batches
        for backend in backends
        for mode in modes
    ]


def _check_values(batches, modes, dtypes, threads) -> None:
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"mode {quoted(mode)} is not one of: {', '.join(MODES)}.")
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UsageError(f"dtype {quoted(dtype)} is not one of: {', '.join(DTYPES)}.")
    for batch in batches:
        if int(batch) <= 0:
            raise UsageError(f"batch {batch} is not a positive integer.")
    if threads is not None and int(threads) <= 0:
        raise UsageError(f"threads {threads} is not a positive integer.")
    if threads is not None:
        check_threads(int(threads))


TARGET_SEP = "@"


def split_target(device: str) -> tuple[str, str]:
    """``cpu@a`` -> ``("cpu", "a")``; ``cuda`` -> ``("cuda", "")``."""
    base, _, target = str(device).partition(TARGET_SEP)
    return base, target


def with_target(device: str, target: str) -> str:
    return f"{device}{TARGET_SEP}{target}" if target else device
