"""The store's listener of a bench or compare run: begins the run when the sweep starts measuring, records
each cell as it finishes, and resumes the run that wrote the same folder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from archbench.errors import StoreError
from archbench.results.recorder import StoreRecorder, stored_device_peaks
from archbench.results.store import Store
from archbench.rows import ResultRow
from archbench.sweep.cell_measure import RunCaches


class Recording(StoreRecorder):
    """The :class:`StoreRecorder` of a bench or compare run, given as the sweep's listener. The run is begun
    when the sweep starts measuring (after its checks: a refused sweep records nothing) — or, when
    ``resume`` finds a run that wrote ``out_path``, that run goes on under its id, and ``caches`` hold its
    stored peaks for the sweep to reuse. :meth:`finish` closes it."""

    def __init__(self, store: Store, command: str, *, title: str = "", env: Mapping[str, Any], out_path: str | Path,
                 planned_cells: int, resume: bool, report: Mapping[str, Any] | None = None, listener: Any = None,
                 cwd: str | Path = "."):
        self.resumed = store.latest_run_for(out_path) if resume else None
        self.caches = RunCaches(peaks=stored_device_peaks(store, self.resumed)) if self.resumed is not None else RunCaches()
        super().__init__(store, self.resumed, listener, self.caches.peaks)
        self._run = dict(command=command, title=title, env=env, out_path=out_path, planned_cells=planned_cells,
                         report=report)
        self._cwd = cwd

    @property
    def recorded(self) -> int | None:
        """The run's id once recorded without a failed write, else None."""
        return self.run_id if self.failure is None else None

    def sweep_started(self, total: int, already_done: int) -> None:
        try:
            self._begin()
        except StoreError as exc:
            self._fail(exc, "This run is not recorded in the results store (the results file keeps its cells).")
        callback = getattr(self.inner, "sweep_started", None)
        if callback is not None:
            callback(total, already_done)

    def _begin(self) -> None:
        if self.resumed is not None:
            self.store.continue_run(self.resumed, planned_cells=self._run["planned_cells"], report=self._run["report"])
            return
        from archbench.env.git import git_commit

        self.store.drop_orphans(self._run["out_path"])  # runs into this place killed before their first cell
        self.run_id = self.store.begin_run(git_commit=git_commit(self._cwd), **self._run)

    def finish(self, rows: Iterable[ResultRow], *, interrupted: bool = False) -> None:
        """Add the rows of the results file the run lacks — rows of an earlier, unrecorded part of a resumed
        sweep, or a row whose process was killed between its CSV line and the store — and mark the run
        finished; after a failed write, only mark it finished (best effort: a full disk may refuse that too).
        A new run ``interrupted`` before its first cell is removed: it holds nothing. Nothing when the sweep
        never started."""
        if self.run_id is None:
            return
        try:
            if interrupted and self.resumed is None and self.store.delete_run_if_empty(self.run_id):
                self.run_id = None
                return
            if self.failure is None:
                stored = self.store.keys(self.run_id)
                for row in rows:
                    if row.key() not in stored:
                        self.store.add_cell(self.run_id, row)
                        self._recorded_keys.add(row.key())
            self.store.finish_run(self.run_id)
        except StoreError as exc:
            self.failure = self.failure or str(exc)
