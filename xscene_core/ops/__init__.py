"""Geometry and rendering functions (no state, no I/O)."""
