"""``results.csv``: the tidy rows of the bench contract (:data:`archbench.rows.CSV_COLUMNS`) plus the
model's counts at the row's input (batch 1, per sample), units in the column names.

:func:`archbench.rows.read_rows_csv` reads it back (it ignores the count columns)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.files import atomic_write_text
from archbench.report.frame import rows_frame
from archbench.rows import COUNT_COLUMNS, ModelStats

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData

MIB = 2**20


def count_columns(stats: ModelStats) -> dict[str, Any]:
    """The count columns of one (model, input)."""
    per_sample = 1 / stats.batch
    return {
        "params": stats.params_total,
        "params_trainable": stats.params_trainable,
        "param_mb": round(stats.param_bytes / MIB, 4),
        "macs_per_sample": _per_sample(stats.macs, per_sample),
        "macs_flag": stats.macs_flag,
        "macs_with_norm_per_sample": "" if stats.macs_with_norm is None else _per_sample(stats.macs_with_norm, per_sample),
        "flops_forward_per_sample": _per_sample(stats.flops_forward, per_sample),
        "flops_backward_per_sample": _per_sample(stats.flops_backward, per_sample),
        "flops_backward_flag": stats.flops_backward_flag,
        "activation_mb_per_sample": round(stats.activation_bytes_per_sample / MIB, 4),
    }


def _per_sample(value: float, scale: float) -> int | float:
    result = value * scale
    return int(result) if float(result).is_integer() else result


def results_frame(data: ReportData) -> pd.DataFrame:
    """The rows (:func:`~archbench.report.frame.rows_frame`) with the counts of their model at their input
    (blank where the model did not run on it)."""
    import pandas as pd

    counts = pd.DataFrame([{"model": s.model, "input": s.input, **count_columns(s)} for s in data.stats],
                          columns=["model", "input", *COUNT_COLUMNS], dtype=object)  # object: ints stay ints beside blanks
    counts = counts.drop_duplicates(["model", "input"], keep="first")
    return rows_frame(data.rows).merge(counts, on=["model", "input"], how="left")


def results_csv_text(data: ReportData) -> str:
    return results_frame(data).to_csv(index=False, lineterminator="\n")


class CsvFormat:
    name = "csv"
    filename = "results.csv"

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        return [atomic_write_text(Path(out_dir) / self.filename, results_csv_text(data))]
