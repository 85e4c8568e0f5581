"""The synthetic driving world: a seamless, seeded procedural world of roads, junctions, buildings,
vegetation and traffic, queried chunk by chunk (see SyntheticWorld)."""

from .world import Style, SyntheticWorld

__all__ = ["Style", "SyntheticWorld"]
