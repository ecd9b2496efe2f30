"""The plan said before a run and the time left while it runs (a scripted clock, no sleeping)."""

from __future__ import annotations

import math

import pytest

from archbench.sweep.plan import QUICK, Eta, Plan


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_plan_names_the_grid_the_budget_and_the_destination():
    plan = Plan(12, (("model", 2), ("input", 1), ("batch", 3), ("mode", 2)), 8.0, "reports/default/")
    assert plan.describe() == ("12 cells (2 models × 3 batches × 2 modes), 8 s budget per cell (1.6 min of timing), "
                               "writing reports/default/")
    assert Plan(3, (("model", 3),), 1.0).describe() == "3 cells (3 models), 1 s budget per cell (3 s of timing)"
    assert Plan(1, (("model", 1),), math.inf).describe() == "1 cell"


def test_the_quick_preset_is_a_first_look():
    assert (QUICK.precision, QUICK.max_time_s) == (0.10, 1.0)


def test_before_any_cell_the_budget_bounds_the_time_left():
    clock = Clock()
    eta = Eta(total=4, budget_s=8.0, clock=clock)
    assert eta.remaining_s() == 32.0
    clock.now += 5
    assert eta.remaining_s() == 27.0
    assert math.isnan(Eta(total=4, clock=clock).remaining_s())  # no budget, nothing finished: unknown


def test_the_time_left_follows_the_finished_cells_and_never_drops_below_their_fastest_pace():
    clock = Clock()
    eta = Eta(total=10, budget_s=8.0, clock=clock)
    clock.now += 6
    eta.cell_finished()
    assert eta.remaining_s() == pytest.approx(9 * 6)
    clock.now += 2
    eta.cell_finished()  # 4 s per cell on average, 2 s the fastest
    assert eta.remaining_s() == pytest.approx(8 * 4)
    clock.now += 40  # the current cell runs long: the average alone would say 0 s left
    assert eta.remaining_s() == pytest.approx(7 * 2)  # the 7 cells not started, at the fastest pace seen


def test_cells_finishing_together_share_one_stretch_of_work():
    clock = Clock()
    eta = Eta(total=4, budget_s=8.0, clock=clock)
    clock.now += 10
    eta.cell_finished()
    clock.now += 0.01
    eta.cell_finished()  # the second model of an interleaved grid point: 10 s for 2 cells, 5 s each
    clock.now += 20  # the next point runs long
    assert eta.remaining_s() == pytest.approx(1 * 5.0, rel=0.01)
    eta.done = eta.total
    assert eta.remaining_s() == 0.0


@pytest.mark.slow
def test_bench_says_its_plan_first_and_quick_measures_with_the_preset(cli, tmp_path):
    out_csv = tmp_path / "quick.csv"
    result = cli("bench", "mnist-cnn", "--quick", "--batch", "1,2", "--mode", "infer", "--out", out_csv, "--no-db")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"2 cells (2 batches), 1 s budget per cell (2 s of timing), writing {out_csv}"
    from archbench.rows import read_rows_csv

    rows = read_rows_csv(out_csv)
    assert {(r.precision, r.max_time_s) for r in rows} == {(0.1, 1.0)}
    explicit = cli("bench", "mnist-cnn", "--quick", "--precision", "0.2", "--batch", "1", "--mode", "infer",
                   "--out", tmp_path / "explicit.csv", "--no-db")
    assert explicit.exit_code == 0, explicit.output
    assert [r.precision for r in read_rows_csv(tmp_path / "explicit.csv")] == [0.2]  # explicit options win
