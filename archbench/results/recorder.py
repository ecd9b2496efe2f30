"""The store's listener of a run: :class:`StoreRecorder` records each finished row (with its raw samples and
the device peaks it was measured against) as the sweep goes; :func:`stored_device_peaks` gives a resumed
run the ceiling its first part measured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archbench.errors import StoreError
from archbench.listeners import Forwarding, notify
from archbench.results.store import Store
from archbench.rows import CellKey, ResultRow

if TYPE_CHECKING:
    from archbench.timing.peak import DevicePeaks


class StoreRecorder(Forwarding):
    """A sweep listener: on ``cell_finished`` it stores the row (with its raw samples, and the device peaks
    the row was measured against) and then forwards the call; every other callback goes straight to
    ``inner``. :func:`archbench.sweep.run.run_sweep` calls ``cell_finished`` right after the CSV line is
    written with interrupts deferred, so the store and the CSV agree even on SIGTERM. With ``run_id`` None
    nothing is recorded (yet).

    A write that fails mid-run (disk full, a database locked for over a minute, a value SQLite cannot hold) ends
    the recording, not the run: ``failure`` says why and ``inner`` gets a ``warning``; the results file keeps
    every row (:mod:`archbench.results.sinks`: the store and the CSV are the run's two sinks, and a row lost by
    one is kept by the other)."""

    def __init__(self, store: Store, run_id: int | None, inner: Any = None, peaks: DevicePeaks | None = None):
        self.store = store
        self.run_id = run_id
        self.inner = inner
        self.peaks = peaks
        self.failure: str | None = None
        self._recorded_peaks: set[tuple] = set()
        self._recorded_keys: set[CellKey] = set()

    def cell_finished(self, cell: Any, row: ResultRow, index: int, todo: int) -> None:
        self.record(row)
        notify(self.inner, "cell_finished", cell, row, index, todo)

    def record(self, row: ResultRow) -> None:
        """Store ``row`` unless an earlier write failed."""
        if self.failure is not None or self.run_id is None:
            return
        try:
            self._record_peaks(row)
            self.store.add_cell(self.run_id, row)
        except StoreError as exc:
            self._fail(exc, "This cell and the next are not recorded in the results store (the results file keeps "
                            "them).")
            return
        self._recorded_keys.add(row.key())

    def keeps_rows(self) -> bool:
        """Whether rows given now are recorded (the sweep asks when its CSV failed: :mod:`archbench.results.sinks`)."""
        return self.failure is None and self.run_id is not None

    def recorded_keys(self) -> set[CellKey]:
        """The cells this recorder stored."""
        return set(self._recorded_keys)

    def _fail(self, exc: StoreError, consequence: str) -> None:
        self.failure = str(exc)
        notify(self.inner, "warning", f"{exc} {consequence}")

    def _record_peaks(self, row: ResultRow) -> None:
        """The peaks behind the row's ``peak_fraction`` (its dtype's and fp32's, which decides whether a
        low-precision peak is a ceiling), once each, as measured before the cells."""
        if self.peaks is None:
            return
        for dtype in dict.fromkeys((row.dtype, "fp32")):
            key = self.peaks.key(row.device, dtype, row.threads)
            if key not in self._recorded_peaks and self.peaks.is_measured(row.device, dtype, row.threads):
                self.store.record_peak(self.run_id, row.device, dtype, key[2],
                                       self.peaks.tflops(row.device, dtype, row.threads))
                self._recorded_peaks.add(key)


def stored_device_peaks(store: Store, run_id: int) -> DevicePeaks:
    """The CPU peaks ``run_id`` measured, as the :class:`~archbench.timing.peak.DevicePeaks` of the run that
    resumes it, so its new rows' ``peak_fraction`` uses the same ceiling as the old ones. CUDA peaks are
    measured again: their key holds the TF32 settings of the process, which the store does not keep."""
    from archbench.timing.peak import DevicePeaks

    return DevicePeaks(known={(device, dtype, threads, None): tflops
                              for (device, dtype, threads), tflops in store.peaks(run_id).items()
                              if not device.startswith("cuda")})
