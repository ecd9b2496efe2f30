"""What a model costs without timing it: parameters, MACs/FLOPs, activation memory, the layer table."""
