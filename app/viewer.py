"""The 3D viewer of one browser session: its own viser server (its own port), so two sessions never share
a scene, a selection or a click.

Scene tree (viser names nodes by path):
    /world/chunk_0_1/voxels          surface voxels of the chunk's occupancy (a point cloud of 0.4 m squares)
    /world/chunk_0_1/boxes/car_3     one box per layout box (click to select)
    /world/chunk_0_1/lanes           lane centre lines
    /world/arrows/east_of_chunk_0_1  an arrow at a free neighbour cell (click to outpaint it)
    /world/gizmo                     transform controls on the selected box
    /world/lane_handles/0            transform controls on points of the selected lane (drag to bend it)
    /roam/splats                     the Gaussians of the whole world (roam mode)
Chunks overlap by half (stride 40 m, 80 m chunks); each voxel is drawn by the chunk whose stride cell
holds it, so an overlap is drawn once. Only what changed is sent again (a chunk's voxels when its chunk
object or its neighbours change, its boxes and lanes when its layout changes), inside server.atomic().
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import viser

from xscene_core import semantics
from xscene_core.ops.lane_edit import lane_handles
from xscene_core.types.gaussians import GaussianScene
from xscene_core.types.layout import Layout
from xscene_core.types.occupancy import Occupancy
from xscene_core.types.world import DIRECTIONS, Chunk, ChunkIndex, WorldMap

BOX_OPACITY = 0.55
SELECTED_COLOR = (255, 230, 0)
LANE_COLOR = (250, 250, 250)
SELECTED_LANE_COLOR = (255, 60, 60)
ARROW_COLOR = (255, 140, 0)
ROAM_FAR = 1000.0  # metres: viser's default far plane, the least the roam view keeps


@dataclass(frozen=True)
class Selection:
    """What the user picked: a chunk, and in it a box (index into its layout's boxes) or a lane."""

    chunk: ChunkIndex | None = None
    box: int | None = None
    lane: int | None = None


@dataclass(frozen=True)
class ViewerCallbacks:
    """What the viewer reports (called from viser's threads): a box clicked, a box moved with the gizmo
    (chunk, box, world x, y, z, world yaw), an extension arrow clicked (origin chunk, direction), a lane
    handle dragged (chunk, lane, lane point, world x, y, z of the point's new place)."""

    select_box: Callable[[ChunkIndex, int], None]
    move_box: Callable[[ChunkIndex, int, tuple[float, float, float], float], None]
    extend: Callable[[ChunkIndex, str], None]
    bend_lane: Callable[[ChunkIndex, int, int, tuple[float, float, float]], None] = lambda *a: None


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """wxyz of a rotation by yaw about +z."""
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def quaternion_yaw(wxyz: np.ndarray) -> float:
    """Heading (rotation about +z) of a wxyz quaternion."""
    w, x, y, z = (float(v) for v in wxyz)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def surface_voxels(occ: Occupancy) -> tuple[np.ndarray, np.ndarray]:
    """Occupied voxels with at least one free face: centres float32 [N, 3] (chunk frame) and labels uint8 [N]."""
    occupied = occ.labels != semantics.FREE
    padded = np.pad(occupied, 1, constant_values=False)
    inner = np.ones_like(occupied)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    keep = occupied & ~inner
    ijk = np.argwhere(keep)
    lower = np.asarray(occ.grid.lower)
    centres = lower + (ijk + 0.5) * occ.grid.voxel_size
    return centres.astype(np.float32), occ.labels[keep]


def owned(world: WorldMap, index: ChunkIndex, points_world: np.ndarray) -> np.ndarray:
    """bool [N]: points whose stride cell is `index` or a cell with no chunk (so overlaps are drawn once)."""
    cell = np.round(points_world[:, :2] / world.stride).astype(np.int64)
    mine = (cell[:, 0] == index.i) & (cell[:, 1] == index.j)
    others = np.zeros(len(points_world), bool)
    for other in world.chunks:
        if other != index:
            others |= (cell[:, 0] == other.i) & (cell[:, 1] == other.j)
    return mine | ~others


def _to_world(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def _arrow_mesh(length: float = 8.0, width: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """A flat arrow pointing +x, centred at the origin: vertices float32 [7, 3], faces uint32 [3, 3]."""
    h, s = length / 2, width / 4
    v = np.array([[-h, -s, 0], [0, -s, 0], [0, s, 0], [-h, s, 0], [0, -width / 2, 0], [h, 0, 0], [0, width / 2, 0]],
                 np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]], np.uint32)
    return v, f


class Viewer:
    """One viser server showing one session's world. host/port: where to serve (port is the first free
    one from `port` up); callbacks: ViewerCallbacks; share: also ask viser's relay for a public link
    (`share_url` once it answers, None until then or when it cannot be reached), for pages served with
    gradio's --share, whose visitors cannot reach `host`."""

    def __init__(self, callbacks: ViewerCallbacks, host: str = "127.0.0.1", port: int = 8100,
                 share: bool = False) -> None:
        self.callbacks = callbacks
        self.server = viser.ViserServer(host=host, port=port, label="xscene viewer", verbose=False)
        self.port = self.server.get_port()
        self.share_url: str | None = None
        if share:  # the relay may take seconds or never answer: never hold the page up for it
            threading.Thread(target=self._request_share_url, daemon=True, name="viewer-share").start()
        self.server.initial_camera.position = (-55.0, -55.0, 60.0)
        self.server.initial_camera.look_at = (0.0, 0.0, 0.0)
        self.server.gui.configure_theme(control_layout="floating", control_width="small", show_logo=False)
        self.server.gui.add_markdown("Click a box to select it, drag the gizmo to move or turn it; pick a lane on "
                                     "the page and drag its handles to bend it; click an orange arrow to extend "
                                     "the world. In roam mode fly with WASD, Q/E and the mouse.")
        self._lock = threading.RLock()
        self._frame = self.server.scene.add_frame("/world", show_axes=False)
        self._voxels_key: dict[ChunkIndex, tuple] = {}
        self._layout_key: dict[ChunkIndex, tuple] = {}
        self._boxes: dict[tuple[ChunkIndex, int], viser.BoxHandle] = {}
        self._arrows: dict[str, object] = {}
        self._gizmo = None
        self._gizmo_key: tuple | None = None
        self._lane_handles: dict[int, object] = {}  # lane point index -> its transform controls
        self._lane_key: tuple | None = None
        self._roam_key: object = None
        self.mode = "edit"

    def _request_share_url(self) -> None:
        try:
            self.share_url = self.server.request_share_url(verbose=False)
        except Exception:  # noqa: BLE001 - no network, relay down: the local address still works
            self.share_url = None

    def url(self, host: str) -> str:
        """Where a browser that reached the page at `host` finds this viewer."""
        return self.share_url or f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        return len(self.server.get_clients())

    def close(self) -> None:
        self.server.stop()

    # -- edit mode -----------------------------------------------------------------------------------------
    def show(self, world: WorldMap | None, layouts: dict[ChunkIndex, Layout], selection: Selection) -> None:
        """Bring the scene up to date with `world`, the layouts being edited (pending edits included) and the
        selection; sends only what changed."""
        with self._lock, self.server.atomic():
            chunks = dict(world.chunks) if world is not None else {}
            for index in set(self._voxels_key) - set(chunks):
                for part in ("voxels", "boxes", "lanes", "lane_selected"):
                    self.server.scene.remove_by_name(f"/world/{index}/{part}")
                self._voxels_key.pop(index, None)
                self._layout_key.pop(index, None)
                for key in [k for k in self._boxes if k[0] == index]:
                    del self._boxes[key]
            for index, chunk in chunks.items():
                self._show_voxels(world, index, chunk)
                self._show_layout(index, chunk, layouts.get(index, chunk.layout), selection)
            self._show_arrows(world)
            self._show_gizmo(chunks, layouts, selection)
            self._show_lane_handles(chunks, layouts, selection)

    def _show_voxels(self, world: WorldMap, index: ChunkIndex, chunk: Chunk) -> None:
        key = (id(chunk), id(chunk.occupancy), tuple(sorted(world.chunks)))
        if self._voxels_key.get(index) == key:
            return
        self._voxels_key[index] = key
        name = f"/world/{index}/voxels"
        if chunk.occupancy is None:
            self.server.scene.remove_by_name(name)
            return
        centres, labels = surface_voxels(chunk.occupancy)
        pts = _to_world(chunk.T_world_chunk, centres.astype(np.float64))
        keep = owned(world, index, pts)
        self.server.scene.add_point_cloud(name, pts[keep].astype(np.float32), semantics.COLORS[labels[keep]],
                                          point_size=chunk.occupancy.grid.voxel_size, point_shape="square",
                                          point_shading="flat")

    def _show_layout(self, index: ChunkIndex, chunk: Chunk, layout: Layout | None, selection: Selection) -> None:
        sel_box = selection.box if selection.chunk == index else None
        sel_lane = selection.lane if selection.chunk == index else None
        key = (id(layout), id(chunk), sel_box, sel_lane)
        if self._layout_key.get(index) == key:
            return
        self._layout_key[index] = key
        self.server.scene.remove_by_name(f"/world/{index}/boxes")
        self.server.scene.remove_by_name(f"/world/{index}/lanes")
        self.server.scene.remove_by_name(f"/world/{index}/lane_selected")
        for k in [k for k in self._boxes if k[0] == index]:
            del self._boxes[k]
        if layout is None:
            return
        self.server.scene.add_frame(f"/world/{index}/boxes", show_axes=False)  # one node to remove them all by
        T = chunk.T_world_chunk
        dyaw = math.atan2(T[1, 0], T[0, 0])
        for i, box in enumerate(layout.boxes):
            centre = _to_world(T, np.asarray([box.center]))[0]
            color = SELECTED_COLOR if i == sel_box else tuple(int(c) for c in semantics.COLORS[box.label])
            handle = self.server.scene.add_box(
                f"/world/{index}/boxes/{box.class_name}_{i}", color=color, dimensions=box.size,
                opacity=0.85 if i == sel_box else BOX_OPACITY, position=centre, wxyz=yaw_quaternion(box.yaw + dyaw))
            handle.on_click(lambda _e, c=index, b=i: self.callbacks.select_box(c, b))
            self._boxes[(index, i)] = handle
        segs, sel = [], []
        for li, lane in enumerate(layout.lanes):
            p = np.c_[lane.points, np.full(len(lane.points), 0.3)]
            s = np.stack([p[:-1], p[1:]], 1)
            (sel if li == sel_lane else segs).append(s)
        for name, parts, color, width in (("lanes", segs, LANE_COLOR, 2.0), ("lane_selected", sel, SELECTED_LANE_COLOR, 5.0)):
            if parts:
                pts = np.concatenate(parts)
                pts = _to_world(T, pts.reshape(-1, 3)).reshape(-1, 2, 3).astype(np.float32)
                self.server.scene.add_line_segments(f"/world/{index}/{name}", pts, color, line_width=width)

    def _show_arrows(self, world: WorldMap | None) -> None:
        """One arrow per free neighbour cell, at the edge of the chunk it would grow from (a cardinal
        neighbour preferred over a diagonal one)."""
        wanted: dict[str, tuple[ChunkIndex, str]] = {}
        if world is not None:
            targets: dict[ChunkIndex, tuple[ChunkIndex, str]] = {}
            for origin in sorted(world.chunks):
                for direction in DIRECTIONS:  # cardinal directions come first in DIRECTIONS
                    target = origin.neighbour(direction)
                    if target not in world.chunks and target not in targets:
                        targets[target] = (origin, direction)
            wanted = {f"{d}_of_{o}": (o, d) for o, d in targets.values()}
        for name in set(self._arrows) - set(wanted):
            self.server.scene.remove_by_name(f"/world/arrows/{name}")
            del self._arrows[name]
        vertices, faces = _arrow_mesh()
        for name, (origin, direction) in wanted.items():
            if name in self._arrows:
                continue
            di, dj = DIRECTIONS[direction]
            centre = np.array([origin.i, origin.j]) * world.stride
            pos = centre + np.array([di, dj]) * (world.stride + 5.0)
            handle = self.server.scene.add_mesh_simple(
                f"/world/arrows/{name}", vertices, faces, color=ARROW_COLOR, side="double",
                position=(float(pos[0]), float(pos[1]), 4.0), wxyz=yaw_quaternion(math.atan2(dj, di)))
            handle.on_click(lambda _e, o=origin, d=direction: self.callbacks.extend(o, d))
            self._arrows[name] = handle

    def _show_gizmo(self, chunks: dict[ChunkIndex, Chunk], layouts: dict[ChunkIndex, Layout],
                    selection: Selection) -> None:
        chunk = chunks.get(selection.chunk) if selection.chunk is not None else None
        layout = layouts.get(selection.chunk, chunk.layout if chunk else None) if chunk else None
        if layout is None or selection.box is None or selection.box >= len(layout.boxes):
            if self._gizmo is not None:
                self._gizmo.remove()
                self._gizmo, self._gizmo_key = None, None
            return
        box = layout.boxes[selection.box]
        key = (selection.chunk, selection.box, box)
        if key == self._gizmo_key:
            return
        T = chunk.T_world_chunk
        centre = _to_world(T, np.asarray([box.center]))[0]
        yaw = box.yaw + math.atan2(T[1, 0], T[0, 0])
        if self._gizmo is None:
            self._gizmo = self.server.scene.add_transform_controls(
                "/world/gizmo", scale=max(box.size) * 0.9 + 1.0, position=centre, wxyz=yaw_quaternion(yaw),
                active_axes=(True, True, False), depth_test=False)
            self._gizmo.on_drag_end(lambda _e: self._gizmo_moved())
        else:
            self._gizmo.position, self._gizmo.wxyz = centre, yaw_quaternion(yaw)
        self._gizmo_key = key

    def _gizmo_moved(self) -> None:
        with self._lock:
            if self._gizmo is None or self._gizmo_key is None:
                return
            index, i, box = self._gizmo_key
            pos = tuple(float(v) for v in self._gizmo.position)
            yaw = quaternion_yaw(self._gizmo.wxyz)
        self.callbacks.move_box(index, i, pos, yaw)

    def _show_lane_handles(self, chunks: dict[ChunkIndex, Chunk], layouts: dict[ChunkIndex, Layout],
                           selection: Selection) -> None:
        """Translation handles (in the ground plane) on the ends and the middle of the selected lane."""
        chunk = chunks.get(selection.chunk) if selection.chunk is not None else None
        layout = layouts.get(selection.chunk, chunk.layout if chunk else None) if chunk else None
        lane = (layout.lanes[selection.lane] if layout is not None and selection.lane is not None
                and selection.lane < len(layout.lanes) else None)
        key = (selection.chunk, selection.lane, lane) if lane is not None else None
        if key is not None and key == self._lane_key:
            return
        self.server.scene.remove_by_name("/world/lane_handles")
        self._lane_handles, self._lane_key = {}, key
        if lane is None:
            return
        self.server.scene.add_frame("/world/lane_handles", show_axes=False)
        for k in lane_handles(lane):
            pos = _to_world(chunk.T_world_chunk, np.array([[*lane.points[k], 0.3]]))[0]
            handle = self.server.scene.add_transform_controls(
                f"/world/lane_handles/{k}", scale=3.0, position=pos, active_axes=(True, True, False),
                disable_rotations=True, depth_test=False)
            handle.on_drag_end(lambda _e, k=k: self._lane_handle_moved(k))
            self._lane_handles[k] = handle

    def _lane_handle_moved(self, point: int) -> None:
        with self._lock:
            if self._lane_key is None or point not in self._lane_handles:
                return
            index, lane_i, _lane = self._lane_key
            pos = tuple(float(v) for v in self._lane_handles[point].position)
        self.callbacks.bend_lane(index, lane_i, point, pos)

    # -- roam mode --------------------------------------------------------------------------------------------
    def roam(self, key: object, gaussians: GaussianScene | None, stitched: Occupancy | None,
             start: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Show the whole world for flying through: the Gaussians (or, without them, the stitched voxels),
        hide the editing nodes, and put each client's camera at `start` (eye, look-at) once per new world."""
        with self._lock, self.server.atomic():
            self.mode = "roam"
            self._frame.visible = False
            if key != self._roam_key:
                self.server.scene.remove_by_name("/roam")
                self.server.scene.add_frame("/roam", show_axes=False)
                if gaussians is not None:
                    g = gaussians.to("cpu")
                    R = _quat_matrices(g.quats.double().numpy())
                    s2 = g.scales.double().numpy() ** 2
                    cov = np.einsum("nij,nj,nkj->nik", R, s2, R).astype(np.float32)
                    self.server.scene.add_gaussian_splats(
                        "/roam/splats", g.means.float().numpy(), cov, g.colors.float().numpy().clip(0, 1),
                        g.opacities.float().numpy().reshape(-1, 1))
                    # the far plane must reach across the sky dome (ops.lifting.sky) from anywhere inside it
                    span = float((g.means - g.means.mean(0)).norm(dim=1).max()) if len(g) else 0.0
                    far = max(ROAM_FAR, 2.5 * span)
                    self.server.initial_camera.far = far
                    for client in self.server.get_clients().values():
                        client.camera.far = far
                elif stitched is not None:
                    centres, labels = surface_voxels(stitched)
                    self.server.scene.add_point_cloud("/roam/voxels", centres, semantics.COLORS[labels],
                                                      point_size=stitched.grid.voxel_size, point_shading="flat")
                self._roam_key = key
                if start is not None:
                    for client in self.server.get_clients().values():
                        client.camera.position, client.camera.look_at = start
        self.server.scene.set_up_direction("+z")

    def edit_mode(self) -> None:
        with self._lock:
            self.mode = "edit"
            self._frame.visible = True
            self.server.scene.remove_by_name("/roam")
            self._roam_key = None


def _quat_matrices(q: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] rotations of unit quaternions (w, x, y, z) float [N, 4]."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)
