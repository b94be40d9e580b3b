"""Benchmarks: each figure is measured next to a baseline in the same run."""
