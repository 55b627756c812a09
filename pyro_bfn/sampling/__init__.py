"""Sampling: the time grid, the n-step update loop and the registry of samplers."""
