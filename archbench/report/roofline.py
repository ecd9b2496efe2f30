"""A profile's two plots, each as PNG and SVG (drawn as :mod:`archbench.report.plots` draws: matplotlib's Agg
canvas on a :class:`~matplotlib.figure.Figure`, never pyplot; reproducible SVGs):

* ``roofline`` — every leaf module (a listed module without listed children: their times do not overlap)
  at its arithmetic intensity (work FLOPs per byte moved) and achieved FLOP/s, marker area proportional
  to its share of the step, under the measured compute roof (matmul peak) and bandwidth roof (STREAM);
  the ridge point marked, the slowest layers labelled. A layer with no counted work or no bytes has no
  place on it and is left out (the caption says how many).
* ``time_breakdown`` — "where the time goes": the slowest leaf modules' median time with their 95% CI
  as whiskers, slowest on top.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.report.plots import new_figure, save_figure

if TYPE_CHECKING:
    from archbench.results.profiles import LayerProfile, ModelProfile

ROOFLINE = ("roofline", "Roofline: leaf modules at their arithmetic intensity and achieved FLOP/s")
TIME_BREAKDOWN = ("time_breakdown", "Where the time goes: slowest modules, median with 95% CI")
LABELLED = 6
_LABEL_OFFSETS = ((12, 14), (12, -18), (-12, 22), (-12, -26), (14, 34), (-14, -40))
TOP_N = 15


def plottable(layer: LayerProfile) -> bool:
    return layer.work_flops > 0 and layer.bytes > 0 and layer.median_ms > 0


def write_profile_plots(profile: ModelProfile, out_dir: Path) -> list[Path]:
    """Both plots into ``out_dir`` (``roofline.png/.svg``, ``time_breakdown.png/.svg``)."""
    return [*roofline(profile, out_dir), *time_breakdown(profile, out_dir)]


def roofline(profile: ModelProfile, out_dir: Path) -> list[Path]:
    fig, axes = new_figure(1, 1)
    ax = axes[0][0]
    fig.set_size_inches(7.5, 5.2)
    layers = [layer for layer in profile.leaves() if plottable(layer)]
    peaks = profile.peaks
    xs = [layer.intensity for layer in layers]
    ys = [layer.achieved_tflops * 1e3 for layer in layers]  # GFLOP/s
    lo = min([*xs, peaks.ridge if math.isfinite(peaks.ridge) else 1.0, 1.0]) / 4
    hi = max([*xs, peaks.ridge if math.isfinite(peaks.ridge) else 1.0, 1.0]) * 4
    _roofs(ax, peaks, lo, hi)
    if layers:
        total = max(sum(max(layer.share_median, 0.0) for layer in layers), 1e-12)
        sizes = [20 + 1500 * max(layer.share_median, 0.0) / total for layer in layers]
        ax.scatter(xs, ys, s=sizes, alpha=0.55, color="tab:blue", edgecolors="black", linewidths=0.5, zorder=3)
        for i, (layer, x, y) in enumerate(list(zip(layers, xs, ys))[:LABELLED]):  # leaves() is slowest first
            dx, dy = _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]  # neighbours' labels fan out instead of overlapping
            ax.annotate(f"{layer.name} ({layer.share_median:.0%})", (x, y), textcoords="offset points",
                        xytext=(dx, dy), fontsize=7, ha="left" if dx > 0 else "right",
                        arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "grey"})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ymax = max([*ys, peaks.tflops * 1e3 if math.isfinite(peaks.tflops) else 1.0]) * 3
    ymin = min(ys) / 3 if ys else ymax / 1e4
    ax.set_ylim(ymin, ymax)
    ax.set_xlabel("arithmetic intensity (work FLOPs / byte moved, no cache reuse)")
    ax.set_ylabel("achieved GFLOP/s")
    left_out = len(profile.leaves()) - len(layers)
    ax.set_title(f"{profile.label()} — marker area ∝ share of step time"
                 + (f"; {left_out} layer(s) without work or bytes not shown" if left_out else ""), fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, out_dir, ROOFLINE[0])


def _roofs(ax, peaks, lo: float, hi: float) -> None:
    import numpy as np

    if not (math.isfinite(peaks.gbps) or math.isfinite(peaks.tflops)):
        return
    x = np.logspace(math.log10(lo), math.log10(hi), 200)
    bandwidth = x * peaks.gbps if math.isfinite(peaks.gbps) else np.full_like(x, np.inf)
    compute = np.full_like(x, peaks.tflops * 1e3 if math.isfinite(peaks.tflops) else np.inf)
    ax.plot(x, np.minimum(bandwidth, compute), color="black", linewidth=1.5, zorder=2,
            label=f"roofs: {peaks.tflops * 1e3:.3g} GFLOP/s (matmul), {peaks.gbps:.3g} GB/s (STREAM)")
    if math.isfinite(peaks.ridge):
        ax.axvline(peaks.ridge, color="grey", linestyle=":", linewidth=1, zorder=1,
                   label=f"ridge point: {peaks.ridge:.3g} FLOPs/byte")


def time_breakdown(profile: ModelProfile, out_dir: Path) -> list[Path]:
    layers = profile.leaves()[:TOP_N][::-1]  # slowest on top
    fig, axes = new_figure(1, 1)
    ax = axes[0][0]
    fig.set_size_inches(7.5, 0.6 + 0.32 * max(len(layers), 3))
    medians = [layer.median_ms for layer in layers]
    lows = [max(m - layer.ci_ms[0], 0.0) for m, layer in zip(medians, layers)]
    highs = [max(layer.ci_ms[1] - m, 0.0) for m, layer in zip(medians, layers)]
    positions = list(range(len(layers)))
    ax.barh(positions, medians, xerr=[lows, highs], color="tab:blue", alpha=0.75, capsize=3,
            error_kw={"elinewidth": 1})
    ax.set_yticks(positions, [f"{layer.name} ({layer.type})" for layer in layers], fontsize=7)
    ax.set_xlabel(f"median ms per step over {profile.steps} profiled steps; whiskers: 95% CI of the median")
    ax.set_title(f"{profile.label()} — {profile.timing}", fontsize=8)
    ax.grid(True, axis="x", alpha=0.25)
    return save_figure(fig, out_dir, TIME_BREAKDOWN[0])
