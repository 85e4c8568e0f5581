"""One browser session of the editor: its Session (world, undo/redo, autosave), the layout edits not yet
regenerated, the selection, its viewer and its worker; and the flows the page starts (prompt, text,
layout, regenerate, intent, extend, roam).

Chunks are never changed in place (Session's rule): an edit builds a new chunk and a new WorldMap that
shares the untouched chunks.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xscene_core import semantics
from xscene_core.generator import DEFAULT_DESCRIPTION, following
from xscene_core.ops.lane_edit import bend_lane
from xscene_core.ops.preview_look import PAINTS
from xscene_core.session import Session
from xscene_core.types.gaussians import GaussianScene
from xscene_core.types.layout import Box, Layout
from xscene_core.types.scene import DescribedScene, SceneDescription, SceneGraph
from xscene_core.types.world import DIRECTIONS, Chunk, ChunkIndex, WorldMap

from .inputs import SEED_MAX, check_box, check_description_style, check_seed
from .jobs import JobContext, StagePool, Worker
from .pending import PendingEdits
from .viewer import Selection, Viewer, ViewerCallbacks

ORIGIN = ChunkIndex(0, 0)
DEFAULT_STATES = {"car": "parked", "pedestrian": "standing", "bicycle": "parked", "motorcycle": "parked",
                  "bus": "stopped", "truck": "parked", "trailer": "parked", "construction_vehicle": "parked"}


def box_fields(box: Box) -> tuple:
    """The page's fields of a box, as it shows them: x, y (m, 2 decimals), heading (degrees, 1 decimal),
    length, width, height (m, 2 decimals), class name, paint (a PAINTS name, "" for unstated or a
    colour the list lacks)."""
    return (round(box.center[0], 2), round(box.center[1], 2), round(math.degrees(box.yaw), 1),
            round(box.size[0], 2), round(box.size[1], 2), round(box.size[2], 2), box.class_name,
            box.color if box.color in PAINTS else "")


@dataclass(frozen=True)
class WorldCopy:
    """A new WorldMap sharing the chunks of another (so an operation never changes a snapshot's world)."""

    @staticmethod
    def of(world: WorldMap) -> WorldMap:
        return WorldMap(world.stride, dict(world.chunks))


class EditorSession:
    """State and actions of one browser session. Thread-safe: the page, the viewer's callbacks and the
    worker thread all call in. `version` grows with every change the page should show."""

    def __init__(self, pool: StagePool, sessions_root: Path, host: str = "127.0.0.1", viewer_port: int = 8100,
                 session: Session | None = None, share: bool = False) -> None:
        self.pool = pool
        self.session = session or Session.create(sessions_root)
        self.pending = PendingEdits()
        self.selection = Selection(ORIGIN)
        self.words: DescribedScene | None = None  # the description + graph shown in the text boxes
        self.words_version = 0
        self.message = "Type a prompt and press Generate, or upload a layout."
        self.version = 0
        self.gaussians: tuple[tuple, GaussianScene] | None = None  # (world key, scene)
        self.export_path: Path | None = None  # the last export's zip
        self._lock = threading.RLock()
        self.worker = Worker(pool, self._job_changed)
        self._told: object = None  # the finished job whose message was shown
        self.viewer = Viewer(ViewerCallbacks(self._viewer_select, self._viewer_move, self._viewer_extend,
                                             self._viewer_bend), host, viewer_port, share)
        if self.session.world is not None:
            self._words_from_world()
            self.changed(redraw=True)

    def close(self) -> None:
        self.worker.cancel()
        self.viewer.close()

    # -- bookkeeping ---------------------------------------------------------------------------------------
    @property
    def world(self) -> WorldMap | None:
        return self.session.world

    def changed(self, redraw: bool = True) -> None:
        """Something the page shows changed: bump the version, redraw the viewer (edit mode)."""
        with self._lock:
            self.version += 1
            if redraw and self.viewer.mode == "edit":
                self.viewer.show(self.world, self.layouts(), self.selection)

    def _job_changed(self) -> None:
        job = self.worker.job
        if job is not None and not job.active and job is not self._told:
            self._told = job
            self.message = ("✓ " if job.state == "done" else "⚠ ") + job.message
        self.changed(redraw=False)

    def layouts(self) -> dict[ChunkIndex, Layout]:
        """The layout of each chunk as the user sees it: pending edits over the chunk's own layout."""
        world = self.world
        out = {i: c.layout for i, c in (world.chunks.items() if world else ()) if c.layout is not None}
        out.update(self.pending)
        return out

    def chunk(self, index: ChunkIndex | None = None) -> Chunk | None:
        world = self.world
        index = index or self.selection.chunk or ORIGIN
        return world.chunks.get(index) if world is not None else None

    def _set_world(self, world: WorldMap | None) -> None:
        self.session.set_world(world)
        self.changed()

    def _words_from_world(self) -> None:
        chunk = self.chunk(ORIGIN) or (next(iter(self.world.chunks.values())) if self.world and self.world.chunks else None)
        if chunk is not None and chunk.description is not None and chunk.graph is not None:
            self.words = DescribedScene(chunk.description, chunk.graph)
            self.words_version += 1

    def say(self, text: str) -> None:
        self.message = text
        self.changed(redraw=False)

    # -- selection and layout edits (pending until Regenerate) ---------------------------------------------
    def select(self, index: ChunkIndex, box: int | None = None, lane: int | None = None) -> None:
        with self._lock:
            self.selection = Selection(index, box, lane)
        self.changed()

    def _viewer_select(self, index: ChunkIndex, box: int) -> None:
        self.select(index, box)

    def _viewer_move(self, index: ChunkIndex, i: int, world_xyz: tuple[float, float, float], world_yaw: float) -> None:
        chunk = self.chunk(index)
        if chunk is None:
            return
        T = chunk.T_world_chunk
        local = np.linalg.inv(T) @ np.array([*world_xyz, 1.0])
        box = self.layouts()[index].boxes[i]
        yaw = world_yaw - math.atan2(T[1, 0], T[0, 0])
        try:
            self.update_box(index, i, replace(box, center=(local[0], local[1], box.center[2]), yaw=_wrap(yaw)))
        except ValueError as err:  # dragged off the chunk: say so, keep the box where it was
            self.say(f"⚠ {err}")
            self.changed()

    def _viewer_bend(self, index: ChunkIndex, lane: int, point: int, world_xyz: tuple[float, float, float]) -> None:
        chunk = self.chunk(index)
        if chunk is None:
            return
        local = np.linalg.inv(chunk.T_world_chunk) @ np.array([*world_xyz, 1.0])
        old = self.layouts()[index].lanes[lane].points[point]
        self.bend_lane(index, lane, point, float(local[0] - old[0]), float(local[1] - old[1]))

    def _viewer_extend(self, origin: ChunkIndex, direction: str) -> None:
        try:
            self.extend(origin, direction)
        except (RuntimeError, ValueError) as err:
            self.say(str(err))

    def _edit_layout(self, index: ChunkIndex, layout: Layout, note: str) -> None:
        with self._lock:
            if self.chunk(index) is None:
                raise ValueError(f"there is no chunk {index} to edit")
            self.pending.set(index, layout, note)
            self.message = f"{note} ({sum(1 for _ in self.pending)} chunk(s) edited): press Regenerate to apply."
        self.changed()

    def update_box(self, index: ChunkIndex, i: int, box: Box) -> None:
        check_box(box)
        layout = self.layouts()[index]
        boxes = list(layout.boxes)
        boxes[i] = box
        self._edit_layout(index, replace(layout, boxes=tuple(boxes)), f"{box.class_name}_{i} changed")

    def set_box(self, index: ChunkIndex, i: int, x: float, y: float, yaw_deg: float, length: float, width: float,
                height: float, class_name: str, paint: str | None = None) -> None:
        """The page's box fields -> the box (ValueError with the field's problem for bad numbers or an
        unknown paint). paint: a Box.color name (PAINTS; "" = unstated); None keeps the box's own while
        its class stays, and so does "" when the box's own is a name the Paint list lacks (the page shows
        that as unstated; applying other fields must not erase it)."""
        old = self.layouts()[index].boxes[i]
        label = semantics.class_id(class_name)
        ground = old.center[2] - old.size[2] / 2
        # a field the user left as shown keeps the box's exact value: the page shows rounded numbers, and
        # re-setting them would move the box by millimetres and resample the voxels around it
        kept = [typed == shown for typed, shown in zip((x, y, yaw_deg, length, width, height), box_fields(old))]
        x, y, yaw, length, width, height = (
            exact if keep else typed for typed, keep, exact in
            zip((x, y, math.radians(yaw_deg), length, width, height), kept,
                (old.center[0], old.center[1], old.yaw, *old.size)))
        z = old.center[2] if kept[5] else ground + height / 2
        if paint is None or (paint == "" and old.color not in PAINTS):
            paint = old.color if label == old.label else ""
        elif paint and paint not in PAINTS:
            raise ValueError(f"paint {paint!r} is not one of {', '.join(PAINTS)}")
        box = Box((x, y, z), (length, width, height), yaw, label,
                  old.state if label == old.label else DEFAULT_STATES.get(class_name, "static"), old.track_id, paint)
        self.update_box(index, i, box)

    def delete_box(self, index: ChunkIndex, i: int) -> None:
        layout = self.layouts()[index]
        gone = layout.boxes[i]
        self.selection = Selection(index)
        self._edit_layout(index, replace(layout, boxes=layout.boxes[:i] + layout.boxes[i + 1:]),
                          f"{gone.class_name}_{i} deleted")

    def add_box(self, index: ChunkIndex, class_name: str, x: float, y: float, yaw_deg: float = 0.0) -> int:
        """A new box of a class (typical size from semantics.SIZES) standing on the ground at (x, y)."""
        layout = self.layouts()[index]
        label = semantics.class_id(class_name)
        if label not in semantics.OBJECT_IDS:
            raise ValueError(f"{class_name} is not an object class; pick one of "
                             f"{', '.join(semantics.NAMES[i] for i in semantics.OBJECT_IDS)}")
        sr = semantics.SIZES[label]
        size = tuple(float(np.mean(r)) for r in (sr.length, sr.width, sr.height))
        grounds = [b.center[2] - b.size[2] / 2 for b in layout.boxes]
        ground = float(np.median(grounds)) if grounds else 0.2
        ids = {b.track_id for b in layout.boxes}
        n = next(k for k in range(len(ids) + 1) if f"user_{k}" not in ids)  # a deleted one's id is free again
        box = Box((x, y, ground + size[2] / 2), size, math.radians(yaw_deg), label,
                  DEFAULT_STATES.get(class_name, "static"), f"user_{n}")
        check_box(box)
        self.selection = Selection(index, len(layout.boxes))
        self._edit_layout(index, replace(layout, boxes=layout.boxes + (box,)), f"{class_name} added")
        return len(layout.boxes)

    def move_lane(self, index: ChunkIndex, i: int, dx: float, dy: float) -> None:
        layout = self.layouts()[index]
        lanes = list(layout.lanes)
        lanes[i] = replace(lanes[i], points=lanes[i].points + np.array([dx, dy]))
        self.selection = Selection(index, None, i)
        self._edit_layout(index, replace(layout, lanes=tuple(lanes)), f"lane {i} moved by ({dx:g}, {dy:g}) m")

    def bend_lane(self, index: ChunkIndex, i: int, point: int, dx: float, dy: float) -> None:
        """Drag point `point` of lane i by (dx, dy) metres; its neighbours along the lane follow
        (ops.lane_edit.bend_lane)."""
        layout = self.layouts()[index]
        lanes = list(layout.lanes)
        lanes[i] = bend_lane(lanes[i], point, (dx, dy))
        self.selection = Selection(index, None, i)
        self._edit_layout(index, replace(layout, lanes=tuple(lanes)),
                          f"lane {i} bent at point {point} by ({dx:.1f}, {dy:.1f}) m")

    def delete_lane(self, index: ChunkIndex, i: int) -> None:
        layout = self.layouts()[index]
        self.selection = Selection(index)
        self._edit_layout(index, replace(layout, lanes=layout.lanes[:i] + layout.lanes[i + 1:]), f"lane {i} deleted")

    def discard_edits(self) -> None:
        with self._lock:
            self.pending.clear()
            self.message = "Edits discarded."
        self.changed()

    # -- history and files -------------------------------------------------------------------------------------
    def undo(self) -> None:
        """Take back the last pending edit, or (with none) the last change to the world."""
        self._require_idle()  # a running Regenerate holds the pending edits it is applying
        if not self._pending_step(self.pending.undo, "Undid"):
            self._history(self.session.undo, "Undid")

    def redo(self) -> None:
        """Put back the last pending edit taken back, or the last world change taken back."""
        self._require_idle()
        if not self._pending_step(self.pending.redo, "Redid"):
            if self.pending:  # a world redo replaces the chunks these edits were made on
                raise RuntimeError("regenerate or discard the pending edits before redoing a change to the world")
            self._history(self.session.redo, "Redid")

    def _pending_step(self, step, verb: str) -> bool:
        with self._lock:
            note = step()
            if note is None:
                return False
            sel, layout = self.selection, self.layouts().get(self.selection.chunk)
            if layout is None or (sel.box is not None and sel.box >= len(layout.boxes)) or (
                    sel.lane is not None and sel.lane >= len(layout.lanes)):
                self.selection = Selection(sel.chunk or ORIGIN)  # the selected box or lane is gone
            left = f" ({len(self.pending)} chunk(s) edited, not regenerated yet)" if self.pending else ""
            self.message = f"{verb} '{note}'{left}."
        self.changed()
        return True

    def _history(self, step, verb: str) -> None:
        self._require_idle()
        label = step()
        with self._lock:
            self.pending.clear()
            self.message = f"{verb} '{label}'." if label else f"Nothing to {'undo' if verb == 'Undid' else 'redo'}."
            self._words_from_world()
        self.changed()

    def load(self, directory: Path, name: str | None = None) -> None:
        """Replace the world by the one saved in `directory` (undoable); `name` is what the message calls it
        (default: the folder's name)."""
        self._require_idle()
        self.session.load_world(directory)
        with self._lock:
            self.pending.clear()
            self.selection = Selection(ORIGIN if ORIGIN in self.world.chunks else min(self.world.chunks))
            self._words_from_world()
            self.message = f"Loaded {len(self.world.chunks)} chunk(s) from {name or directory.name}."
        self.viewer.edit_mode()
        self.changed()

    def _require_idle(self) -> None:
        job = self.worker.job
        if job is not None and job.active:
            raise RuntimeError(f"'{job.label}' is running: wait for it or press Cancel first")

    # -- flows (each a job in the worker) ---------------------------------------------------------------------
    def _start(self, label: str, stages: tuple[str, ...], fn, images: str = "preview") -> None:
        self._require_idle()
        self.session.record(label)
        before, pending = self.world, self.pending.copy()
        self.viewer.edit_mode()

        def rollback(job, state: str, message: str) -> str:
            # A cancelled or failed job keeps what it finished, never a half-made chunk: a world it left
            # holding a draft (boxes and lanes shown before their voxels) goes back to what it was, with the
            # pending edits the job had cleared; a world it did not touch forgets the job's undo point.
            with self._lock:
                if self.world is before:
                    self.session.drop_record()
                    return f"{job.label}: cancelled; the world is unchanged." if state == "cancelled" else message
                if not _new_draft(self.world, before):
                    return message
                self.session.revert()
                self.pending = pending
                self.selection = Selection(ORIGIN if self.world is None or ORIGIN in self.world.chunks
                                           else min(self.world.chunks))
                self._words_from_world()
            self.changed()
            return (f"{job.label}: cancelled before its chunk was finished; the world is as it was."
                    if state == "cancelled" else f"{message} The world is as it was before.")
        self.worker.start(label, stages, fn, images, on_cancel=rollback)

    def generate(self, prompt: str, seed: int, images: str) -> None:
        """Prompt -> description + graph -> layout -> occupancy + renders -> images -> Gaussians, each shown
        and autosaved as it finishes."""
        prompt = prompt.strip()
        if not prompt:
            raise ValueError("type a prompt first (or pick an example)")
        seed = check_seed(seed)
        self.session.info.prompt, self.session.info.seed, self.session.info.images = prompt, seed, images

        def run(ctx: JobContext) -> str:
            scene = ctx.gen.describe(prompt, seed, ctx.progress)
            with self._lock:
                self.words = scene
                self.words_version += 1
            return self._from_words(ctx, scene, seed, images)
        self._start(f"generate '{prompt[:40]}'", self._stages(images, describe=True), run, images)

    def generate_from_text(self, description_json: str, graph_text: str, seed: int, images: str) -> None:
        """The edited description (JSON) and scene graph (text) -> a new chunk. Raises ValueError with the
        parse error for text that does not parse, or a time of day or weather the models do not know."""
        seed = check_seed(seed)
        try:
            description = SceneDescription.from_json_dict(json.loads(description_json))
        except json.JSONDecodeError as err:
            raise ValueError(f"the description is not valid JSON: {err}") from None
        check_description_style(description)
        try:
            graph = SceneGraph.from_text(graph_text)
        except ValueError as err:
            raise ValueError(f"the scene graph does not parse: {err}") from None
        scene = DescribedScene(description, graph)
        self.words = scene
        self.words_version += 1
        self._start("generate from the edited text", self._stages(images),
                    lambda ctx: self._from_words(ctx, scene, seed, images), images)

    def _from_words(self, ctx: JobContext, scene: DescribedScene, seed: int, images: str) -> str:
        layout = ctx.gen.layout(scene.graph, seed, ctx.progress)
        draft = Chunk(np.eye(4), layout=layout, graph=scene.graph, description=scene.description)
        with self._lock:
            self.pending.clear()
            self.selection = Selection(ORIGIN)
        self._set_world(ctx.gen.new_world(draft))  # boxes and lanes show (and are saved) before the voxels
        chunk = ctx.gen.from_layout(layout, scene.description, seed, "none", ctx.progress)
        chunk = replace(chunk, graph=scene.graph)
        return self._finish_chunk(ctx, chunk, seed, images)

    def generate_from_layout(self, layout: Layout, description: SceneDescription | None, seed: int, images: str,
                             source: str) -> None:
        """An uploaded layout (project JSON or a nuScenes sample) -> a new chunk."""
        seed = check_seed(seed)
        description = description or DEFAULT_DESCRIPTION

        def run(ctx: JobContext) -> str:
            with self._lock:
                self.pending.clear()
                self.selection = Selection(ORIGIN)
                self.words = None  # an uploaded layout has no scene graph: the text boxes are emptied
                self.words_version += 1
            self._set_world(ctx.gen.new_world(Chunk(np.eye(4), layout=layout, description=description)))
            ctx.done("layout")  # given, not generated
            chunk = ctx.gen.from_layout(layout, description, seed, "none", ctx.progress)
            return self._finish_chunk(ctx, chunk, seed, images)
        self._start(f"generate from {source}", self._stages(images), run, images)

    def _finish_chunk(self, ctx: JobContext, chunk: Chunk, seed: int, images: str) -> str:
        """Occupancy + renders are in `chunk`: show them, then the images, then the Gaussians."""
        world = ctx.gen.new_world(chunk)
        self._set_world(world)
        chunk = self._images(ctx, chunk, seed, images)
        world = ctx.gen.new_world(chunk)
        self._set_world(world)
        self._lift(ctx, world)
        return (f"Chunk ready: {len(chunk.layout.boxes)} boxes, {len(chunk.layout.lanes)} lanes. Click a box to "
                "edit it, an orange arrow to extend the world, Roam to fly through.")

    def _images(self, ctx: JobContext, chunk: Chunk, seed: int, images: str, reference: Chunk | None = None) -> Chunk:
        """The chunk with its preview look and, in "diffusion" mode, its generated views (extrapolated from
        `reference`'s generated views when it has them: the neighbour an extension grows from)."""
        if images == "none":
            ctx.done("images", "skipped")
            return chunk
        ctx.check()
        preview = ctx.gen.render_stage.preview(chunk.views, chunk.description, chunk.layout, seed=seed,
                                              occupancy=chunk.occupancy)
        chunk = replace(chunk, preview=preview)
        if images == "diffusion":
            chunk = replace(chunk, images=ctx.gen.images(chunk, seed, ctx.progress, reference=reference))
        ctx.done("images")
        return chunk

    def _lift(self, ctx: JobContext, world: WorldMap) -> None:
        if "gaussians" not in ctx.job.stages:
            return
        if not self.pool.gaussians_available:
            ctx.done("gaussians", "skipped")
            return
        scene = ctx.gen.gaussians(world, ctx.progress)
        with self._lock:
            self.gaussians = (self.world_key(world), scene)
        ctx.done("gaussians")

    def _stages(self, images: str, describe: bool = False) -> tuple[str, ...]:
        stages = ("describe",) if describe else ()
        stages += ("layout", "occupancy", "render")
        if images != "none":
            stages += ("images",)
        return stages + ("gaussians",)

    def regenerate(self, seed: int, images: str) -> None:
        """Apply the pending layout edits: each edited chunk is regenerated around what changed (chunks
        that never got their voxels are generated from their layout)."""
        seed = check_seed(seed)
        edits = dict(self.pending)
        if not edits:
            raise ValueError("nothing to regenerate: edit a box or a lane first")

        def run(ctx: JobContext) -> str:
            world = WorldCopy.of(self.world)
            notes = []
            for index, layout in edits.items():
                old = world[index]
                if old.occupancy is None:
                    # as Generator.edit has it (the road map from_layout adds changes no box or lane)
                    graph, d = following(old, layout)
                    new = ctx.gen.from_layout(layout, d, seed, "none", ctx.progress)
                    new = replace(new, graph=graph, T_world_chunk=old.T_world_chunk)
                    notes.append(f"{index}: generated")
                else:
                    result = ctx.gen.edit(old, layout, seed, "none", progress=ctx.progress)
                    new = result.chunk
                    notes.append(f"{index}: " + "; ".join(result.summary))
                new = self._images(ctx, new, seed, images)
                world.chunks[index] = new
            with self._lock:
                for index in edits:
                    self.pending.applied(index, edits[index])
            self._set_world(world)
            with self._lock:  # the text tab shows the first chunk's graph, which followed its edits
                self._words_from_world()
            self._lift(ctx, world)
            return "Regenerated. " + " | ".join(notes)
        self._start("regenerate the edits", ("occupancy", "render") + (("images",) if images != "none" else ()),
                    run, images)

    def apply_intent(self, text: str, seed: int, images: str) -> None:
        """An edit said in words on the selected chunk."""
        text = text.strip()
        if not text:
            raise ValueError("type an edit, e.g. 'remove the nearest parked car'")
        seed = check_seed(seed)
        index = self.selection.chunk or ORIGIN
        chunk = self.chunk(index)
        if chunk is None or chunk.occupancy is None:
            raise ValueError("generate a chunk first, then say what to change")
        if index in self.pending:  # the edit would start from the regenerated chunk and drop them
            raise ValueError(f"chunk {index} has box or lane edits not regenerated yet: press Regenerate (or "
                             "Discard) first, then say the edit")

        def run(ctx: JobContext) -> str:
            result = ctx.gen.edit_intent(chunk, text, seed, "none", ctx.progress)
            new = self._images(ctx, result.chunk, seed, images)
            world = WorldCopy.of(self.world)
            world.chunks[index] = new
            with self._lock:
                self.pending.applied(index)
                if index == ORIGIN and new.graph is not None:
                    self.words = DescribedScene(new.description, new.graph)
                    self.words_version += 1
            self._set_world(world)
            self._lift(ctx, world)
            return f"Edit '{text}' applied to {index}: " + "; ".join(result.summary)
        self._start(f"edit '{text[:40]}'", ("layout", "occupancy", "render") + (("images",) if images != "none" else ()),
                    run, images)

    def extend(self, origin: ChunkIndex, direction: str, seed: int | None = None, images: str | None = None) -> None:
        """Outpaint the neighbour of `origin` in `direction` (types.world.DIRECTIONS)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}")
        world = self.world
        if world is None or origin not in world.chunks or world[origin].occupancy is None:
            raise ValueError("generate a chunk first; the world grows from finished chunks")
        target = origin.neighbour(direction)
        if target in world.chunks:
            raise ValueError(f"there is already a chunk {direction} of {origin}")
        seed = (self.session.info.seed + len(world.chunks)) % (SEED_MAX + 1) if seed is None else check_seed(seed)
        images = images or self.session.info.images

        def run(ctx: JobContext) -> str:
            grown = WorldCopy.of(self.world)
            index = ctx.gen.extend(grown, origin, direction, seed, "none", progress=ctx.progress)
            grown.chunks[index] = self._images(ctx, grown[index], seed, images, reference=grown[origin])
            with self._lock:
                self.selection = Selection(index)
            self._set_world(grown)
            self._lift(ctx, grown)
            continued = images == "diffusion" and grown[origin].images is not None
            return (f"Extended {direction} of {origin}: the world has {len(grown.chunks)} chunks." +
                    (f" Its camera images continue {origin}'s across the seam." if continued else ""))
        self._start(f"extend {direction} of {origin}", ("occupancy", "render") +
                    (("images",) if images != "none" else ()) + ("gaussians",), run, images)

    def roam(self) -> None:
        """Show the Gaussians of the whole world (lifting them first when the world changed)."""
        world = self.world
        if world is None or not any(c.occupancy is not None for c in world.chunks.values()):
            raise ValueError("generate a chunk first; then roam through it")
        key = self.world_key(world)
        if self.gaussians is not None and self.gaussians[0] == key or not self.pool.gaussians_available:
            self._show_roam(world)
            return

        def run(ctx: JobContext) -> str:
            self._lift(ctx, world)
            self._show_roam(world)
            return "Roaming: fly with WASD (Q/E down/up) and the mouse in the viewer."
        self._require_idle()
        self.worker.start("lift the world to Gaussians", ("gaussians",), run)

    def _show_roam(self, world: WorldMap) -> None:
        key = self.world_key(world)
        scene = self.gaussians[1] if self.gaussians is not None and self.gaussians[0] == key else None
        stitched = self.pool.generator().stitch(world) if scene is None else None  # no Gaussian stage: voxels
        origin = world.pose_of(min(world.chunks, key=lambda i: abs(i.i) + abs(i.j)))[:3, 3]
        start = (origin + np.array([-20.0, 0.0, 3.0]), origin + np.array([20.0, 0.0, 0.0]))
        self.viewer.roam(key, scene, stitched, start)
        self.say("Roaming" + ("" if scene is not None else " (voxels: the Gaussian stage is not installed)") +
                 ": fly with WASD (Q/E down/up) and the mouse in the viewer. Press Edit mode to return.")

    def leave_roam(self) -> None:
        self.viewer.edit_mode()
        self.say("Edit mode.")

    @staticmethod
    def world_key(world: WorldMap) -> tuple:
        return tuple((i, id(c)) for i, c in sorted(world.chunks.items()))


def _new_draft(world: WorldMap | None, before: WorldMap | None) -> bool:
    """Whether `world` holds a chunk without voxels that `before` did not hold (a flow's draft)."""
    old = before.chunks if before is not None else {}
    return world is not None and any(c.occupancy is None and old.get(i) is not c for i, c in world.chunks.items())


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
