"""Semantic classes the preview look treats alike."""

from __future__ import annotations

from ... import semantics


ID = semantics.ID
VEHICLES = tuple(ID[n] for n in ("bus", "car", "construction_vehicle", "trailer", "truck"))
TWO_WHEELERS = (ID["bicycle"], ID["motorcycle"])
