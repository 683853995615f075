"""Benchmarks; ``make bench`` (``python -m bench``) measures DESIGN §9 vs Jupyter."""
