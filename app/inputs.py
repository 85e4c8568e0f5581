"""Checks of what the page sends before any job starts: a bad value gets a message naming the field and
the allowed range, and nothing changes."""

from __future__ import annotations

import math

from xscene_core.types.layout import Box
from xscene_core.types.occupancy import GridSpec
from xscene_core.types.scene import TIMES_OF_DAY, WEATHERS, SceneDescription

SEED_MAX = 2**31 - 1
GRID = GridSpec()  # every chunk's voxel grid (the Occ3D one)
BOX_MAX_SIZE = (25.0, 25.0, GRID.extent[2])  # metres: length, width (a long trailer), height (the grid's)


def check_seed(seed) -> int:
    """The seed as an int; ValueError unless it is a whole number in 0 .. SEED_MAX (None: 0, an empty field)."""
    if seed is None:
        return 0
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"the seed must be a whole number, got {seed!r}") from None
    if value != seed or not 0 <= value <= SEED_MAX:
        raise ValueError(f"the seed must be a whole number from 0 to {SEED_MAX}, got {seed!r}")
    return value


def check_box(box: Box) -> None:
    """ValueError unless the box's centre lies inside its chunk, its heading is a number and its size is a
    size some object has (a box far off or hundreds of metres long makes the generator allocate without
    bound)."""
    x, y = box.center[:2]
    if not GRID.contains_xy(x, y):  # the one "in this chunk" rule: lower bound in, upper bound out
        (lx, _, _), (ux, _, _) = GRID.lower, GRID.upper
        raise ValueError(f"{box.class_name}: its centre ({x:.1f}, {y:.1f}) m is outside the chunk (x and y "
                         f"from {lx:g} m up to, not including, {ux:g} m)")
    if not math.isfinite(box.yaw):
        raise ValueError(f"{box.class_name}: the heading must be a number of degrees, got {box.yaw}")
    for name, v, top in zip(("length", "width", "height"), box.size, BOX_MAX_SIZE):
        if not 0.1 <= v <= top:
            raise ValueError(f"{box.class_name}: a {name} of {v:g} m is out of range (0.1 .. {top:g} m)")


def check_description_style(description: SceneDescription) -> None:
    """ValueError unless the description's time of day and weather are ones the models know (in any
    case): the text a user edits says exactly what to generate, so a typo is named, not replaced by the
    preview look's noon / sunny fallback."""
    for key, value, known in (("Time of the day", description.time_of_day, TIMES_OF_DAY),
                              ("Weather", description.weather, WEATHERS)):
        if value.lower() not in known:
            raise ValueError(f"the description's \"{key}\" is {value!r}: use one of {', '.join(known)}")
