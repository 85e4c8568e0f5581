"""The one class table of xscene: Occ3D-nuScenes ids, names, colours, the 17->11 coarse mapping and
nuScenes-like object sizes. Everything that needs a class id, a name or a colour reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SemanticClass:
    """One Occ3D-nuScenes class.

    id: the Occ3D label id (0..17); name: Occ3D's name; color: RGB 0..255 (the Occ3D viewer palette);
    coarse: id in the 11-class scheme (0 = free); is_object: a class of the 10 nuScenes detection
    classes that the layout carries as boxes.
    """

    id: int
    name: str
    color: tuple[int, int, int]
    coarse: int
    is_object: bool


# Occ3D ids and the palette used by the Occ3D / Occupancy-Vis viewers.
CLASSES: tuple[SemanticClass, ...] = (
    SemanticClass(0, "others", (0, 0, 0), 3, False),
    SemanticClass(1, "barrier", (255, 120, 50), 2, True),
    SemanticClass(2, "bicycle", (255, 192, 203), 11, True),
    SemanticClass(3, "bus", (255, 255, 0), 10, True),
    SemanticClass(4, "car", (0, 150, 245), 10, True),
    SemanticClass(5, "construction_vehicle", (0, 255, 255), 10, True),
    SemanticClass(6, "motorcycle", (200, 180, 0), 11, True),
    SemanticClass(7, "pedestrian", (255, 0, 0), 4, True),
    SemanticClass(8, "traffic_cone", (255, 240, 150), 5, True),
    SemanticClass(9, "trailer", (135, 60, 0), 10, True),
    SemanticClass(10, "truck", (160, 32, 240), 10, True),
    SemanticClass(11, "driveable_surface", (255, 0, 255), 6, False),
    SemanticClass(12, "other_flat", (139, 137, 137), 7, False),
    SemanticClass(13, "sidewalk", (75, 0, 75), 8, False),
    SemanticClass(14, "terrain", (150, 240, 80), 7, False),
    SemanticClass(15, "manmade", (230, 230, 250), 1, False),
    SemanticClass(16, "vegetation", (0, 175, 0), 9, False),
    SemanticClass(17, "free", (255, 255, 255), 0, False),
)

NUM_CLASSES = len(CLASSES)  # 18, free included
FREE = 17
OTHERS = 0
NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
ID: dict[str, int] = {c.name: c.id for c in CLASSES}
OBJECT_IDS: tuple[int, ...] = tuple(c.id for c in CLASSES if c.is_object)  # 1..10
GROUND_IDS: tuple[int, ...] = (ID["driveable_surface"], ID["other_flat"], ID["sidewalk"], ID["terrain"])
BACKGROUND_IDS: tuple[int, ...] = (ID["manmade"], ID["vegetation"])
VEHICLE_IDS: tuple[int, ...] = tuple(
    ID[n] for n in ("bus", "car", "construction_vehicle", "motorcycle", "trailer", "truck", "bicycle")
)

# Palette as an array for fast colouring: COLORS[labels] -> uint8 [..., 3].
COLORS = np.array([c.color for c in CLASSES], dtype=np.uint8)

# The 17(+free) -> 11 mapping of the paper's Table 8, as the official X-Scene release applies it for its
# occupancy feature metrics (eval_occgen/conf/dataset/occ3dn_map.yaml). 0 is free.
COARSE_NAMES: tuple[str, ...] = (
    "free", "building", "barrier", "other", "pedestrian", "pole", "road", "ground", "sidewalk",
    "vegetation", "vehicle", "bicycle",
)
COARSE_OF = np.array([c.coarse for c in CLASSES], dtype=np.uint8)  # COARSE_OF[occ3d_id] -> coarse id


def to_coarse(labels: np.ndarray) -> np.ndarray:
    """Map Occ3D labels (uint8, any shape, values 0..17) to the 11-class scheme (0 = free)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")
    return COARSE_OF[labels]


@dataclass(frozen=True)
class SizeRange:
    """Box size range of an object class in metres: length (along heading), width, height."""

    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]

    def sample(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """Draw (l, w, h) uniformly inside the range."""
        return tuple(float(rng.uniform(*r)) for r in (self.length, self.width, self.height))  # type: ignore[return-value]

    def contains(self, size: tuple[float, float, float], tol: float = 1e-6) -> bool:
        return all(lo - tol <= s <= hi + tol for s, (lo, hi) in zip(size, (self.length, self.width, self.height)))


# nuScenes-like sizes (train-set statistics of the detection classes, roughly mean +- 2 std, clipped).
# Small classes are kept at least one Occ3D voxel (0.4 m) wide, so every box holds a voxel centre:
# the Occ3D ground truth cannot show a thinner object either.
SIZES: dict[int, SizeRange] = {
    ID["barrier"]: SizeRange((1.8, 3.0), (0.6, 0.8), (0.9, 1.2)),
    ID["bicycle"]: SizeRange((1.6, 1.9), (0.6, 0.8), (1.1, 1.8)),
    ID["bus"]: SizeRange((10.0, 12.5), (2.7, 3.0), (3.2, 3.8)),
    ID["car"]: SizeRange((3.9, 5.2), (1.7, 2.1), (1.4, 1.9)),
    ID["construction_vehicle"]: SizeRange((5.5, 7.5), (2.5, 3.0), (2.8, 3.6)),
    ID["motorcycle"]: SizeRange((1.9, 2.4), (0.7, 0.9), (1.2, 1.6)),
    ID["pedestrian"]: SizeRange((0.6, 0.9), (0.6, 0.8), (1.5, 1.9)),
    ID["traffic_cone"]: SizeRange((0.42, 0.5), (0.42, 0.5), (0.7, 1.1)),
    ID["trailer"]: SizeRange((8.0, 13.0), (2.5, 3.0), (3.2, 4.0)),
    ID["truck"]: SizeRange((6.0, 10.0), (2.3, 2.8), (2.6, 3.6)),
}

# States a box can have, per kind of object.
STATES: tuple[str, ...] = ("moving", "stopped", "parked", "walking", "standing", "crossing", "static")


def class_id(name: str) -> int:
    """Occ3D id of a class name; raises ValueError naming the known classes otherwise."""
    try:
        return ID[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; known: {', '.join(NAMES)}") from None
