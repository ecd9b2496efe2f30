"""Where cells run: in this process, in a local pool of worker processes, or as Slurm jobs; the work units
they measure and the shards they write."""
