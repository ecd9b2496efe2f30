"""``report.md``: the comparison report as GitHub-flavoured Markdown.

A pure function of :class:`~archbench.report.ReportData` (:func:`render_markdown`): nothing depends on
"now" or on the machine that renders it, so ``archbench report`` reproduces it byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.files import atomic_write_text
from archbench.report import cells, relative, tables
from archbench.report.backends import backends_section
from archbench.report.cells import Footnotes

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData

MAC_CONVENTION = (
    "1 MAC = one multiply-accumulate = 2 FLOPs. MACs are those of convolutions, matrix products and attention "
    "(torchvision's `_ops` convention, as most papers count); MACs with norm add normalisation and pooling "
    "with fvcore's formulas (fvcore's and timm's `infer_gmacs` convention); forward FLOPs = 2 × MACs; backward "
    "FLOPs are those of a training step's backward pass over the same ops. MB = 2^20 bytes."
)
TIMING_CONVENTION = (
    "Times are per step: `infer` = one forward pass in eval mode under `torch.inference_mode`; `train` = "
    "forward + cross-entropy loss + backward in train mode. Each cell shows the median step time with its "
    "confidence interval (distribution-free, from order statistics of the raw samples: 95% coverage from 6 "
    "samples on; with fewer the interval is the sample range and the cell states its exact, lower coverage, "
    "e.g. 93.7% with 5 samples) and the throughput in samples/s = batch / median."
)
RELATIVE_METHOD = (
    "×r = m_ref / m (r > 1: faster than the reference, r < 1: slower), one figure per cell — the one to quote. "
    "Where the models were timed in alternating rounds (the default) it is the **paired** ratio: 1 / the median "
    "of the per-round time ratios model / reference, each from one round's short bursts of both (their fastest samples), so a "
    "machine's drift falls on both; its 95% CI is the distribution-free one of a median (order statistics at binomial ranks; "
    "the range of the ratios below 6 rounds). Otherwise it is the ratio of the median step times, with the "
    "interval taken from the CI ends, (ref_low / high – ref_high / low): it holds the true ratio "
    "whenever both true medians lie in their CIs, so it covers at least the product of the two coverages "
    "(≥90.25% for two 95% CIs; a lower bound is written in the cell when a CI covers less), assumes nothing "
    "about the distributions, and is asymmetric, as a ratio is. The unpaired ratio of interleaved cells is kept "
    "in results.csv and results.json (`ratio`, `low`, `high` beside `paired_ratio`)."
)
LOAD_NOTE = (
    "The load is read where the time is: CPU pressure (Linux PSI, `/proc/pressure/cpu`: the share of the time "
    "some task waited for a CPU) around every burst of interleaved rounds, and over every tenth of a second of a "
    "cell measured alone; a cell is flagged as measured under load when more than a tenth of its bursts (or, "
    "alone, of its samples) ran under pressure. Rounds with a burst under pressure are left out of the paired "
    "ratio and do not spend the time budget (up to three times it); with fewer than six quiet rounds the "
    "relative speed is not comparable (measured under load), never a figure. Without PSI, a calibration kernel timed before "
    "and after each cell (flagged above {threshold:g}× the sweep's fastest) and the other processes' CPU time "
    "(`/proc/stat`) decide."
)


# ------------------------------------------------------------------------------------------ helpers


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub table; ``align`` holds ``l``/``r`` per column (default: first left, others right)."""
    align = align or ["l", *["r"] * (len(headers) - 1)]
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(_escape(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame, first: str = "model", align: Sequence[str] | None = None) -> str:
    """A text DataFrame (index = first column) as a GitHub table."""
    rows = ([index, *values] for index, values in zip(frame.index, frame.values.tolist()))
    return md_table([first, *frame.columns], rows, align)


def model_table(frame: pd.DataFrame, align: Sequence[str] | None = None) -> str:
    """A table with a model a row (the index), model names as code."""
    return frame_table(frame.rename(index=lambda m: f"`{m}`"), align=align)


def pretty_date(iso: str) -> str:
    """``2026-11-22T12:34:56+00:00`` -> ``2026-11-22 12:34 UTC`` (the stored date, as stored otherwise)."""
    import datetime as dt

    try:
        stamp = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso or "unknown date"
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items()) or "—"
    if value is None:
        return "—"
    return str(value)


# ------------------------------------------------------------------------------------------ sections


def header_section(data: ReportData) -> list[str]:
    lines = [f"# {data.study.title}", ""]
    models = ", ".join(f"`{m}`" for m in data.study.models)
    lines += [f"Models: {models}; reference: `{data.study.reference}`. Measured {pretty_date(data.date)}."]
    if not data.complete:
        lines += ["", f"**Incomplete:** {len(data.rows)} of {data.planned_cells} cells were measured."]
    return lines + [""]


def headline_section(data: ReportData) -> list[str]:
    """The answer: the headline table (archbench.report.headline) before any detail."""
    from archbench.report.headline import headline_table

    found = headline_table(data)
    if found is None:
        return []
    frame, point = found
    loaded = sum(r.status == "ok" and r.under_load for r in data.rows)
    caveat = (f" **{loaded} cell(s) were measured under load** ({cells.LOAD_MARK} in the speed tables): their "
              "times are probably inflated." if loaded else "")
    return ["## Headline", "",
            f"At {point.text()}: parameters, forward MACs per sample, the median step time and the speed relative "
            f"to `{data.study.reference}` (×r > 1: faster; paired where the models were interleaved; 95% CI). "
            f"Every device, input and batch follows.{caveat}", "",
            model_table(frame, ["l", *["r"] * (len(frame.columns))]), ""]


def method_section(data: ReportData) -> list[str]:
    command = data.command or "archbench compare"
    language = "python" if command.startswith("import archbench") else "sh"  # the Python API's own call
    return ["## Method", "", "Reproduce with:", "", f"```{language}", command, "```", "",
            f"**Conventions.** {MAC_CONVENTION} {TIMING_CONVENTION}", ""]


def precision_section(data: ReportData) -> list[str]:
    options = data.study.options.measure
    summary = tables.precision_summary(data.rows)
    budget = f"{options.max_time_s:g} s" if options.max_time_s else "no time limit"
    lines = [
        f"**Precision.** Each cell is warmed up, then sampled until the 95% CI of its median is within "
        f"±{100 * options.precision:g}% of the median or the cell's budget ({budget}, warm-up included) is spent; "
        f"at least {options.min_samples} samples are always taken."
    ]
    if summary.cells_ok:
        widest = summary.widest
        lines[0] += (
            f" {summary.converged} of {summary.cells_ok} measured cells reached ±{100 * options.precision:g}% "
            f"(the others are marked {cells.NOT_CONVERGED}). The CI half-width is {100 * summary.median_rel_half_width:.1f}% "
            f"of the median for the typical cell and {100 * summary.max_rel_half_width:.1f}% at worst "
            f"({widest.model}, {cells.cell_context(widest, True)}, {widest.n_samples} samples); "
            f"{summary.noisy} cell(s) are noisy (IQR > 10% of the median)."
        )
    return lines + [""]


CUDA_ONLY_SETTINGS = ("cuda", "cudnn", "tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cuda_capability",
                      "cuda_memory_gb", "gpu_driver", "gpu_count", "gpus")


def shown_settings(data: ReportData, env: Mapping[str, Any]) -> dict[str, Any]:
    """The environment rows worth showing: GPU settings only when a CUDA device measured something."""
    devices = {r.device for r in data.rows} | set(env.get("devices") or {})
    cuda = any(str(d).startswith("cuda") for d in devices)
    return {k: v for k, v in env.items() if k != "date" and (cuda or k not in CUDA_ONLY_SETTINGS)}


def environment_section(data: ReportData) -> list[str]:
    env = dict(data.environment)
    lines = ["## Environment", ""]
    if not env:
        return lines + ["No environment was recorded.", ""]
    rows = [(key, _value(value)) for key, value in shown_settings(data, env).items()]
    if data.peaks_tflops:
        rows.append(("device peak (large matmul)", _value({k: f"{v:.3f} TFLOP/s" for k, v in data.peaks_tflops.items()})))
    lines += [md_table(["setting", "value"], rows, ["l", "l"]), ""]
    sessions = [e for e in data.environments if not e.get("worker")]
    if len(sessions) > 1:
        dates = ", ".join(pretty_date(e.get("date", "")) for e in sessions)
        changed = sorted({k for e in sessions[1:] for k, v in e.items() if k != "date" and env.get(k) != v})
        note = f" Settings that differ between sessions: {', '.join(changed)}." if changed else " The settings above held in every session."
        lines += [f"The cells were measured in {len(sessions)} sessions (the run was resumed), started {dates}.{note}", ""]
    return lines + workers_section(data)


WORKER_COLUMNS = ("worker", "host", "slurm_job", "slurm_partition", "affinity", "threads", "devices", "torch")


def workers_section(data: ReportData) -> list[str]:
    """Where out-of-process cells were measured (``--workers``, Slurm jobs, targets): one line per worker,
    the settings that tell them apart (the setting table above is the coordinating process's)."""
    workers = [e for e in data.environments if e.get("worker")]
    if not workers:
        return []
    columns = [c for c in WORKER_COLUMNS if any(w.get(c) not in (None, "", []) for w in workers)]
    rows = [[_value(w.get(c)) if w.get(c) not in (None, "") else "—" for c in columns] for w in workers]
    return [f"The cells were measured by {len(workers)} worker process(es) or job(s):", "",
            md_table(columns, rows, ["l"] * len(columns)), ""]


def architecture_section(data: ReportData, notes: Footnotes) -> list[str]:
    arch = tables.architecture_text(data, notes)
    lines = ["## Models", "", "Counts at each model's default input, batch 1 (MACs/FLOPs per sample; 1 MAC = 2 FLOPs). "
             "Parameter memory counts parameters and buffers; activation memory is what autograd saves for the "
             "backward pass, measured.", "", model_table(arch, ["l", *["r"] * 7, "l"]), ""]
    if tables.grid_differs_from_defaults(data):
        per_input = tables.macs_per_input_text(data, notes)
        lines += ["Forward MACs per sample at each input of the grid:", "", model_table(per_input), ""]
    return lines


def speed_section(data: ReportData, notes: Footnotes) -> list[str]:
    from archbench.timing.load import LOAD_THRESHOLD

    legend = ("Median time per step (95% CI unless the cell gives another coverage) · samples/s. Columns: input · "
              f"batch size. {cells.NOT_CONVERGED}: the cell's time budget ran out before its CI was within the precision "
              "target; `OOM`/`error`: the cell failed (see the footnote); —: not measured.")
    lines = ["## Speed", "", f"{legend} {LOAD_NOTE.format(threshold=LOAD_THRESHOLD)} {load_summary(data.rows)}", ""]
    for key, frame in tables.speed_tables(data, notes):
        lines += [f"### {key.title()}", "", model_table(frame), ""]
    note = cells.load_note(data.rows)
    return lines + ([note, ""] if note else [])


def load_summary(rows) -> str:
    """How many timed cells were measured under load, and how many were never checked (older results)."""
    timed = [r for r in rows if r.status == "ok"]
    loaded = sum(r.under_load for r in timed)
    unchecked = sum(not math.isfinite(r.load_ratio) for r in timed)
    quiet = "No checked cell was measured under load." if unchecked else "No cell was measured under load."
    said = (f"**{loaded} cell(s) were measured under load** (marked {cells.LOAD_MARK}, listed below): their times are "
            "probably inflated; measure them again on a quiet machine." if loaded else quiet)
    if unchecked:
        said += f" {unchecked} of {len(timed)} cell(s) were not checked (measured before archbench had the check)."
    return said


def relative_section(data: ReportData) -> list[str]:
    lines = [f"## Relative speed (reference: `{data.study.reference}`)", "", RELATIVE_METHOD, ""]
    found = relative.relative_tables(data)
    if not found:
        return lines + ["No cell was measured successfully for both a model and the reference.", ""]
    for key, frame in found:
        lines += [f"### {key.title()}", "", model_table(frame), ""]
    return lines


def memory_section(data: ReportData, notes: Footnotes) -> list[str]:
    lines = ["## Peak memory", "", "Peak memory of each cell in MB while it was sampled (weights, gradients, inputs, "
             "activations and the timed steps' workspaces; what only the warm-up allocated, such as cuDNN "
             "autotuning's trial workspaces, is left out): on CPU the peak resident set above the process's before "
             "the model was built, on CUDA the peak of allocated tensors above the same point.", ""]
    for key, frame in tables.memory_tables(data, notes):
        lines += [f"### {key.title()}", "", model_table(frame), ""]
    return lines


def efficiency_section(data: ReportData, notes: Footnotes) -> list[str]:
    emulated = tables.emulated_peaks(data.peaks_tflops)
    peaks = ", ".join(f"{k}: {v:.3f} TFLOP/s" + (" (emulated, no ceiling)" if k in emulated else "")
                      for k, v in data.peaks_tflops.items()) or "not measured"
    lines = ["## Achieved FLOP rate", "",
             "Achieved TFLOP/s (FLOPs per step / median time; train steps count forward + backward FLOPs) and, in "
             f"parentheses, the fraction of the device's measured peak (a large matmul in the same dtype: {peaks}). "
             "A dtype whose matmul peak is below fp32's on the same device (bf16/fp16 on most CPUs) is emulated "
             "there, so its peak is no ceiling and its cells show no fraction (see the footnote).", ""]
    for key, frame in tables.efficiency_tables(data, notes):
        lines += [f"### {key.title()}", "", model_table(frame), ""]
    return lines


def knee_section(data: ReportData) -> list[str]:
    """The knee of each throughput curve, and the largest batch a ``max`` search found (none: no section)."""
    from archbench.report.knee import knees

    found = knees(data.rows)
    if not found:
        return []
    rows = [(k.model + (f" · {k.backend}" if k.backend != "eager" else ""), k.device, k.mode, k.input, k.dtype,
             f"{k.knee_batch} ({k.knee_samples_per_s:,.1f}/s)",
             f"{k.best_batch} ({k.best_samples_per_s:,.1f}/s)", f"{k.max_batch} ({k.max_bound})" if k.max_batch else "—")
            for k in found]
    return ["## Throughput knee", "",
            "The knee of each throughput curve: the smallest batch whose samples/s is within 5% of the best measured "
            "— the batch worth running. Largest batch: found by `--batch max`, with what stopped the search.", "",
            md_table(["model", "device", "mode", "input", "dtype", "knee batch", "best batch", "largest batch"], rows,
                     ["l", "l", "l", "l", "l", "r", "r", "r"]), ""]


def plots_section(data: ReportData) -> list[str]:
    from archbench.report.plots import planned_plots

    lines = ["## Plots", "", "Error bars: the CI of each cell's median (95% unless the speed table gives another "
             "coverage), converted to samples/s for the throughput plot.", ""]
    for stem, caption in planned_plots(data):
        lines += [f"### {caption}", "", f"![{caption}]({stem}.png)", "", f"[SVG]({stem}.svg)", ""]
    return lines


def files_section() -> list[str]:
    return ["## Data", "",
            "[`results.csv`](results.csv): one row per cell (median, CI, IQR, samples/s, TFLOP/s, peak memory, status) "
            "with the model's counts at that input. [`results.json`](results.json): the same rows with the raw "
            "samples, the counts, the environment and the study. `archbench report results.csv` re-renders this "
            "report from them. [`report.tex`](report.tex): these tables as booktabs LaTeX, for a paper.", ""]


def footnotes_section(notes: Footnotes) -> list[str]:
    return [f"[^{number}]: {_escape(message)}" for number, message in notes.items()] + ([""] if notes.messages else [])


def render_markdown(data: ReportData) -> str:
    notes = Footnotes("markdown")
    lines = [  # the answer first, the detail next, how it was measured last
        *header_section(data),
        *headline_section(data),
        *architecture_section(data, notes),
        *speed_section(data, notes),
        *relative_section(data),
        *backends_section(data.rows),
        *memory_section(data, notes),
        *efficiency_section(data, notes),
        *knee_section(data),
        *plots_section(data),
        *method_section(data),
        *precision_section(data),
        *environment_section(data),
        *files_section(),
        *footnotes_section(notes),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


class MarkdownFormat:
    name = "markdown"
    filename = "report.md"

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        return [atomic_write_text(Path(out_dir) / self.filename, render_markdown(data))]
