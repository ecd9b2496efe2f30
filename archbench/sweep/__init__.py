"""A grid of cells measured: cells and the plan, the resumable sweep, one cell timed, interleaved rounds, the
largest batch that fits, and the store's listener of a run."""
