"""Streaming file transformations used by the task types' activities."""
