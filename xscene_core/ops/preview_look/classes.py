"""Semantic classes the preview look treats alike."""

from __future__ import annotations

from ... import semantics
from ..street_lights import VEHICLES  # noqa: F401  (the classes with head and tail lights, one list)


ID = semantics.ID
TWO_WHEELERS = (ID["bicycle"], ID["motorcycle"])
