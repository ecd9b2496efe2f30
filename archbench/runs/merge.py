"""One report from several runs: ``archbench report RUN_A RUN_B ...`` — a laptop run and a cluster run, two
stores, a run and a CSV — merged without measuring (no torch import).

Each source is read as ``archbench report`` reads one (:func:`archbench.results.sources.load_source`: a run
of the store, a compare report's folder or ``results.csv``, a bench CSV). A device that more than one source
measured is labelled with its source in the merged rows (``cpu`` of run 12 -> ``cpu@run12``; of
``reports/laptop/`` -> ``cpu@laptop``), so each source keeps its own device column set — the target
convention of :mod:`archbench.execute.workunits`; devices only one source measured keep their names. The
study is the union of the sources' (models, grid), the reference the first source's, and each source's
environment is listed under its label.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from archbench.results.sources import Source


def merge(sources: Sequence[Source], command: str = ""):
    """One :class:`~archbench.report.ReportData` of every source's rows (see the module docstring)."""
    from archbench.results.data import ReportData
    from archbench.study import Grid, Study
    from archbench.sweep.cells import with_target

    labels = _unique([s.label for s in sources])
    shared = {d for d, n in Counter(d for s in sources for d in dict.fromkeys(r.device for r in s.data.rows)).items() if n > 1}

    def device(d: str, label: str) -> str:
        return with_target(d, label) if d in shared else d

    rows, environments, peaks = [], [], {}
    for source, label in zip(sources, labels):
        rows += [dataclasses.replace(r, device=device(r.device, label)) for r in source.data.rows]
        environments += [{**env, "worker": f"{label} (merged)"} for env in source.data.environments[:1]]
        for key, value in source.data.peaks_tflops.items():
            dev, _, dtype = key.rpartition("/")
            peaks[f"{device(dev, label)}/{dtype}"] = value
    first = sources[0].data
    environments = [*first.environments[:1], *environments]  # the first source's in full, then each source's, labelled

    def union(name: str) -> tuple:
        return tuple(dict.fromkeys(v for s in sources for v in getattr(s.data.study.grid, name) or ()))

    grid = Grid(devices=tuple(dict.fromkeys(r.device for r in rows)), inputs=union("inputs") or None,
                batches=tuple(sorted(union("batches"))), modes=union("modes"), dtypes=union("dtypes"))
    models = tuple(dict.fromkeys(m for s in sources for m in s.data.study.models))
    study = Study("merged", models, grid, first.study.options, title=" + ".join(s.data.study.title for s in sources),
                  reference=first.study.reference)
    infos = tuple({m.name: m for s in reversed(sources) for m in s.data.models}[name] for name in models
                  if any(m.name == name for s in sources for m in s.data.models))
    stats = tuple({(st.model, st.input): st for s in reversed(sources) for st in s.data.stats}.values())
    errors = tuple(dict.fromkeys(e for s in sources for e in s.data.stats_errors))
    return ReportData(study, tuple(rows), infos, stats, errors, tuple(environments), peaks, command,
                      max(s.data.date for s in sources), sum(s.data.planned_cells or len(s.data.rows) for s in sources))


def _unique(labels: list[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out
