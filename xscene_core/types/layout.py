"""The layout of a chunk: 3D object boxes and map elements (lanes, lines, polygons) in the chunk frame."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import semantics
from ..ops.clip import rect_corners
from ..ops.geometry import wrap_angle
from ._checks import as_array, check_choice, check_finite, check_positive

BOX_STATES = semantics.STATES


def _fields_equal(a, b) -> bool:
    """Dataclass equality that compares array fields by value."""
    if type(a) is not type(b):
        return NotImplemented
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in ((getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__))
LANE_TURNS = ("straight", "left", "right")
LINE_KINDS = ("lane_divider", "road_divider", "road_edge", "stop_line")
POLYGON_KINDS = ("drivable", "intersection", "crosswalk", "sidewalk", "parking", "median")
DRIVABLE_KINDS = ("drivable", "intersection", "crosswalk", "parking")  # areas a vehicle may stand on


@dataclass(frozen=True)
class Box:
    """A 3D object box in the chunk frame.

    center: (x, y, z) metres; size: (l, w, h) metres, l along the heading; yaw: radians from +x
    towards +y; label: Occ3D object id (1..10); state: one of semantics.STATES; track_id: stable id of
    the object in its world, so the same object has the same id in every chunk; color: paint colour
    name for vehicles ("" when unknown).
    """

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float
    label: int
    state: str = "static"
    track_id: str = ""
    color: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", tuple(float(v) for v in self.center))
        object.__setattr__(self, "size", tuple(float(v) for v in self.size))
        object.__setattr__(self, "yaw", float(self.yaw))
        object.__setattr__(self, "label", int(self.label))
        if len(self.center) != 3 or len(self.size) != 3:
            raise ValueError(f"Box: center and size need 3 values, got {self.center}, {self.size}")
        check_finite("Box.center", *self.center)
        check_positive("Box.size", *self.size)
        check_finite("Box.yaw", self.yaw)
        if self.label not in semantics.OBJECT_IDS:
            raise ValueError(
                f"Box.label: {self.label} is not an object class; object ids are {semantics.OBJECT_IDS}"
            )
        check_choice("Box.state", self.state, BOX_STATES)

    @property
    def class_name(self) -> str:
        return semantics.NAMES[self.label]

    def as_vector(self) -> np.ndarray:
        """float64 [7]: (x, y, z, l, w, h, yaw)."""
        return np.array([*self.center, *self.size, self.yaw])

    def corners_bev(self) -> np.ndarray:
        """float64 [4, 2]: footprint corners (front-left, front-right, rear-right, rear-left)."""
        return rect_corners(self.center, self.size, self.yaw)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """bool [...]: which points (float [..., 3]) lie inside the box."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.center)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx = p[..., 0] * c + p[..., 1] * s
        ly = -p[..., 0] * s + p[..., 1] * c
        hl, hw, hh = (v / 2 for v in self.size)
        return (np.abs(lx) <= hl) & (np.abs(ly) <= hw) & (np.abs(p[..., 2]) <= hh)

    def transformed(self, T: np.ndarray) -> "Box":
        """The box moved by a 2D rigid transform given as a 4x4 matrix (rotation about z + translation)."""
        centre = T[:3, :3] @ np.asarray(self.center) + T[:3, 3]
        dyaw = math.atan2(T[1, 0], T[0, 0])
        return replace(self, center=tuple(centre), yaw=float(wrap_angle(self.yaw + dyaw)))

    def to_dict(self) -> dict:
        return {
            "center": list(self.center), "size": list(self.size), "yaw": self.yaw,
            "class": self.class_name, "state": self.state, "track_id": self.track_id, "color": self.color,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Box":
        return cls(tuple(d["center"]), tuple(d["size"]), d["yaw"], semantics.class_id(d["class"]),
                   d.get("state", "static"), d.get("track_id", ""), d.get("color", ""))


@dataclass(frozen=True)
class Lane:
    """A lane centre line. points: float64 [N, 2] in the direction of travel; turn: straight/left/right;
    lane_id: stable id in its world; connector: True for a path through an intersection."""

    points: np.ndarray
    turn: str = "straight"
    lane_id: str = ""
    connector: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", as_array("Lane.points", self.points, np.float64, (None, 2)))
        if len(self.points) < 2:
            raise ValueError(f"Lane.points: a lane needs at least 2 points, got {len(self.points)}")
        check_choice("Lane.turn", self.turn, LANE_TURNS)

    def __eq__(self, other: object) -> bool:
        return _fields_equal(self, other)

    @property
    def heading(self) -> float:
        """Overall direction of travel (radians), from the first to the last point."""
        d = self.points[-1] - self.points[0]
        return math.atan2(d[1], d[0])

    def to_dict(self) -> dict:
        return {"points": self.points.tolist(), "turn": self.turn, "lane_id": self.lane_id,
                "connector": self.connector}

    @classmethod
    def from_dict(cls, d: dict) -> "Lane":
        return cls(np.asarray(d["points"]), d.get("turn", "straight"), d.get("lane_id", ""), d.get("connector", False))


@dataclass(frozen=True)
class MapLine:
    """A painted or physical line: points float64 [N, 2]; kind in LINE_KINDS."""

    points: np.ndarray
    kind: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", as_array("MapLine.points", self.points, np.float64, (None, 2)))
        if len(self.points) < 2:
            raise ValueError("MapLine.points: a line needs at least 2 points")
        check_choice("MapLine.kind", self.kind, LINE_KINDS)

    def __eq__(self, other: object) -> bool:
        return _fields_equal(self, other)

    def to_dict(self) -> dict:
        return {"points": self.points.tolist(), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "MapLine":
        return cls(np.asarray(d["points"]), d["kind"])


@dataclass(frozen=True)
class MapPolygon:
    """A map area (simple polygon, counter-clockwise or not): points float64 [N, 2]; kind in POLYGON_KINDS."""

    points: np.ndarray
    kind: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", as_array("MapPolygon.points", self.points, np.float64, (None, 2)))
        if len(self.points) < 3:
            raise ValueError("MapPolygon.points: a polygon needs at least 3 points")
        check_choice("MapPolygon.kind", self.kind, POLYGON_KINDS)

    def __eq__(self, other: object) -> bool:
        return _fields_equal(self, other)

    @property
    def area(self) -> float:
        x, y = self.points[:, 0], self.points[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def to_dict(self) -> dict:
        return {"points": self.points.tolist(), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "MapPolygon":
        return cls(np.asarray(d["points"]), d["kind"])


@dataclass(frozen=True)
class Layout:
    """Everything placed in a chunk, in the chunk frame: object boxes, lanes, lines and map areas."""

    boxes: tuple[Box, ...] = ()
    lanes: tuple[Lane, ...] = ()
    lines: tuple[MapLine, ...] = ()
    polygons: tuple[MapPolygon, ...] = field(default=())

    def __post_init__(self) -> None:
        for name, typ in (("boxes", Box), ("lanes", Lane), ("lines", MapLine), ("polygons", MapPolygon)):
            items = tuple(getattr(self, name))
            for i, it in enumerate(items):
                if not isinstance(it, typ):
                    raise ValueError(f"Layout.{name}[{i}]: expected {typ.__name__}, got {type(it).__name__}")
            object.__setattr__(self, name, items)

    def box_array(self) -> np.ndarray:
        """float64 [N, 7]: (x, y, z, l, w, h, yaw) per box."""
        return np.array([b.as_vector() for b in self.boxes]).reshape(-1, 7)

    def box_labels(self) -> np.ndarray:
        """int64 [N]: Occ3D id per box."""
        return np.array([b.label for b in self.boxes], dtype=np.int64)

    def transformed(self, T: np.ndarray) -> "Layout":
        """The layout moved by a rigid 4x4 transform about z (e.g. T_world_chunk)."""
        R, t = T[:2, :2], T[:2, 3]
        move = lambda p: p @ R.T + t  # noqa: E731
        return Layout(
            tuple(b.transformed(T) for b in self.boxes),
            tuple(replace(l, points=move(l.points)) for l in self.lanes),
            tuple(replace(l, points=move(l.points)) for l in self.lines),
            tuple(replace(p, points=move(p.points)) for p in self.polygons),
        )

    def to_dict(self) -> dict:
        return {
            "format": "xscene.layout/1",
            "boxes": [b.to_dict() for b in self.boxes],
            "lanes": [l.to_dict() for l in self.lanes],
            "lines": [l.to_dict() for l in self.lines],
            "polygons": [p.to_dict() for p in self.polygons],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        if not isinstance(d, dict) or d.get("format") != "xscene.layout/1":
            raise ValueError("not an xscene layout: expected a JSON object with \"format\": \"xscene.layout/1\"")
        return cls(
            tuple(Box.from_dict(b) for b in d.get("boxes", [])),
            tuple(Lane.from_dict(l) for l in d.get("lanes", [])),
            tuple(MapLine.from_dict(l) for l in d.get("lines", [])),
            tuple(MapPolygon.from_dict(p) for p in d.get("polygons", [])),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Layout":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d)

