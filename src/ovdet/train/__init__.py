"""Training loops, checkpoints and feature caches."""
