"""Builder families, one module per family; each registers itself with ``archbench.catalog.registry``."""
