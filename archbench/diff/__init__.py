"""Two runs compared cell by cell (``archbench diff``): which cells can be judged at all
(:mod:`~archbench.diff.comparability`: load, noise, coverage, the environments) and the verdict and statistics of
each (:mod:`~archbench.diff.runs`). Reads results; renders nothing (``archbench.report.diff_markdown`` does)."""
