"""archbench's version (its own module: everything that records it imports this, not the package)."""

__version__ = "0.1.0"
