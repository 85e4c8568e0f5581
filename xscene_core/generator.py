"""The generator: the stages wired into one API (DESIGN.md "The pipeline").

    gen = Generator()                                     # shipped checkpoints, stages loaded on first use
    chunk = gen.generate("a rainy night on a downtown crossroad with parked cars", seed=0)
    world = gen.new_world(chunk)                          # chunk at ChunkIndex(0, 0)
    index = gen.extend(world, ChunkIndex(0, 0), "east", seed=1)     # outpaint a neighbour, added to world
    result = gen.edit(chunk, new_layout, seed=2)          # regenerate only around what changed
    result = gen.edit_intent(chunk, "remove the parked car", seed=2)
    scene = gen.gaussians(world)                          # one GaussianScene for all chunks

Every long call takes `progress(Progress) -> bool | None`: called after each step of each stage; returning
False cancels the call (GenerationCancelled), as does `cancel()` from another thread. A call either
returns a complete result or raises, leaving its inputs unchanged (edits and extensions build new chunks;
`extend` adds to the world only at the end).

Image modes: "preview" (the fast procedural look of the renders), "diffusion" (the multi-view image
model; extension views continue the neighbour's appearance) or "none" (semantic / depth renders only).
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .types.layout import Layout
from .types.occupancy import GridSpec, Occupancy
from .types.scene import DescribedScene, SceneDescription, SceneGraph
from .types.world import Chunk, ChunkIndex, WorldMap

STAGES = ("describe", "layout", "occupancy", "render", "images", "gaussians")
IMAGE_MODES = ("preview", "diffusion", "none")
WORLD_STRIDE = 40.0  # metres between chunk centres: neighbours overlap by half a chunk, what outpainting holds
EDIT_MARGIN = 4.0  # metres around an edited box / lane that local regeneration resamples
DEFAULT_DESCRIPTION = SceneDescription("noon", "sunny", "suburban")


@dataclass(frozen=True)
class Progress:
    """One step of one stage: stage in STAGES, step of total (1-based)."""

    stage: str
    step: int
    total: int

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressFn = Callable[[Progress], "bool | None"]
StageFn = Callable[[str, Chunk], None]  # (finished stage, the chunk so far)


class GenerationCancelled(RuntimeError):
    """Raised when a progress callback returned False or cancel() was called."""


@dataclass
class EditResult:
    """An edited chunk (a new object; the input chunk is unchanged), the layout change and the BEV columns
    (bool [X, Y]) that were regenerated (all False when only words or style changed)."""

    chunk: Chunk
    region: np.ndarray
    summary: tuple[str, ...] = ()


def _public(method):
    """A public Generator call (see Generator._call)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._call():
            return method(self, *args, **kwargs)

    return wrapper


class Generator:
    """Holds the stages (any can be passed in; the defaults load the shipped checkpoints on first use)."""

    def __init__(self, describe=None, layout=None, occupancy=None, render=None, multiview=None, gaussians=None,
                 stride: float = WORLD_STRIDE) -> None:
        self._stages = {"describe": describe, "layout": layout, "occupancy": occupancy, "render": render,
                        "multiview": multiview, "gaussians": gaussians}
        self.stride = float(stride)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._depth = threading.local()

    # -- stages ------------------------------------------------------------------------------------------
    def _stage(self, name: str):
        with self._lock:
            if self._stages[name] is None:
                self._stages[name] = _default_stage(name)
            return self._stages[name]

    describe_stage = property(lambda self: self._stage("describe"))
    layout_stage = property(lambda self: self._stage("layout"))
    occupancy_stage = property(lambda self: self._stage("occupancy"))
    render_stage = property(lambda self: self._stage("render"))
    multiview_stage = property(lambda self: self._stage("multiview"))
    gaussian_stage = property(lambda self: self._stage("gaussians"))

    def cancel(self) -> None:
        """Stop the running call after its current step (it raises GenerationCancelled)."""
        self._cancel.set()
        for stage in self._stages.values():
            if stage is not None and hasattr(stage, "interrupt"):
                stage.interrupt()

    @contextmanager
    def _call(self):
        """Marks a public call: the outermost one starts with a cleared cancel flag, so a cancel during the
        call reaches every stage it runs and the next call runs normally."""
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self._cancel.clear()
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth

    def _reporter(self, stage: str, progress: ProgressFn | None) -> Callable[[int, int], bool]:
        def report(step: int, total: int) -> bool:
            if self._cancel.is_set():
                return False
            if progress is not None and progress(Progress(stage, int(step), int(total))) is False:
                self._cancel.set()
                return False
            return True

        return report

    def _run(self, stage: str, fn):
        """Run one stage, turning its own interrupt exception into GenerationCancelled."""
        if self._cancel.is_set():
            raise GenerationCancelled(f"cancelled before {stage}")
        try:
            return fn()
        except Exception as err:  # each stage has its own interrupt type; all mean the same here
            if self._cancel.is_set() or "Interrupted" in type(err).__name__:
                raise GenerationCancelled(f"{stage} cancelled") from None
            raise

    # -- single stages -----------------------------------------------------------------------------------------
    @_public
    def describe(self, prompt: str, seed: int = 0, progress: ProgressFn | None = None) -> DescribedScene:
        """prompt -> description + scene graph (LLM when configured, else the offline composer)."""
        report = self._reporter("describe", progress)
        scene = self._run("describe", lambda: self.describe_stage(prompt, seed=seed))
        report(1, 1)
        return scene

    @_public
    def layout(self, graph: SceneGraph, seed: int = 0, progress: ProgressFn | None = None) -> Layout:
        """scene graph -> boxes and lanes (layout diffusion)."""
        return self._run("layout", lambda: self.layout_stage(graph, seed=seed,
                                                             step_callback=self._reporter("layout", progress)))

    @_public
    def occupancy(self, chunk: Chunk, seed: int = 0, progress: ProgressFn | None = None) -> Chunk:
        """A copy of the chunk with occupancy + triplane sampled for its layout and description."""
        if chunk.layout is None:
            raise ValueError("Generator.occupancy: the chunk has no layout")
        d = chunk.description
        out = self._run("occupancy", lambda: self.occupancy_stage(
            chunk.layout, d.caption() if d else None, seed=seed, environment=d.environment if d else None,
            step_callback=self._reporter("occupancy", progress)))
        return replace(chunk, occupancy=out.occupancy, triplane=out.triplane, views=None, preview=None, images=None)

    @_public
    def render(self, chunk: Chunk, images: str = "preview", seed: int = 0, progress: ProgressFn | None = None,
               reference: Chunk | None = None) -> Chunk:
        """A copy of the chunk with its six views rendered (semantic, depth) and, by `images`, the preview
        look and/or the diffusion images (`reference`: a neighbour whose images the new views continue)."""
        if images not in IMAGE_MODES:
            raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
        if chunk.occupancy is None:
            raise ValueError("Generator.render: the chunk has no occupancy")
        render = self.render_stage
        report = self._reporter("render", progress)
        views = self._run("render", lambda: render(chunk.occupancy, callback=report))
        out = replace(chunk, views=views, preview=None, images=None)
        if images == "none":
            return out
        out.preview = render.preview(views, chunk.description, chunk.layout, seed=seed, occupancy=chunk.occupancy)
        if images == "diffusion":
            out.images = self.images(out, seed=seed, progress=progress, reference=reference)
        return out

    @_public
    def images(self, chunk: Chunk, seed: int = 0, progress: ProgressFn | None = None, reference: Chunk | None = None):
        """The diffusion model's six views of a rendered chunk (MultiViewImages); with a `reference`
        neighbour that has images, extrapolated from its overlapping view."""
        if chunk.views is None:
            raise ValueError("Generator.images: render the chunk first (it has no views)")
        from .stages.multiview import chunk_images

        stage = self.multiview_stage
        report = self._reporter("images", progress)
        return self._run("images", lambda: chunk_images(stage, chunk, reference, seed, report))

    # -- whole chunks ------------------------------------------------------------------------------------------
    @_public
    def generate(self, prompt: str, seed: int = 0, images: str = "preview", progress: ProgressFn | None = None,
                 on_stage: StageFn | None = None) -> Chunk:
        """prompt -> a complete chunk (description, graph, layout, occupancy, views, images), at the
        world origin. on_stage(stage, partial chunk) after each finished stage, to show it early."""
        scene = self.describe(prompt, seed, progress)
        if on_stage is not None:
            on_stage("describe", Chunk(np.eye(4), graph=scene.graph, description=scene.description))
        return self._from_scene(scene, seed, images, progress, on_stage)

    @_public
    def from_graph(self, scene: DescribedScene, seed: int = 0, images: str = "preview",
                   progress: ProgressFn | None = None, on_stage: StageFn | None = None) -> Chunk:
        """description + scene graph (e.g. edited by a user) -> a complete chunk."""
        return self._from_scene(scene, seed, images, progress, on_stage)

    def _from_scene(self, scene: DescribedScene, seed: int, images: str, progress: ProgressFn | None,
                    on_stage: StageFn | None) -> Chunk:
        from .llm.scene_text import painted_layout

        layout = with_road_map(self.layout(scene.graph, seed, progress), scene.description)
        layout = painted_layout(layout, scene.description, scene.graph)  # "a red car": its box is painted red
        chunk = Chunk(np.eye(4), layout=layout, graph=scene.graph, description=scene.description)
        if on_stage is not None:
            on_stage("layout", chunk)
        return self._from_layout_chunk(chunk, seed, images, progress, on_stage)

    def _from_layout_chunk(self, chunk: Chunk, seed: int, images: str, progress: ProgressFn | None,
                           on_stage: StageFn | None) -> Chunk:
        chunk = self.occupancy(chunk, seed, progress)
        if on_stage is not None:
            on_stage("occupancy", chunk)
        chunk = self.render(chunk, images, seed, progress)
        if on_stage is not None:
            on_stage("render", chunk)
        return chunk

    @_public
    def from_layout(self, layout: Layout, description: SceneDescription | None = None, seed: int = 0,
                    images: str = "preview", progress: ProgressFn | None = None,
                    on_stage: StageFn | None = None) -> Chunk:
        """A user's layout (chunk frame; a project JSON or a nuScenes sample) -> a complete chunk."""
        if not isinstance(layout, Layout):
            raise ValueError(f"Generator.from_layout: expected a Layout, got {type(layout).__name__}")
        description = description or DEFAULT_DESCRIPTION
        chunk = Chunk(np.eye(4), layout=with_road_map(layout, description), description=description)
        return self._from_layout_chunk(chunk, seed, images, progress, on_stage)

    # -- edits ---------------------------------------------------------------------------------------------------
    @_public
    def edit(self, chunk: Chunk, layout: Layout, seed: int = 0, images: str = "preview",
             description: SceneDescription | None = None, margin: float = EDIT_MARGIN,
             progress: ProgressFn | None = None) -> EditResult:
        """The chunk with a new layout (boxes moved, added, removed; lanes changed): only the latent cells
        within `margin` metres of what changed are resampled, every voxel outside that region is kept; then
        the views are rendered again. The scene graph follows the edit, and so does the description unless
        one is given (llm.scene_text.description_following). A new description alone re-renders without
        touching the voxels."""
        from .ops.layout_diff import change_distance, layout_change

        if chunk.occupancy is None or chunk.layout is None:
            raise ValueError("Generator.edit: the chunk has no occupancy or layout to edit")
        if not isinstance(layout, Layout):
            raise ValueError(f"Generator.edit: expected a Layout, got {type(layout).__name__}")
        stage = self.occupancy_stage
        d = description or chunk.description
        change = layout_change(chunk.layout, layout)
        if change.lanes:  # the road areas follow the lanes
            layout = with_road_map(layout, d, force=True)
            change = layout_change(chunk.layout, layout)
        region = change_distance(change, stage.grid) <= margin
        graph, followed = following(chunk, layout, stage.grid)
        d = description or followed
        new = replace(chunk, layout=layout, description=d, graph=graph)
        if region.any():
            triplane = chunk.triplane if chunk.triplane is not None else stage.encode(chunk.occupancy)
            out = self._run("occupancy", lambda: stage.regenerate(
                triplane, chunk.occupancy, region, layout, d.caption() if d else None, seed=seed,
                environment=d.environment if d else None, step_callback=self._reporter("occupancy", progress)))
            new = replace(new, occupancy=out.occupancy, triplane=out.triplane)
        summary = (f"{len(change.removed)} boxes removed or moved, {len(change.added)} added or moved, "
                   f"{len(change.lanes)} lanes and {len(change.polygons)} areas changed; "
                   f"{region.mean():.1%} of the chunk regenerated",)
        return EditResult(self.render(new, images, seed, progress), region, summary)

    @_public
    def edit_intent(self, chunk: Chunk, text: str, seed: int = 0, images: str = "preview",
                    progress: ProgressFn | None = None) -> EditResult:
        """An edit said in words ("remove the parked truck", "make it a rainy night"): the scene graph is
        edited (llm.intents), boxes of unchanged objects are kept, changed ones are laid out again, and the
        occupancy is regenerated around them. Raises llm.intents.IntentError for an edit it cannot apply."""
        from .llm.intents import apply_intent

        if chunk.graph is None or chunk.description is None:
            raise ValueError("Generator.edit_intent: the chunk has no scene graph / description to edit "
                             "(a chunk made from an uploaded layout is edited through its boxes)")
        result = apply_intent(text, chunk.description, chunk.graph, seed=seed)
        changed = set(result.changed)
        if result.road_changed or not result.changed:
            layout = (with_road_map(self.layout(result.graph, seed, progress), result.description)
                      if result.road_changed else chunk.layout)
        else:
            fresh = self.layout(result.graph, seed, progress)
            kept = {b.track_id: b for b in chunk.layout.boxes if b.track_id not in changed}
            boxes = tuple(kept.get(o.node_id) or next(b for b in fresh.boxes if b.track_id == o.node_id)
                          for o in result.graph.objects)
            layout = replace(chunk.layout, boxes=boxes)
        from .llm.scene_text import painted_layout

        layout = painted_layout(layout, result.description, result.graph)  # new or re-laid-out boxes take their colours
        edited = replace(chunk, graph=result.graph)
        out = self.edit(edited, layout, seed, images, description=result.description, progress=progress)
        out.summary = tuple(result.summary) + out.summary
        return out

    # -- the world ---------------------------------------------------------------------------------------------------
    def new_world(self, chunk: Chunk) -> WorldMap:
        """A world holding `chunk` at ChunkIndex(0, 0) (the chunk is re-posed there)."""
        world = WorldMap(self.stride)
        chunk.T_world_chunk = world.pose_of(ChunkIndex(0, 0))
        world.add(ChunkIndex(0, 0), chunk)
        return world

    @_public
    def extend(self, world: WorldMap, origin: ChunkIndex, direction: str, seed: int = 0, images: str = "preview",
               layout: Layout | None = None, progress: ProgressFn | None = None) -> ChunkIndex:
        """Outpaint the neighbour of `origin` in `direction` (east, north, ..., northwest; see
        types.world.DIRECTIONS) and add it to the world: its layout continues the neighbours' roads (or is
        `layout`), its triplane is RePainted with the overlap held, its images continue the origin's."""
        from .world import WorldExtender

        if origin not in world:
            raise ValueError(f"Generator.extend: the world has no chunk at {origin}")
        index = origin.neighbour(direction)
        if index in world:
            raise ValueError(f"Generator.extend: there is already a chunk {direction} of {origin} ({index})")
        extender = WorldExtender(self.occupancy_stage)
        ext = self._run("occupancy", lambda: extender(world, index, layout, world[origin].description, seed=seed,
                                                      step_callback=self._reporter("occupancy", progress)))
        chunk = self.render(ext.chunk, images, seed, progress, reference=world[origin])
        world.add(index, chunk)
        return index

    def stitch(self, world: WorldMap) -> Occupancy:
        """All chunks as one occupancy in the world frame (world.stitch_occupancy)."""
        from .world import stitch_occupancy

        return stitch_occupancy(world)

    @_public
    def gaussians(self, world: WorldMap, progress: ProgressFn | None = None):
        """One GaussianScene (world frame) for every chunk of the world that has views."""
        stage = self.gaussian_stage
        return self._run("gaussians", lambda: stage(world, step_callback=self._reporter("gaussians", progress)))


def with_road_map(layout: Layout, description: SceneDescription | None = None, force: bool = False) -> Layout:
    """The layout with road areas, dividers and kerbs derived from its lanes (ops.road_areas) where it has
    none (generated layouts), so that every stage and the viewer see the roads; `force` re-derives them."""
    from .ops.road_areas import NO_SIDEWALK_ENVIRONMENTS, complete_road_map

    env = description.environment if description is not None else None
    return complete_road_map(layout, sidewalks=env not in NO_SIDEWALK_ENVIRONMENTS, force=force)


def following(chunk: Chunk, layout: Layout, grid: GridSpec | None = None
              ) -> tuple[SceneGraph | None, SceneDescription | None]:
    """(scene graph, description) of `chunk` after its layout became `layout` by hand: the graph follows
    the boxes and lanes (ops.graph_sync.graph_following, on `grid`), so a later edit in words starts from
    what is there, and the description follows the graph and the boxes' paints
    (llm.scene_text.description_following), so the captions the occupancy and image models read, and the
    text the page shows, name no deleted object. A chunk without a graph or a layout gives (None, its
    description)."""
    from .llm.scene_text import description_following
    from .ops.graph_sync import graph_following

    if chunk.graph is None or chunk.layout is None:
        return None, chunk.description
    graph = graph_following(chunk.graph, layout, chunk.layout, grid)
    d = chunk.description
    return graph, (description_following(d, chunk.graph, graph, layout) if d is not None else None)


def _default_stage(name: str):
    """The shipped stage of each kind (checkpoints/), built on first use."""
    if name == "describe":
        from .stages.describe import DescribeStage

        return DescribeStage()
    if name == "layout":
        from .stages.layout import LayoutStage

        return LayoutStage.from_pretrained()
    if name == "occupancy":
        from .stages.occupancy import OccupancyStage

        return OccupancyStage.from_pretrained()
    if name == "render":
        from .stages.render import RenderStage

        return RenderStage()
    if name == "multiview":
        from .stages.multiview import MultiViewStage

        return MultiViewStage.from_pretrained()
    if name == "gaussians":
        from .stages.gaussians import GaussianStage

        return GaussianStage()
    raise ValueError(f"unknown stage {name!r}")
