"""What a run measured, kept and read back: report data and its files, the SQLite store, every source as
report data, diff and its statistics, profile results, and the schemas of what is read back."""
