"""Training: the config and its presets, data set records, samplers, optimisers, the loop, checkpoints."""
