"""The notebook service: notebooks, cells, their analysis, storage and events."""
