"""Temporal workflows: deterministic code only (no I/O, no wall clock, no database)."""
