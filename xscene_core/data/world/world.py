"""SyntheticWorld: the embedded driving world, a pure function of its seed, queried chunk by chunk.

`SyntheticWorld(seed).chunk(x, y, yaw)` returns the Occ3D occupancy, the layout, the scene graph and the
description of the 80 m square centred at world (x, y) with heading yaw. Every label is a function of
the world point it describes, so overlapping chunks agree voxel for voxel, and every object, lane and
area has one world identity whichever chunk sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import semantics
from ...ops.clip import clip_polygon, clip_polyline, polygons_overlap, rect_corners
from ...ops.geometry import invert_rigid, pose_matrix
from ...types.layout import Box, Lane, Layout, MapLine, MapPolygon
from ...types.occupancy import GridSpec, Occupancy
from ...types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS
from ...types.world import Chunk
from .describe import describe_chunk, graph_of
from .environment import EnvironmentMap
from .features import Building, MapFeatures, Pole, Tree, node_map, road_buildings, road_map, road_trees_and_poles
from .ground import GroundField, ROAD_TOP
from .network import RoadNetwork
from .random import rng_for
from .traffic import Candidate, node_objects, road_objects

MANMADE, VEGETATION, TERRAIN = semantics.ID["manmade"], semantics.ID["vegetation"], semantics.ID["terrain"]
CONTEXT = 45.0  # metres around a query that can hold something overlapping it (largest object + corridor)
POLE_HALF = 0.21  # poles and trunks are squares a little wider than one voxel
SURFACE_LAYER = 0.4  # thickness of ground and roofs: one Occ3D voxel
WALL = 0.6  # wall thickness; >= 0.4 * sqrt(2), so a wall at any heading holds a voxel centre across it


@dataclass(frozen=True)
class Style:
    """Time of day and weather of a world."""

    time_of_day: str
    weather: str

    def __post_init__(self) -> None:
        if self.time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"time_of_day {self.time_of_day!r} is not one of {TIMES_OF_DAY}")
        if self.weather not in WEATHERS:
            raise ValueError(f"weather {self.weather!r} is not one of {WEATHERS}")


def _round(q: np.ndarray) -> np.ndarray:
    # world coordinates reached from different chunk origins differ in the last bits; rounding makes
    # the label of a point independent of which chunk asked
    return np.round(q, 6)


class SyntheticWorld:
    """A deterministic infinite driving world.

    seed: the world; style: time of day and weather (drawn from the seed when None); grid: the voxel
    grid of a chunk (Occ3D by default).
    """

    def __init__(self, seed: int, style: Style | None = None, grid: GridSpec | None = None) -> None:
        self.seed = int(seed)
        self.grid = grid or GridSpec()
        if style is None:
            rng = rng_for(self.seed, "style")
            style = Style(str(rng.choice(TIMES_OF_DAY, p=[0.06, 0.22, 0.2, 0.24, 0.1, 0.18])),
                          str(rng.choice(WEATHERS, p=[0.36, 0.22, 0.12, 0.16, 0.07, 0.07])))
        self.style = style
        self.envmap = EnvironmentMap(self.seed)
        self.net = RoadNetwork(self.seed, self.envmap)
        self.ground = GroundField(self.seed, self.envmap)
        self._buildings: dict[str, list[Building]] = {}
        self._valid_b: dict[str, list[Building]] = {}
        self._greens: dict[str, tuple[list[Tree], list[Pole]]] = {}
        self._cands: dict[str, list[Candidate]] = {}
        self._valid_o: dict[str, list[Candidate]] = {}
        self._final_o: dict[str, list[Box]] = {}
        self._maps: dict[str, MapFeatures] = {}

    # -- what stands where (world frame) -------------------------------------------------------------
    def _near(self, bbox: tuple[float, float, float, float], margin: float = 0.0):
        x0, y0, x1, y1 = bbox
        b = (x0 - margin, y0 - margin, x1 + margin, y1 + margin)
        return self.net.roads_near(*b), [n for n in self.net.nodes_near(*b) if n.degree > 0]

    def _ground_masks(self, pts: np.ndarray):
        lo, hi = pts.min(0), pts.max(0)
        roads, nodes = self._near((lo[0], lo[1], hi[0], hi[1]), 1.0)
        return self.ground.road_masks(_round(pts), roads, nodes)

    def _valid_buildings(self, road) -> list[Building]:
        """Buildings of a road that keep clear of every road and sidewalk."""
        if road.key not in self._valid_b:
            out = []
            for b in self._buildings.setdefault(road.key, road_buildings(self.seed, road)):
                c = rect_corners(b.center, b.size, b.yaw)
                probe = np.concatenate([c, (c + np.roll(c, -1, 0)) / 2, [b.center]])
                drive, med, walk, clear = self._ground_masks(probe)
                if not (drive.any() or med.any() or walk.any() or (clear < 0.5).any()):
                    out.append(b)
            self._valid_b[road.key] = out
        return self._valid_b[road.key]

    def buildings_near(self, bbox) -> list[Building]:
        """Buildings that stand (valid and not overlapped by a building of higher priority) and whose
        footprint may touch the box."""
        roads, _ = self._near(bbox, CONTEXT)
        cands = [b for r in roads for b in self._valid_buildings(r)]
        x0, y0, x1, y1 = bbox
        out = []
        for b in cands:
            if abs(b.center[0] - (x0 + x1) / 2) > (x1 - x0) / 2 + 30 or abs(b.center[1] - (y0 + y1) / 2) > (y1 - y0) / 2 + 30:
                continue
            cb = rect_corners(b.center, b.size, b.yaw)
            if not any(o.priority > b.priority and polygons_overlap(cb, rect_corners(o.center, o.size, o.yaw))
                       for o in cands if o is not b and abs(o.center[0] - b.center[0]) < 60 and abs(o.center[1] - b.center[1]) < 60):
                out.append(b)
        return out

    def _trees_poles(self, road) -> tuple[list[Tree], list[Pole]]:
        if road.key not in self._greens:
            trees, poles = road_trees_and_poles(self.seed, road)
            keep = []
            for items in (trees, poles):
                if not items:
                    keep.append([])
                    continue
                pts = np.array([[t.x, t.y] for t in items])
                drive, med, walk, clear = self._ground_masks(pts)
                ok = ~(drive | med)
                keep.append([t for t, k in zip(items, ok) if k])
            self._greens[road.key] = (keep[0], keep[1])
        return self._greens[road.key]

    def _valid_objects(self, key: str, cands: list[Candidate]) -> list[Candidate]:
        """Candidates standing on their surface (vehicles wholly on the road, pedestrians on a sidewalk
        or crosswalk) and clear of buildings."""
        if key not in self._valid_o:
            out = []
            for c in cands:
                b = c.box
                corners = rect_corners(b.center, b.size, b.yaw)
                pts = np.concatenate([corners, [b.center[:2]]])
                drive, med, walk, _ = self._ground_masks(pts)
                if c.surface == "road" or c.surface == "crosswalk":
                    ok = drive.all()
                elif c.surface == "sidewalk":
                    ok = walk[-1] and not drive.any()
                else:  # median
                    ok = med[-1] or drive[-1]
                if ok:
                    bb = (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max())
                    ok = not any(polygons_overlap(corners, rect_corners(o.center, o.size, o.yaw))
                                 for o in self.buildings_near(bb))
                if ok:
                    out.append(c)
            self._valid_o[key] = out
        return self._valid_o[key]

    def _candidates_of(self, roads, nodes) -> list[tuple[str, list[Candidate]]]:
        groups = []
        for r in roads:
            if r.key not in self._cands:
                self._cands[r.key] = road_objects(self.seed, r)
            groups.append((r.key, self._cands[r.key]))
        for n in nodes:
            key = f"node:{n.key[0]}_{n.key[1]}"
            if key not in self._cands:
                self._cands[key] = node_objects(self.seed, self.net, n)
            groups.append((key, self._cands[key]))
        return groups

    def objects_near(self, bbox) -> list[Box]:
        """Object boxes (world frame) that stand and whose footprint may touch the box: valid and not
        overlapping a valid candidate of higher priority."""
        roads, nodes = self._near(bbox, 2.0)
        ctx_roads, ctx_nodes = self._near(bbox, CONTEXT)
        context = [c for key, group in self._candidates_of(ctx_roads, ctx_nodes) for c in self._valid_objects(key, group)]
        boxes: list[Box] = []
        for key, group in self._candidates_of(roads, nodes):
            if key not in self._final_o:
                final = []
                for c in self._valid_objects(key, group):
                    b = c.box
                    cb = rect_corners(b.center, b.size, b.yaw)
                    clash = False
                    for o in context:
                        if o is c or o.priority <= c.priority:
                            continue
                        ob = o.box
                        if abs(ob.center[0] - b.center[0]) > 16 or abs(ob.center[1] - b.center[1]) > 16:
                            continue
                        if polygons_overlap(cb, rect_corners(ob.center, ob.size, ob.yaw)):
                            clash = True
                            break
                    if not clash:
                        final.append(b)
                self._final_o[key] = final
            boxes.extend(self._final_o[key])
        return boxes

    def map_near(self, bbox) -> MapFeatures:
        """Lanes, lines and areas (world frame) of the roads and junctions near the box."""
        roads, nodes = self._near(bbox, 2.0)
        out = MapFeatures()
        for key, make in [(r.key, lambda r=r: road_map(self.net, r)) for r in roads] + \
                         [(f"node:{n.key}", lambda n=n: node_map(self.net, n)) for n in nodes]:
            if key not in self._maps:
                self._maps[key] = make()
            f = self._maps[key]
            out.lanes += f.lanes
            out.lines += f.lines
            out.polygons += f.polygons
        return out

    # -- queries -------------------------------------------------------------------------------------
    def environment_at(self, x: float, y: float) -> str:
        return self.envmap.name_at(x, y)

    def find_location(self, environment: str, junction: bool | None = None, start: int = 0) -> tuple[float, float]:
        """A chunk centre (x, y) in the named environment near a road node (a junction when junction is
        True, a bend or straight when False, either when None), searched deterministically from the
        seed; raises ValueError if none is found."""
        if environment not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {environment!r}; use one of {', '.join(ENVIRONMENTS)}")
        rng = rng_for(self.seed, "find", start)
        for _ in range(20000):
            key = tuple(int(v) for v in rng.integers(-60, 60, size=2))
            node = self.net.node(key)
            if node.degree < (3 if junction else 2) or (junction is False and node.is_junction):
                continue
            x, y = node.pos + rng.uniform(-15, 15, size=2)
            if self.environment_at(x, y) == environment:
                return float(x), float(y)
        raise ValueError(f"no {environment!r} location found in world {self.seed}")

    def chunk(self, x: float, y: float, yaw: float = 0.0, style: Style | None = None) -> Chunk:
        """The chunk centred at world (x, y) (metres) with heading yaw (radians); its description carries
        `style` (time of day and weather) when given, the world's own style otherwise (a dataset may vary
        them per location; the geometry does not depend on them)."""
        T, bbox = self._pose(x, y, yaw)
        occ = Occupancy(self._rasterize(T, bbox), self.grid)
        layout = self._layout(T, bbox)
        chunk = Chunk(T, occ, layout)
        env = self.environment_at(x, y)
        chunk.graph = graph_of(layout, self.grid)
        chunk.description = describe_chunk(layout, occ, env, style or self.style, chunk.graph)
        return chunk

    def layout_at(self, x: float, y: float, yaw: float = 0.0) -> Layout:
        """Only the layout of the chunk at (x, y, yaw): the same as chunk(...).layout, without the voxels
        (a cheap path for layout and scene-graph work)."""
        T, bbox = self._pose(x, y, yaw)
        return self._layout(T, bbox)

    def _pose(self, x: float, y: float, yaw: float):
        """(T_world_chunk, world bbox of the chunk square)."""
        if not all(map(math.isfinite, (x, y, yaw))):
            raise ValueError(f"chunk pose must be finite, got ({x}, {y}, {yaw})")
        T = pose_matrix(x, y, yaw)
        (lx, ly, _), (ux, uy, _) = self.grid.lower, self.grid.upper
        corners = np.array([[lx, ly], [ux, ly], [ux, uy], [lx, uy]]) @ T[:2, :2].T + T[:2, 3]
        return T, (*corners.min(0), *corners.max(0))

    def labels_at(self, points: np.ndarray) -> np.ndarray:
        """Occ3D labels of world points float [N, 3] (metres): the same function every chunk samples."""
        pts = _round(np.asarray(points, dtype=np.float64).reshape(-1, 3))
        out = np.empty(len(pts), np.uint8)
        for start in range(0, len(pts), 4096):
            p = pts[start:start + 4096]
            lo, hi = p[:, :2].min(0), p[:, :2].max(0)
            out[start:start + 4096] = self._label_columns(p[:, :2], p[:, 2:], (lo[0], lo[1], hi[0], hi[1]))[:, 0]
        return out

    # -- rasterization -------------------------------------------------------------------------------
    def _label_columns(self, xy: np.ndarray, z: np.ndarray, bbox) -> np.ndarray:
        """Labels uint8 [N, K] of world points at columns xy float [N, 2] and heights z float [N, K]
        inside bbox. Every shape is tested in world coordinates, so a point's label never depends on
        the chunk that asks."""
        roads, nodes = self._near(bbox, 2.0)
        g = self.ground.sample(xy, roads, nodes)
        top, canopy = g.top[:, None], g.canopy[:, None]
        base = np.where(g.label == VEGETATION, TERRAIN, g.label)[:, None]
        # Like Occ3D (built from what sensors see), ground is the one voxel layer holding the surface
        lab = np.where((z < top - 0.1) & (z >= top - 0.1 - SURFACE_LAYER), base, semantics.FREE).astype(np.uint8)
        lab[(g.label[:, None] == VEGETATION) & (z >= top - 0.1) & (z < canopy)] = VEGETATION
        for trees, poles in (self._trees_poles(r) for r in self._near(bbox, 8.0)[0]):
            for t in trees:
                near = np.flatnonzero((np.abs(xy[:, 0] - t.x) < t.radius) & (np.abs(xy[:, 1] - t.y) < t.radius))
                if not len(near):
                    continue
                zz, p = z[near] - ROAD_TOP, xy[near]
                half = (t.crown_top - t.trunk_top) / 2
                r2 = (((p[:, 0] - t.x) ** 2 + (p[:, 1] - t.y) ** 2) / t.radius**2)[:, None]
                crown = r2 + ((zz - t.trunk_top - half) / half) ** 2 <= 1
                at_trunk = ((np.abs(p[:, 0] - t.x) <= POLE_HALF) & (np.abs(p[:, 1] - t.y) <= POLE_HALF))[:, None]
                trunk = at_trunk & (zz >= 0) & (zz < t.trunk_top)
                sub = lab[near]
                sub[crown | trunk] = VEGETATION
                lab[near] = sub
            for pl in poles:
                near = np.flatnonzero((np.abs(xy[:, 0] - pl.x) <= POLE_HALF) & (np.abs(xy[:, 1] - pl.y) <= POLE_HALF))
                sub = lab[near]
                sub[z[near] < ROAD_TOP + pl.height] = MANMADE
                lab[near] = sub
        for b in self.buildings_near(bbox):
            # a shell, as a scan sees it: walls along the footprint's rim and a roof; inside is unseen (free)
            near, rim = self._footprint_columns(xy, b.center, b.size, b.yaw, rim=WALL)
            roof = ROAD_TOP + b.height
            zn = z[near]
            sub = lab[near]
            sub[zn < roof] = semantics.FREE
            sub[(rim[:, None] & (zn >= ROAD_TOP - 0.1 - SURFACE_LAYER) & (zn < roof)) | ((zn < roof) & (zn >= roof - SURFACE_LAYER))] = MANMADE
            lab[near] = sub
        for box in self.objects_near(bbox):
            near = self._footprint_columns(xy, box.center, box.size, box.yaw)
            sub = lab[near]
            sub[np.abs(z[near] - box.center[2]) <= box.size[2] / 2] = box.label
            lab[near] = sub
        return lab

    @staticmethod
    def _footprint_columns(xy: np.ndarray, center, size, yaw: float, rim: float | None = None):
        """Indices of the columns whose (x, y) lies in a rectangle (edges included); with `rim`, also
        bool [n] marking those within `rim` metres of its edge."""
        r = math.hypot(size[0], size[1]) / 2
        near = np.flatnonzero((np.abs(xy[:, 0] - center[0]) <= r) & (np.abs(xy[:, 1] - center[1]) <= r))
        c, s = math.cos(yaw), math.sin(yaw)
        d = xy[near] - np.asarray(center[:2])
        lx, ly = np.abs(d[:, 0] * c + d[:, 1] * s), np.abs(-d[:, 0] * s + d[:, 1] * c)
        inside = (lx <= size[0] / 2) & (ly <= size[1] / 2)
        if rim is None:
            return near[inside]
        return near[inside], ((lx > size[0] / 2 - rim) | (ly > size[1] / 2 - rim))[inside]

    def _rasterize(self, T: np.ndarray, bbox) -> np.ndarray:
        grid = self.grid
        centres = grid.centers()[:, :, 0, :2].reshape(-1, 2)  # column centres, chunk frame
        xy = _round(centres @ T[:2, :2].T + T[:2, 3])
        z = np.broadcast_to(_round(grid.axis_centers(2) + T[2, 3]), (len(xy), grid.shape[2]))
        return self._label_columns(xy, z, bbox).reshape(grid.shape)

    # -- layout --------------------------------------------------------------------------------------
    def _layout(self, T: np.ndarray, bbox) -> Layout:
        """Boxes touching the chunk square and map elements clipped to it, in the chunk frame."""
        T_chunk_world = invert_rigid(T)
        (lx, ly, _), (ux, uy, _) = self.grid.lower, self.grid.upper
        square = np.array([[lx, ly], [ux, ly], [ux, uy], [lx, uy]])
        boxes = []
        for b in self.objects_near(bbox):
            local = b.transformed(T_chunk_world)
            if polygons_overlap(rect_corners(local.center, local.size, local.yaw), square):
                boxes.append(local)
        boxes.sort(key=lambda b: b.track_id)
        feats = self.map_near(bbox)
        move = lambda p: p @ T_chunk_world[:2, :2].T + T_chunk_world[:2, 3]  # noqa: E731
        lanes, lines, polys = [], [], []
        for lane in feats.lanes:
            for i, part in enumerate(clip_polyline(move(lane.points), (lx, ly), (ux, uy))):
                lanes.append(Lane(part, lane.turn, lane.lane_id + (f"#{i}" if i else ""), lane.connector))
        for line in feats.lines:
            lines += [MapLine(part, line.kind) for part in clip_polyline(move(line.points), (lx, ly), (ux, uy))]
        for poly in feats.polygons:
            pts = clip_polygon(move(poly.points), (lx, ly), (ux, uy))
            if len(pts) >= 3:
                mp = MapPolygon(pts, poly.kind)
                if mp.area > 0.05:
                    polys.append(mp)
        return Layout(tuple(boxes), tuple(lanes), tuple(lines), tuple(polys))
