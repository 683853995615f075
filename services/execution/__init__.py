"""The execution service."""
