"""Code used by two or more services; it imports no service."""
