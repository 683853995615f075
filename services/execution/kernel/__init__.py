"""Kernels: one process per notebook that runs user code, and its parent side."""
