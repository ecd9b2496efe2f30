"""What a model is and where it comes from: specs, the family registry, sources, the built-in families."""
