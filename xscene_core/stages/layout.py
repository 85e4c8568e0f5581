"""Layout stage: SceneGraph -> Layout (object boxes and lane polylines) by layout diffusion.

    stage = LayoutStage.from_pretrained()        # checkpoints/layout_diffusion
    layout = stage(graph, seed=0)                 # one box per object node, one lane per lane node

The layout holds the generated boxes (class, state and node id from the graph; `track_id` is the
node id) and lanes (turn and lane id from the graph), in node order. Map lines and areas are not
generated here. Sampling is deterministic for a given graph and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .. import semantics
from ..models.layout_diffusion import LayoutDiffusion, SamplingStopped, collate
from ..types.layout import Layout
from ..types.scene import FLOWS, POSITIONS, RELATIONS, SceneGraph

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = _REPO / "checkpoints" / "layout_diffusion"
OUTSIDE_MARGIN = 0.25  # node coordinates may lie this share of the chunk size outside the chunk square
MAX_NODES = 1024


class LayoutInterrupted(RuntimeError):
    """Raised by LayoutStage when interrupt() was called or the step callback returned False."""


class LayoutStage:
    """Scene graph -> layout.

    model: a LayoutDiffusion; num_inference_steps: DDIM steps (None: the model's default); threads: torch
    CPU threads while sampling, restored afterwards (the tiny model's matrices are too small to gain
    from more, and on a busy CPU extra threads only wait on each other; None leaves the setting alone).
    """

    def __init__(self, model: LayoutDiffusion, num_inference_steps: int | None = None, threads: int | None = 1) -> None:
        self.model = model.eval()
        self.num_inference_steps = num_inference_steps
        self.threads = threads
        self._interrupt = False

    @classmethod
    def from_pretrained(cls, folder: str | Path = DEFAULT_CHECKPOINT, **kwargs) -> "LayoutStage":
        return cls(LayoutDiffusion.from_pretrained(folder), **kwargs)

    def interrupt(self) -> None:
        """Ask a running call to stop after the current denoising step (it raises LayoutInterrupted)."""
        self._interrupt = True

    def check_inputs(self, graph: SceneGraph) -> None:
        """Raise ValueError with a clear message if the graph cannot be laid out."""
        if not isinstance(graph, SceneGraph):
            raise ValueError(f"LayoutStage expects a SceneGraph, got {type(graph).__name__}")
        if not graph.objects and not graph.lanes:
            raise ValueError("the scene graph is empty: it needs at least one object or lane node to lay out")
        n = 1 + len(graph.objects) + len(graph.lanes) + len(graph.areas)
        if n > MAX_NODES:
            raise ValueError(f"the scene graph has {n} nodes; the layout stage takes at most {MAX_NODES}")
        half = self.model.bev_size / 2
        lo = [v - OUTSIDE_MARGIN * self.model.bev_size for v in self.model.bev_lower]
        hi = [v + self.model.bev_size * (1 + OUTSIDE_MARGIN) for v in self.model.bev_lower]
        inside = lambda x, y: lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1]  # noqa: E731
        for o in graph.objects:
            if o.label not in semantics.OBJECT_IDS:
                raise ValueError(f"object {o.node_id}: class id {o.label} is not an object class; "
                                 f"object classes are {', '.join(semantics.NAMES[i] for i in semantics.OBJECT_IDS)}")
            if o.state not in semantics.STATES:
                raise ValueError(f"object {o.node_id}: unknown state {o.state!r}; states are {', '.join(semantics.STATES)}")
            if o.position not in POSITIONS:
                raise ValueError(f"object {o.node_id}: unknown position {o.position!r}; positions are {', '.join(POSITIONS)}")
            if not inside(*o.location):
                raise ValueError(f"object {o.node_id}: location {o.location} lies outside the chunk "
                                 f"(a square of {2 * half:g} m around the ego)")
        for lane in graph.lanes:
            if lane.flow not in FLOWS:
                raise ValueError(f"lane {lane.lane_id}: unknown flow {lane.flow!r}; flows are {', '.join(FLOWS)}")
            if any(not inside(x, y) for x, y in lane.points):
                raise ValueError(f"lane {lane.lane_id}: points lie outside the chunk (a square of {2 * half:g} m)")
        for a in graph.areas:
            if not inside(*a.center):
                raise ValueError(f"area {a.area_id}: centre {a.center} lies outside the chunk")
        lanes = {l.lane_id for l in graph.lanes}
        for r in graph.relations:
            if r.predicate not in RELATIONS:
                raise ValueError(f"relation '{r.subject} {r.predicate} {r.object}': unknown predicate; "
                                 f"predicates are {', '.join(RELATIONS)}")
            if r.predicate == "on top of" and r.object not in lanes:
                raise ValueError(f"relation '{r.subject} on top of {r.object}': 'on top of' needs a lane as its object")

    @torch.inference_mode()
    def __call__(self, graph: SceneGraph, seed: int = 0,
                 step_callback: Callable[[int, int], object] | None = None) -> Layout:
        """The layout of `graph`. step_callback(step, total) is called after every denoising step;
        returning False (or calling interrupt()) stops the call with LayoutInterrupted."""
        # 1. Validate the graph.
        self.check_inputs(graph)
        self._interrupt = False
        # 2. Encode it (nodes, relations) into a batch of one.
        batch = collate([self.model.encode_graph(graph)]).to(self.model.text_table.device)

        # 3. Denoise boxes and lanes, reporting progress and honouring interrupts.
        def on_step(step: int, total: int) -> bool:
            if step_callback is not None and step_callback(step, total) is False:
                return False
            return not self._interrupt

        generator = torch.Generator().manual_seed(int(seed))
        threads = torch.get_num_threads()
        if self.threads is not None and batch.node_type.device.type == "cpu":
            torch.set_num_threads(self.threads)
        try:
            state = self.model.sample(batch, generator, self.num_inference_steps, on_step)
        except SamplingStopped as stop:
            raise LayoutInterrupted(f"layout sampling interrupted ({stop})") from None
        finally:
            torch.set_num_threads(threads)
        # 4. Decode the states into boxes and lanes.
        return self.model.decode(graph, state[0])
