"""The report's plots, each as PNG (embedded in the Markdown) and SVG (for papers):

* ``throughput`` — samples/s against batch size, a line per model and input, a panel per device and mode;
* ``time_vs_input`` — median time per step against input resolution, a line per model and batch;
* ``params_vs_macs`` — parameters against forward MACs, one labelled point per model.

Error bars are the CI of each cell's median (95% unless the report gives another coverage); the legend
sits below the panels, where it covers no line, and its title says what the error bars are.

Rendered with matplotlib's Agg canvas on :class:`~matplotlib.figure.Figure` objects (never pyplot, so no
global backend or figure state is touched). SVGs are made reproducible: fixed hash salt, no date.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.files import atomic_path
from archbench.report import tables

if TYPE_CHECKING:
    from archbench.results.data import ReportData
    from archbench.rows import ResultRow

THROUGHPUT = ("throughput", "Throughput against batch size")
TIME_VS_INPUT = ("time_vs_input", "Time per step against input resolution")
PARAMS_VS_MACS = ("params_vs_macs", "Parameters against forward MACs")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")


def _ok_rows(data: ReportData) -> list[ResultRow]:
    return [r for r in data.rows if r.status == "ok" and math.isfinite(r.median_ms) and r.median_ms > 0]


def planned_plots(data: ReportData) -> list[tuple[str, str]]:
    """``(file stem, caption)`` of each plot this data can draw (the Markdown embeds exactly these)."""
    plots = []
    if _ok_rows(data):
        plots += [THROUGHPUT, TIME_VS_INPUT]
    arch = tables.architecture_table(data)
    if not arch.empty and arch[["params", "gmacs"]].notna().all(axis=1).any():
        plots.append(PARAMS_VS_MACS)
    return plots


def new_figure(n_rows: int, n_cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * n_cols, 3.9 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "archbench"}):
        for ext, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            path = Path(out_dir) / f"{stem}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=150, metadata=metadata)
            paths.append(path)
    return paths


def _plain_numbers(*axes) -> None:
    """Tick labels as plain numbers (``200``, ``0.5``) rather than matplotlib's ``2 x 10^2`` on log axes."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    formatter = FuncFormatter(lambda value, _pos: f"{value:g}")
    for axis in axes:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(formatter)
        axis.set_minor_formatter(FuncFormatter(lambda value, _pos: ""))


def _styles(data: ReportData):
    models = list(data.study.models) or sorted({r.model for r in data.rows})
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}
    return models, colors


def _panels(data: ReportData):
    keys = tables.table_keys(_ok_rows(data))
    devices = list(dict.fromkeys((k.device, k.dtype) for k in keys))
    modes = list(dict.fromkeys(k.mode for k in keys))
    return keys, devices, modes


ERROR_BARS = "error bars: CI of the median (95% unless the report says otherwise)"


def _legend_columns(fig, labels) -> int:
    """As many legend columns (up to 4) as the figure's width holds at the widest entry: marker and gaps ~40 pt,
    ~5 pt a character in the small font; a wider legend would be cut at the figure's edges."""
    widest = 40 + 5 * max(len(label) for label in labels)
    return max(1, min(len(labels), 4, int(fig.get_figwidth() * 72 // widest)))


def _figure_legend(fig, axes) -> None:
    """One legend for all panels, outside below them (it never covers a line), titled with what the
    error bars are."""
    entries: dict[str, object] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=_legend_columns(fig, entries),
                   fontsize="small", title=ERROR_BARS, title_fontsize="small", frameon=False)


def _panel_rows(axes, rows, devices, modes):
    """Each panel's axes (titled) with the rows of its device/dtype and mode."""
    for i, (device, dtype) in enumerate(devices):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            ax.set_title(f"{device} · {mode} · {dtype}")
            yield ax, [r for r in rows if (r.device, r.dtype, r.mode) == (device, dtype, mode)]


def line_panels(data: ReportData, series: str, x, err, label):
    """A figure with a panel per device/dtype (rows) and mode (columns) and, in each, a line per model
    (colour) and value of the row attribute ``series`` (marker and line style): ``x(row)`` against the
    row's ``y`` with error bars ``err(row) -> (y, below, above)``, labelled ``label(model, value)``.
    Returns the figure, its axes and each panel's axes with its rows."""
    rows = _ok_rows(data)
    _, devices, modes = _panels(data)
    models, colors = _styles(data)
    values = sorted({getattr(r, series) for r in rows}, key=tables.input_order if series == "input" else None)
    fig, axes = new_figure(len(devices), len(modes))
    panels = list(_panel_rows(axes, rows, devices, modes))
    any_loaded = False
    for ax, cell_rows in panels:
        for model in models:
            for k, value in enumerate(values):
                line = sorted((r for r in cell_rows if r.model == model and getattr(r, series) == value), key=x)
                if not line:
                    continue
                y, below, above = zip(*map(err, line))
                ax.errorbar([x(r) for r in line], y, yerr=[below, above], color=colors.get(model),
                            marker=_MARKERS[k % len(_MARKERS)], linestyle=_LINESTYLES[k % len(_LINESTYLES)], capsize=3,
                            label=label(model, value))
                loaded = [(x(r), v) for r, v in zip(line, y) if r.under_load]
                if loaded:  # measured under load: ringed in red, so nobody reads them as clean figures
                    ax.scatter(*zip(*loaded), s=160, facecolors="none", edgecolors="red", linewidths=1.5, zorder=4,
                               label=_LOADED_LABEL if not any_loaded else None)
                    any_loaded = True
    return fig, axes, panels


_LOADED_LABEL = "measured under load (‡)"


def _log_axes(ax, ticks, tick_labels, xlabel: str, ylabel: str, x_base: int = 10, minor_ticks: bool = True) -> None:
    """Log-log axes with plain-number labels, x ticks only where the lines have points, and a grid (at
    the minor ticks too, unless ``minor_ticks`` is off)."""
    ax.set_xscale("log", base=x_base)
    ax.set_yscale("log")
    _plain_numbers(ax.yaxis)
    ax.set_xticks(ticks, tick_labels)
    if not minor_ticks:
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both" if minor_ticks else "major", alpha=0.3)


def throughput_error(row: ResultRow) -> tuple[float, float, float]:
    """Samples/s with the distances to the ends of its CI (the median's CI turned into samples/s)."""
    y = row.samples_per_s
    return y, max(0.0, y - row.batch / row.ci_high_ms * 1e3), max(0.0, row.batch / row.ci_low_ms * 1e3 - y)


def _pixels(row: ResultRow) -> int:
    return tables.input_order(row.input)[0]


def _time_error(row: ResultRow) -> tuple[float, float, float]:
    return row.median_ms, max(0.0, row.median_ms - row.ci_low_ms), max(0.0, row.ci_high_ms - row.median_ms)


def throughput_figure(data: ReportData):
    """Samples/s (with the 95% CI as error bars) against batch size: a panel per device/dtype (rows)
    and mode (columns), a line per model (colour) and input (marker and line style)."""
    fig, axes, panels = line_panels(data, "input", lambda r: r.batch, throughput_error,
                                     lambda model, shape: f"{model} · {shape}")
    for ax, cell_rows in panels:
        batches = sorted({r.batch for r in cell_rows})
        _log_axes(ax, batches, [str(b) for b in batches], "batch size", "samples / s", x_base=2)
        _mark_knees(ax, cell_rows, _styles(data)[1])
    _figure_legend(fig, axes)
    return fig


def _mark_knees(ax, rows, colors) -> None:
    """Each curve's knee (:mod:`archbench.report.knee`) as a ring labelled ``knee N``, and a batch a ``max``
    search found labelled ``max N``."""
    from archbench.report.knee import knees

    def point(batch: int, knee) -> ResultRow:
        return next(r for r in rows if (r.model, r.input, r.batch) == (knee.model, knee.input, batch))

    for knee in knees(rows):
        color = colors.get(knee.model)
        ax.scatter([knee.knee_batch], [knee.knee_samples_per_s], s=160, facecolors="none", edgecolors=color,
                   linewidths=1.5, zorder=4, label="knee: smallest batch within 5% of the best")
        _label_clear_of_error_bar(ax, f"knee {knee.knee_batch}", point(knee.knee_batch, knee), color, above=False)
        if knee.max_batch:
            _label_clear_of_error_bar(ax, f"max {knee.max_batch}", point(knee.max_batch, knee), color, above=True)


def _label_clear_of_error_bar(ax, text: str, row: ResultRow, color, *, above: bool) -> None:
    """``text`` over (or under) the end of ``row``'s throughput error bar, past the ring drawn on the point, so it
    covers neither the bar nor the ring; the y range grows to keep it inside the panel (log axes: by a factor)."""
    y, below, over = throughput_error(row)
    end = y + over if above else y - below
    if not end > 0:  # a lower CI end at zero cannot sit on a log axis
        end = y
    ax.annotate(text, (row.batch, end), textcoords="offset points", xytext=(0, 9 if above else -9), ha="center",
                va="bottom" if above else "top", fontsize="small", color=color, zorder=5)
    low, high = ax.get_ylim()
    room = 1.35  # the label's height in a typical panel, as a factor on the log axis
    ax.set_ylim(min(low, end / room), max(high, end * room))


def time_vs_input_figure(data: ReportData):
    """Median time per step (95% CI error bars) against the input's pixel count: a panel per
    device/dtype and mode, a line per model (colour) and batch size (marker and line style)."""
    fig, axes, panels = line_panels(data, "batch", _pixels, _time_error, lambda model, batch: f"{model} · batch {batch}")
    for ax, cell_rows in panels:
        shown = sorted({r.input for r in cell_rows}, key=tables.input_order)
        _log_axes(ax, [tables.input_order(s)[0] for s in shown], shown, "input (C×H×W)", "median time per step (ms)",
                  minor_ticks=False)  # ticks at the pixel counts, as _pixels places the points
    _figure_legend(fig, axes)
    return fig


def params_vs_macs_figure(data: ReportData):
    """One labelled point per model: forward GMACs (x) against millions of parameters (y), at each
    model's default input, batch 1."""
    arch = tables.architecture_table(data)
    arch = arch[arch[["params", "gmacs"]].notna().all(axis=1)]
    models, colors = _styles(data)
    fig, axes = new_figure(1, 1)
    ax = axes[0][0]
    middle = math.sqrt(arch["gmacs"].min() * arch["gmacs"].max())  # the middle of the log x range
    for record in arch.to_dict("records"):
        x, y = record["gmacs"], record["params"] / 1e6
        ax.scatter([x], [y], color=colors.get(record["model"]), s=40, zorder=3)
        left = x > middle  # labels point inwards, so none runs off the right edge
        ax.annotate(f"{record['model']} ({record['input']})", (x, y), textcoords="offset points",
                    xytext=(-6 if left else 6, 6), ha="right" if left else "left", fontsize="small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.25)
    _plain_numbers(ax.xaxis, ax.yaxis)
    ax.set_xlabel("forward GMACs per sample (1 MAC = 2 FLOPs)")
    ax.set_ylabel("parameters (millions)")
    ax.set_title("Parameters against MACs (default input, batch 1)")
    ax.grid(True, which="both", alpha=0.3)
    return fig


_FIGURES = {THROUGHPUT[0]: throughput_figure, TIME_VS_INPUT[0]: time_vs_input_figure, PARAMS_VS_MACS[0]: params_vs_macs_figure}


class PlotsFormat:
    name = "plots"

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        written: list[Path] = []
        for stem, _caption in planned_plots(data):
            written += save_figure(_FIGURES[stem](data), Path(out_dir), stem)
        return written
