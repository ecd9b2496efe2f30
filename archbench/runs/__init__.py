"""Grids of cells: planning, the resumable sweep, studies, comparisons, the environment of a run."""
