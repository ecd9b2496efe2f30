"""The load check: the decision on a scripted clock and kernel (no sleeping), then for real — a cell
measured while a busy loop shares its core is flagged ``under_load``, the same cell on a quiet core is not."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import subprocess
import sys
import time

import pytest

from archbench.rows import ResultRow
from archbench.timing.load import (
    LOAD_THRESHOLD,
    LoadMonitor,
    LoadReading,
    MatmulKernel,
    cpu_seconds,
    with_load,
)


class ScriptedKernel:
    """A kernel whose every run 'takes' the next of ``durations`` on a fake clock (whole numbers of
    milliseconds, so the ratios are exact), and a machine whose CPU-time counters the test sets."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0
        self.threads_seen: list[int] = []
        self.busy_s = 0.0
        self.own_s = 0.0

    def clock(self) -> float:
        return self.now

    def cpu_times(self) -> tuple[float, float]:
        return self.busy_s, self.own_s

    def __call__(self, threads: int) -> None:
        self.threads_seen.append(threads)
        self.now += self.durations.pop(0)

    def run_cell(self, wall: float, own_cpu: float, other_cpu: float) -> None:
        """A cell taking ``wall`` on the clock, this process using ``own_cpu`` CPU and others ``other_cpu``."""
        self.now += wall
        self.own_s += own_cpu
        self.busy_s += own_cpu + other_cpu


def monitor_for(durations, repeats=1, cores=2, stall_us=lambda: math.nan) -> tuple[LoadMonitor, ScriptedKernel]:
    """A monitor on the scripted kernel; by default on a kernel without PSI (the calibration and CPU-time
    checks decide), else ``stall_us`` scripts the PSI counter."""
    kernel = ScriptedKernel(durations)
    return LoadMonitor(kernel=kernel, clock=kernel.clock, cpu_times=kernel.cpu_times, stall_us=stall_us, cores=cores,
                       repeats=repeats), kernel


def test_the_first_calibration_is_the_baseline_and_a_doubled_kernel_is_load():
    monitor, kernel = monitor_for([10, 11, 20])
    monitor.calibrate(2)
    window = monitor.before_cell(2)
    assert window.ratio == pytest.approx(1.1)  # drift of a quiet shared machine
    kernel.run_cell(wall=100, own_cpu=200, other_cpu=0)
    reading = monitor.after_cell(window)
    assert reading.ratio == 2.0 and reading.slowed and reading.under_load
    assert kernel.threads_seen == [2, 2, 2]  # at the cell's thread count


def test_drift_within_the_threshold_is_not_load():
    monitor, kernel = monitor_for([10, 12, 14])
    monitor.calibrate(1)
    window = monitor.before_cell(1)
    kernel.run_cell(wall=100, own_cpu=100, other_cpu=20)  # a daemon's fifth of a core on the spare core
    reading = monitor.after_cell(window)
    assert reading.ratio == 1.4 and not reading.under_load
    assert reading.other_cores == pytest.approx(0.2) and reading.spare_cores == 1


def test_the_slower_side_of_the_cell_decides():
    assert LoadReading(max(1.6, 1.0)).under_load  # load that ended during the cell
    assert LoadReading(max(1.0, 1.6)).under_load  # load that began during the cell
    assert not LoadReading(LOAD_THRESHOLD).under_load  # "above" the threshold, not at it


def test_load_present_since_the_baseline_is_caught_by_other_processes_cpu_time():
    monitor, kernel = monitor_for([20, 20, 21])  # busy from the start: the ratio stays ~1
    monitor.calibrate(2)
    window = monitor.before_cell(2)
    kernel.run_cell(wall=100, own_cpu=120, other_cpu=80)  # 0.8 of a core taken by others, none was spare
    reading = monitor.after_cell(window)
    assert reading.ratio == 1.05 and not reading.slowed
    assert reading.other_cores == pytest.approx(0.8) and reading.spare_cores == 0
    assert reading.crowded and reading.under_load


def test_other_processes_on_cores_the_cell_leaves_free_are_no_load():
    monitor, kernel = monitor_for([10] * 5, cores=4)
    monitor.calibrate(1)
    window = monitor.before_cell(1)
    kernel.run_cell(wall=100, own_cpu=100, other_cpu=300)  # three other cores fully busy, three were spare
    assert not monitor.after_cell(window).under_load
    window = monitor.before_cell(1)
    kernel.run_cell(wall=100, own_cpu=100, other_cpu=360)  # 3.6 cores: beyond the spare ones by more than half
    assert monitor.after_cell(window).crowded


def test_a_faster_calibration_lowers_the_baseline():
    monitor, _ = monitor_for([20, 10, 21])  # the baseline was taken while busy
    monitor.calibrate(1)
    assert monitor.ratio(1) == 0.5
    assert monitor.baselines_s[1] == 10
    assert monitor.ratio(1) == 2.1  # against the quiet time now


def test_each_calibration_is_the_median_of_its_repeats():
    monitor, _ = monitor_for([10, 10, 10, 10, 50, 11], repeats=3)
    monitor.calibrate(1)
    assert monitor.ratio(1) == 1.1  # one interrupted run of three does not flag the cell


def test_thread_counts_have_their_own_baselines():
    monitor, _ = monitor_for([10, 5, 10])
    monitor.calibrate(1)
    monitor.calibrate(2)
    assert monitor.ratio(2) == 2.0
    assert monitor.baselines_s == {1: 10, 2: 5}


def test_only_timed_rows_carry_the_load():
    ok = ResultRow("m", "cpu", "infer", 1, "1x28x28", "fp32", median_ms=5.0)
    flagged = with_load(ok, LoadReading(2.34567))
    assert (flagged.under_load, flagged.load_ratio) == (True, 2.346)
    quiet = with_load(ok, LoadReading(1.1))
    assert (quiet.under_load, quiet.load_ratio) == (False, 1.1)
    crowded = with_load(ok, LoadReading(1.1, other_cores=1.0, spare_cores=0))
    assert (crowded.under_load, crowded.load_ratio) == (True, 1.1)
    failed = ResultRow("m", "cpu", "infer", 1, "1x28x28", "fp32", status="oom", error="out of memory")
    assert with_load(failed, LoadReading(3.0)) == failed


def test_machine_cpu_seconds_count_this_process():
    busy, own = cpu_seconds()
    if math.isnan(busy):
        pytest.skip("no /proc/stat")
    spin_until = time.process_time() + 0.2
    while time.process_time() < spin_until:
        pass
    busy_after, own_after = cpu_seconds()
    assert own_after - own >= 0.2
    assert busy_after - busy >= 0.15  # the machine's busy time includes this process's (10 ms ticks)


def test_the_calibration_kernel_is_short():
    pytest.importorskip("torch")
    monitor = LoadMonitor(kernel=MatmulKernel(), repeats=1)
    seconds = min(monitor.kernel_time(1) for _ in range(3))
    assert 0 < seconds < 0.2  # a few ms on a quiet core; generous for a loaded shared machine


# ------------------------------------------------------------------------------ a real busy loop

BUSY_LOOP = "import os, sys; os.sched_setaffinity(0, {%d}); print('busy', flush=True)\nwhile True: pass"


class BusyLoopAtCellStart:
    """Sweep listener starting a busy-loop process pinned to ``cpu`` when the cell starts (after the
    sweep's baseline calibration), and stopping it when asked."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.process: subprocess.Popen | None = None

    def cell_started(self, cell, index, todo) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP % self.cpu], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "busy"  # spinning before the cell is calibrated

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def one_core():
    """This process pinned to one core (restored afterwards); the cell runs on 1 thread there."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    yield cpu
    os.sched_setaffinity(0, before)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.slow
def test_a_cell_sharing_its_core_with_a_busy_loop_is_flagged(one_core, tmp_path):
    pytest.importorskip("torch")
    from archbench.catalog.registry import get_spec
    from archbench.sweep.cells import plan_cells
    from archbench.sweep.run import run_sweep
    from archbench.timing.options import MeasureOptions

    cells = plan_cells([get_spec("mnist-cnn")], ["cpu"], [1], None, ["infer"], ["fp32"], threads=1)

    def quiet_row() -> ResultRow:
        out = tmp_path / f"quiet-{len(list(tmp_path.iterdir()))}.csv"
        return run_sweep(cells, out, resume=False, options=MeasureOptions(max_time_s=0.3)).rows[0]

    # Other work on this shared machine may load the core too (that would be a correct flag): a quiet
    # measurement is retried a few times before the check counts as failed.
    quiet = quiet_row()
    for _ in range(2):
        if not quiet.under_load:
            break
        quiet = quiet_row()
    assert quiet.status == "ok" and not quiet.under_load, quiet.load_ratio
    assert math.isfinite(quiet.load_ratio) and quiet.load_ratio <= LOAD_THRESHOLD

    def loaded_row(out) -> ResultRow:
        busy = BusyLoopAtCellStart(one_core)
        try:
            return run_sweep(cells, out, resume=False, options=MeasureOptions(max_time_s=0.3), listener=busy).rows[0]
        finally:
            busy.stop()

    # Likewise, other work already loading the core during the baseline would mask the busy loop: retried.
    for attempt in range(3):
        out = tmp_path / f"loaded-{attempt}.csv"
        loaded = loaded_row(out)
        if loaded.under_load:
            break
    assert loaded.status == "ok"
    assert loaded.under_load, loaded.load_ratio  # the busy loop takes about half the core: ratio ~2
    assert loaded.load_ratio > LOAD_THRESHOLD
    with out.open(newline="") as fh:
        (record,) = csv.DictReader(fh)
    assert record["under_load"] == "True" and float(record["load_ratio"]) > LOAD_THRESHOLD


# ------------------------------------------------------------------------ CPU pressure (PSI) decides


def test_cpu_pressure_decides_where_the_kernel_reports_it():
    stall = iter([0.0, 40e6])  # µs: some task waited 40 of the cell's 100 s
    monitor, kernel = monitor_for([10, 30, 10], stall_us=lambda: next(stall))
    monitor.calibrate(1)
    window = monitor.before_cell(1)
    kernel.run_cell(wall=100, own_cpu=100, other_cpu=0)
    reading = monitor.after_cell(window)
    assert reading.stall == pytest.approx(0.4) and reading.under_load
    # a calibration 3x slower at one end of the cell, with no pressure during it: a slow kernel, not a slow cell
    stall = iter([0.0, 1e6])
    monitor, kernel = monitor_for([10, 30, 10], stall_us=lambda: next(stall))
    monitor.calibrate(1)
    window = monitor.before_cell(1)
    kernel.run_cell(wall=100, own_cpu=100, other_cpu=0)
    reading = monitor.after_cell(window)
    assert reading.slowed and reading.stall == pytest.approx(0.01) and not reading.under_load


def test_psi_total_is_read_from_the_some_line(tmp_path):
    from archbench.timing.load import cpu_stall_us

    psi = tmp_path / "cpu"
    psi.write_text("some avg10=0.20 avg60=2.62 avg300=1.85 total=12746205\nfull avg10=0.00 total=0\n")
    assert cpu_stall_us(str(psi)) == 12746205
    assert math.isnan(cpu_stall_us(str(tmp_path / "absent")))


# --------------------------------------------------------------- a cell timed alone: the load per window


class WaveMachine:
    """A scripted machine for a cell timed alone: a clock each sample advances by its own time; a load on
    during ``[off_s, off_s + on_s)`` of every period that doubles a sample and makes the PSI counter grow at
    ``stall`` per second (0.5: two busy processes beside a 1-thread cell on 2 cores — PSI averages the CPUs,
    and one of them runs a single task); ``background`` the stall of a quiet machine; ``spikes``: clock
    times at which a single window sees a short burst of pressure."""

    def __init__(self, on_s: float, off_s: float, stall: float = 0.5, background: float = 0.02,
                 spikes: tuple[float, ...] = ()):
        self.on_s, self.off_s, self.stall_rate, self.background = on_s, off_s, stall, background
        self.spikes = list(spikes)
        self.now = 0.0
        self.stall_us = 0.0
        self.jitter = random.Random(1)

    def loaded(self) -> bool:
        return self.on_s > 0 and (self.now % (self.on_s + self.off_s)) >= self.off_s

    def sample(self) -> float:
        ms = 20.0 * (2.0 if self.loaded() else 1.0) * (1 + 0.02 * self.jitter.uniform(-1, 1))
        rate = self.stall_rate if self.loaded() else self.background
        if self.spikes and self.now >= self.spikes[0]:
            self.spikes.pop(0)
            rate = 3.0  # 60 ms of waiting inside this 20 ms sample's window: one window over the threshold
        self.stall_us += rate * ms * 1e3
        self.now += ms / 1e3
        return ms

    def windows(self):
        from archbench.timing.loadsignal import LoadProbe, LoadWindows

        probe = LoadProbe(clock=lambda: self.now, cpu_times=lambda: (0.0, 0.0), stall=lambda: self.stall_us, cores=2)
        return LoadWindows(probe, spare_cores=1)

    def measure(self, seconds: float):
        from archbench.timing.options import MeasureOptions
        from archbench.timing.timer import measure

        load = self.windows()
        start_stall, start = self.stall_us, self.now
        measure(None, "cpu", MeasureOptions(precision=0.0001, max_time_s=seconds), sampler=self.sample,
                clock=lambda: self.now, load=load)
        whole_cell = (self.stall_us - start_stall) / 1e6 / (self.now - start)
        return load, whole_cell


def test_a_lone_cell_a_square_wave_overlaps_is_flagged_by_its_sampling_windows():
    """A 5 s cell under a 2 s on / 2 s off wave: loaded 40% of its time. PSI over the whole cell reads 0.2
    (below the whole-cell threshold: the cell went unflagged), while a quarter of its samples ran in loaded
    windows."""
    from archbench.timing.load import STALL_THRESHOLD

    load, whole_cell = WaveMachine(on_s=2.0, off_s=2.0).measure(5.0)
    assert whole_cell < STALL_THRESHOLD  # what the whole-cell reading saw
    assert 0.2 < load.loaded_share < 0.35 and load.under_load
    assert len(load.windows) > 30  # a tenth of a second each


def test_a_lone_cell_the_wave_barely_touches_is_not_flagged_and_a_quiet_one_neither():
    """Loaded windows below a tenth of the samples do not flag a cell: a quiet machine's background and a brief
    spike or two (another process starting) are not load."""
    quiet, _ = WaveMachine(on_s=0.0, off_s=1.0, spikes=(1.0, 3.0)).measure(5.0)
    assert 0 < quiet.loaded_share < 0.05 and not quiet.under_load
    grazed, _ = WaveMachine(on_s=0.2, off_s=4.0).measure(5.0)  # the load on during 0.2 s of a 5 s cell
    assert 0 < grazed.loaded_share <= 0.1 and not grazed.under_load


def test_a_lone_row_flagged_by_its_windows_stays_flagged():
    row = ResultRow(model="m", device="cpu", mode="infer", batch=1, input="3x8x8", dtype="fp32", status="ok",
                    under_load=True)
    assert with_load(row, LoadReading(1.0, stall=0.0)).under_load
    assert not with_load(dataclasses.replace(row, under_load=False), LoadReading(1.0, stall=0.0)).under_load
