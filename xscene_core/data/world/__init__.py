"""The synthetic driving world: a seamless, seeded procedural world of roads, junctions, buildings,
vegetation and traffic, queried chunk by chunk (see SyntheticWorld)."""

from .world import Style, SyntheticWorld

# Bumped whenever the same seed starts to give different chunks; caches of generated chunks key on it.
WORLD_VERSION = 2

__all__ = ["Style", "SyntheticWorld", "WORLD_VERSION"]
