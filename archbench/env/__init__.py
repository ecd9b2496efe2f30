"""The environment of a run: the fingerprint (torch, devices, threads), git and GPU facts, its sidecar file,
the differences between two, and whether a run's process is still alive."""
