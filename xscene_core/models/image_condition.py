"""Conditions of the multi-view image diffusion model (X-Scene Sec. 3.3) and their encoders.

- `view_condition_arrays`: RenderedViews-like arrays + layout + rig -> the compact per-view arrays at the
  model's resolution (one function for the training cache and the stage, so both see the same inputs).
- `ImageCondition`: a batch of B scenes x V views of conditions as tensors, with per-sample "present"
  flags so condition dropout and classifier-free guidance can remove any part.
- `GeometryEncoder`: ConvNet over the per-pixel geometry (semantic one-hot, depth, perspective box and
  map-line maps) fused with object positional embeddings (Fourier features of the normalised scene
  coordinates of box surfaces). Zero-preserving (bias-free convolutions, SiLU), so a dropped geometry
  (all-zero input) gives all-zero features: "no geometry" is one well-defined branch.
- `ImageTokens`: cross-attention tokens per view: [null, camera, relative pose, caption, boxes...].
- `style_features`: the time of day and weather as a 12-d one-hot (the caption embedding carries them only
  weakly: it is dominated by the object lists).
- map areas (`area_condition` of the encoders): the share of each pixel that a crossing covers on the road,
  then that the road paint covers (white: lane dashes, edge and stop lines, the zebra's bars; yellow: the
  double line); the semantic map cannot say where either is (both are driveable surface), and the zebra
  and the lane marks are among the first things a person reads in a street view. Then the light fixtures
  (street lamp heads, head and tail lights: ops.street_lights): the layout fixes where they stand, the
  night look lights them, and a denoiser that is not told where can only smear an average glow. Last the
  windows and shop fronts of the facades (ops.facade_windows): the wall and the environment fix the grid,
  and without it a building comes out as an averaged slab.
- `box_paint_features` / `paint_map`: each box's paint colour (Box.color, the scene graph's attribute) as a
  feature, and per pixel the paint of the box seen there (`paint_condition` of the encoders): without it a
  car's colour is a guess the denoiser can only average, and averaged paints come out as dark blobs.
  With `facade_condition` the walls' colours (ops.facade_paint: a palette colour per building block, drawn
  by the look seed) fill the same map where no box is, for the same reason: a grey-blue average of the
  palette otherwise.

Shapes: V views of h x w pixels at the model resolution; ids are Occ3D ids (semantics.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import semantics
from ..ops.condition_maps import PERSPECTIVE_AREA_KINDS, PERSPECTIVE_LINE_KINDS
from ..ops.facade_paint import FACADE_FEATURES
from ..ops.facade_windows import WINDOW_KINDS
from ..ops.street_lights import LIGHT_KINDS
from ..types.cameras import CameraRig
from ..types.scene import TIMES_OF_DAY, WEATHERS
from .condition_encoders import BOX_DIMS, fourier_features
from .pretrained import widened_inputs

NUM_IDS = semantics.NUM_CLASSES  # 18: 17 Occ3D classes + free
PERSP_CHANNELS = 2 * len(semantics.OBJECT_IDS) + len(PERSPECTIVE_LINE_KINDS)  # faces, edges, lines
# Marks drawn into each view, coverage in [0, 1]: map areas and paint on the road, light fixtures, then the
# windows and shop fronts of the facades.
AREA_KINDS = PERSPECTIVE_AREA_KINDS + LIGHT_KINDS + WINDOW_KINDS
AREA_CHANNELS = len(AREA_KINDS)
FOREGROUND_AREAS = tuple(i for i, k in enumerate(AREA_KINDS) if k not in WINDOW_KINDS)  # object_weights'
SCENE_HALF = np.array([40.0, 40.0, 4.0], np.float32)  # metres: ego-frame coordinates / this lie in ~[-1, 1]
SCENE_CENTRE = np.array([0.0, 0.0, 1.0], np.float32)
CAMERA_FEATURES = 10  # per camera: sin/cos yaw, forward z, position / 2 m (3), fx/w, fy/h, cx/w, cy/h
POSE_FEATURES = 5  # relative pose of the new chunk in the reference frame: x / 40, y / 40, z / 4, sin yaw, cos yaw
DEPTH_FAR = 80.0  # metres: log depth normalised so that this maps to 1
STYLE_FEATURES = len(TIMES_OF_DAY) + len(WEATHERS)  # one-hot time of day, one-hot weather
PAINT_FEATURES = 4  # per box: paint colour (sRGB-like, linear ** 1/2.2) and a known flag
assert PAINT_FEATURES == FACADE_FEATURES  # one paint map: boxes' paints and walls' colours alike
PAINT_MARGIN = 0.2  # metres: a box-surface point this far outside its box (float16 caches) still takes its paint


def box_paint_features(colors: Sequence[str]) -> np.ndarray:
    """float32 [N, PAINT_FEATURES] of Box.color names: the paint's colour as the preview look renders it
    (ops.preview_look PAINTS, linear RGB ** 1/2.2) and 1; an empty or unknown name gives zeros (unknown:
    the preview then draws a colour the description names or a common one)."""
    from ..ops.preview_look.surfaces import PAINTS

    out = np.zeros((len(colors), PAINT_FEATURES), np.float32)
    for i, name in enumerate(colors):
        rgb = PAINTS.get(str(name).strip().lower())
        if rgb is not None:
            out[i, :3] = np.asarray(rgb, np.float32) ** (1 / 2.2)
            out[i, 3] = 1.0
    return out


def style_features(time_of_day: str | None, weather: str | None) -> np.ndarray:
    """float32 [STYLE_FEATURES]: one-hot time of day (TIMES_OF_DAY) then one-hot weather (WEATHERS); a
    None half stays zero. Raises ValueError for a value outside those lists."""
    out = np.zeros(STYLE_FEATURES, np.float32)
    for offset, value, names in ((0, time_of_day, TIMES_OF_DAY), (len(TIMES_OF_DAY), weather, WEATHERS)):
        if value is None:
            continue
        if value not in names:
            raise ValueError(f"style_features: {value!r} is not one of {', '.join(names)}")
        out[offset + names.index(value)] = 1.0
    return out


def _nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-pixel-centre resize of [..., H, W] to [..., h, w] (ids and depths must not be blended)."""
    H, W = a.shape[-2:]
    h, w = size
    if (H, W) == (h, w):
        return a
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return a[..., rows[:, None], cols[None, :]]


def _pool(a: np.ndarray, size: tuple[int, int], mean: bool = False) -> np.ndarray:
    """Resize of bool/float [..., H, W] to float32 [..., h, w]: downsampling takes each cell's maximum (any
    pixel: thin lines survive) or, with mean, its mean (the share covered); enlarging repeats pixels."""
    H, W = a.shape[-2:]
    if (H, W) == tuple(size):
        return a.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, 1, H, W)
    shrink = F.adaptive_avg_pool2d if mean else F.adaptive_max_pool2d
    out = shrink(t, tuple(size)) if H >= size[0] else F.interpolate(t, size=tuple(size), mode="nearest")
    return out.reshape(*a.shape[:-2], *size).numpy()


def resize_images(images: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """uint8 [V, H, W, 3] -> uint8 [V, h, w, 3]: box filter when shrinking (as the training targets
    were made), bicubic when enlarging (smooth)."""
    from PIL import Image

    h, w = size
    if images.shape[1:3] == (h, w):
        return images
    mode = Image.BICUBIC if smooth else Image.BOX
    return np.stack([np.asarray(Image.fromarray(im).resize((w, h), mode)) for im in images])


def camera_features(rig: CameraRig) -> np.ndarray:
    """float32 [V, CAMERA_FEATURES] of a rig's cameras (ego frame, scale-free intrinsics)."""
    out = []
    for c in rig.cameras:
        fwd = c.T_ego_cam[:3, 2]  # optical axis in the ego frame
        yaw = math.atan2(fwd[1], fwd[0])
        t = c.T_ego_cam[:3, 3] / 2.0
        out.append([math.sin(yaw), math.cos(yaw), fwd[2], *t, c.K[0, 0] / c.width, c.K[1, 1] / c.height,
                    c.K[0, 2] / c.width, c.K[1, 2] / c.height])
    return np.asarray(out, np.float32)


def pose_features(T_ref_new: np.ndarray | None) -> np.ndarray:
    """float32 [POSE_FEATURES] of the new chunk's pose in the reference chunk's frame (zeros for None)."""
    if T_ref_new is None:
        return np.zeros(POSE_FEATURES, np.float32)
    T = np.asarray(T_ref_new, np.float64)
    yaw = math.atan2(T[1, 0], T[0, 0])
    return np.array([T[0, 3] / 40.0, T[1, 3] / 40.0, T[2, 3] / 4.0, math.sin(yaw), math.cos(yaw)], np.float32)


def box_points(box_class: np.ndarray, box_depth: np.ndarray, rig: CameraRig) -> np.ndarray:
    """Normalised ego-frame coordinates of the box surface seen at each pixel: float32 [V, 3, h, w]
    ((p - SCENE_CENTRE) / SCENE_HALF; 0 off boxes). box_class / box_depth: [V, h, w] at the rig's size
    (camera z in metres)."""
    V, h, w = box_depth.shape
    out = np.zeros((V, 3, h, w), np.float32)
    v_, u_ = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    for v, cam in enumerate(rig.cameras):
        on = (box_class[v] != semantics.FREE) & (box_depth[v] > 0)
        if not on.any():
            continue
        z = box_depth[v][on]
        K = cam.K
        pc = np.stack([(u_[on] - K[0, 2]) / K[0, 0] * z, (v_[on] - K[1, 2]) / K[1, 1] * z, z], -1)
        T = rig.T_world_cam(v)
        pe = pc @ T[:3, :3].T + T[:3, 3]
        out[v, :, on] = ((pe - SCENE_CENTRE) / SCENE_HALF).astype(np.float32)
    return out


@dataclass
class ViewArrays:
    """Compact condition arrays of one scene at the model resolution (numpy; what caches store).

    semantic: uint8 [V, h, w] Occ3D ids; depth: float32 [V, h, w] metres (0 = miss); persp: uint8
    [V, PERSP_CHANNELS, h, w] perspective faces / edges / lines (0 or 1); points: float32 [V, 3, h, w]
    normalised box-surface coordinates (box_points); camera: float32 [V, CAMERA_FEATURES]; boxes: float32
    [N, 7] and box_labels int64 [N] in the ego frame; box_paints: float32 [N, PAINT_FEATURES]
    (box_paint_features; None = all unknown, as in caches written before paints were stored); areas: uint8
    [V, AREA_CHANNELS, h, w] the share of each pixel covered by each mark of AREA_KINDS (map areas and road
    paint, light fixtures, then facade windows), x 255 (None = none known, as in caches written before areas were stored);
    facade_paint: uint8 [V, PAINT_FEATURES, h, w] the walls' colours (ops.facade_paint: colour x share and
    the share of each pixel a painted wall covers) x 255 (None = unknown: zeros).
    """

    semantic: np.ndarray
    depth: np.ndarray
    persp: np.ndarray
    points: np.ndarray
    camera: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    box_paints: np.ndarray | None = None
    areas: np.ndarray | None = None
    facade_paint: np.ndarray | None = None

    def __post_init__(self) -> None:
        # per-pixel uint8 maps: zeros (unknown) when absent, else [V, channels, h, w]
        for name, channels in (("facade_paint", PAINT_FEATURES), ("areas", AREA_CHANNELS)):
            want = (self.semantic.shape[0], channels, *self.semantic.shape[1:])
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(want, np.uint8))
            if getattr(self, name).shape != want:
                raise ValueError(f"ViewArrays.{name}: expected {list(want)}, got {list(getattr(self, name).shape)}")
        if self.box_paints is None:
            self.box_paints = np.zeros((len(self.box_labels), PAINT_FEATURES), np.float32)
        if self.box_paints.shape != (len(self.box_labels), PAINT_FEATURES):
            raise ValueError(f"ViewArrays.box_paints: expected [{len(self.box_labels)}, {PAINT_FEATURES}], "
                             f"got {list(self.box_paints.shape)}")


def view_condition_arrays(semantic: np.ndarray, depth: np.ndarray, layout, rig: CameraRig,
                          size: tuple[int, int], environment: str | None = None,
                          facade_seed: int | None = None) -> ViewArrays:
    """ViewArrays at `size` = (h, w) from renders at the rig's size (semantic uint8 / depth float32
    [V, H, W]) and a layout in the rig's world frame (None = no boxes or map lines; street lamps on the
    preview look's lattice); environment: the scene's (types.scene.ENVIRONMENTS: it sets the facades' window
    grid; None = windows unknown, their marks left empty); facade_seed: the look seed that picks the walls'
    colours (ops.facade_paint; None, or no environment = colours unknown, facade_paint left zero)."""
    from ..ops.condition_maps import PerspectiveMaps, perspective_maps
    from ..ops.facade_windows import window_masks
    from ..ops.preview_look.pixels import _pixels
    from ..ops.street_lights import fixture_masks, light_fixtures
    from ..types.images import RenderedViews

    V = len(rig)
    small = rig.resized(*size)
    if layout is not None:
        pm = perspective_maps(layout, rig)
        boxes, labels = layout.box_array().astype(np.float32).reshape(-1, BOX_DIMS), layout.box_labels()
        paints = box_paint_features([b.color for b in layout.boxes])
    else:
        H, W = semantic.shape[1:]
        pm = PerspectiveMaps(np.full((V, H, W), semantics.FREE, np.uint8), np.zeros((V, H, W), np.float32),
                             np.full((V, H, W), semantics.FREE, np.uint8),
                             np.zeros((V, len(PERSPECTIVE_LINE_KINDS), H, W), bool), rig)
        boxes, labels = np.zeros((0, BOX_DIMS), np.float32), np.zeros(0, np.int64)
        paints = None
    objs = np.asarray(semantics.OBJECT_IDS)
    box_class = _nearest(pm.box_class, size)
    faces = box_class[:, None] == objs[None, :, None, None]
    edges = _pool(pm.box_edges[:, None] == objs[None, :, None, None], size) > 0
    lines = _pool(pm.lines, size) > 0
    persp = np.concatenate([faces, edges, lines], 1).astype(np.uint8)
    pts = box_points(box_class, _nearest(pm.box_depth, size), small)
    origins = np.stack([rig.T_world_cam(v)[:3, 3] for v in range(V)])
    px = None
    if environment is None:
        windows = np.zeros((V, len(WINDOW_KINDS), *semantic.shape[1:]), bool)
    else:  # one pass over the pixels for the windows and the walls' colours
        px = _pixels(RenderedViews(semantic, depth, (depth > 0).astype(np.float32), rig))
        windows = window_masks(None, environment, px)
    marks = np.concatenate([pm.areas, fixture_masks(light_fixtures(layout, origins), rig, depth, size[0]), windows], 1)
    walls = None
    if environment is not None and facade_seed is not None:
        walls = facade_coverage(semantic, depth, rig, size, environment, [facade_seed], px)[0]
    return ViewArrays(_nearest(semantic, size).astype(np.uint8), _nearest(depth, size).astype(np.float32), persp, pts,
                      camera_features(rig), boxes, np.asarray(labels, np.int64), paints, area_coverage(marks, size),
                      walls)


def facade_coverage(semantic: np.ndarray, depth: np.ndarray, rig: CameraRig, size: tuple[int, int],
                    environment: str, seeds: Sequence[int], px=None) -> np.ndarray:
    """uint8 [L, V, PAINT_FEATURES, h, w]: ViewArrays.facade_paint at `size` for each of L look seeds, from
    renders at the rig's size (semantic uint8 / depth float32 [V, H, W]) of a scene in `environment` (px:
    their preview_look.pixels._pixels, if the caller has them)."""
    from ..ops.facade_paint import facade_paint
    from ..types.images import RenderedViews

    views = RenderedViews(semantic, depth, (depth > 0).astype(np.float32), rig)
    return np.stack([area_coverage(p, size) for p in facade_paint(views, environment, seeds, px)])


def area_coverage(areas: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool [V, A, H, W] marks (map areas, paint, lights) at the rig's size -> uint8 [V, A, h, w]: the share
    of each pixel they cover x 255 (area-averaged, so a far crossing stays a faint band instead of vanishing
    or swelling); float marks in [0, 1] (the walls' colours, ops.facade_paint) give their mean x 255."""
    return np.rint(_pool(areas, size, mean=True) * 255).astype(np.uint8)


@dataclass
class ImageCondition:
    """A batch of B scenes, V views each: geometry at h x w, images (reference) at h / s x w / s, where s
    is the model's geometry_stride (1 unless geometry is finer than the model resolution).

    semantic: long [B, V, h, w] ids; depth: float [B, V, h, w] metres; persp: float [B, V, Cp, h, w];
    points: float [B, V, 3, h, w]; geometry_mask: bool [B] (False = the whole geometry dropped);
    camera: float [B, V, CAMERA_FEATURES]; box_labels long [B, N], box_geometry float [B, N, 7], box_mask
    bool [B, N]; text float [B, E], text_mask bool [B]; reference float [B, V, C, h / s, w / s] (the reference
    chunk's views in the model's image space; zeros when absent), pose float [B, POSE_FEATURES],
    reference_mask bool [B]; style float [B, STYLE_FEATURES] (style_features; zeros = unknown; it belongs
    to the caption: text_mask removes both); guide float [B, V, C, h / s, w / s] or None: the first-guess
    views of the geometry in the model's image space (ImageCodec.first_guess), read by a denoiser with
    first_guess_condition; derived from the geometry, so geometry_mask removes it too; box_paint float [B, N,
    PAINT_FEATURES] (box_paint_features; None = all unknown): part of the boxes, so box_mask removes it;
    areas float [B, V, AREA_CHANNELS, h, w] in [0, 1] (ViewArrays.areas / 255; None = none known): part of
    the geometry, so geometry_mask removes it; facade_paint float [B, V, PAINT_FEATURES, h, w] in [0, 1]
    (ViewArrays.facade_paint / 255; None = unknown): the walls' colours, removed with the geometry too.
    """

    semantic: torch.Tensor
    depth: torch.Tensor
    persp: torch.Tensor
    points: torch.Tensor
    geometry_mask: torch.Tensor
    camera: torch.Tensor
    box_labels: torch.Tensor
    box_geometry: torch.Tensor
    box_mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    reference: torch.Tensor
    pose: torch.Tensor
    reference_mask: torch.Tensor
    style: torch.Tensor
    guide: torch.Tensor | None = None
    box_paint: torch.Tensor | None = None
    areas: torch.Tensor | None = None
    facade_paint: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.facade_paint is None:
            self.facade_paint = self.depth.new_zeros(*self.semantic.shape[:2], PAINT_FEATURES, *self.semantic.shape[2:])
        if self.box_paint is None:
            self.box_paint = self.box_geometry.new_zeros(*self.box_labels.shape, PAINT_FEATURES)
        if self.areas is None:
            self.areas = self.depth.new_zeros(*self.semantic.shape[:2], AREA_CHANNELS, *self.semantic.shape[2:])
        if self.semantic.ndim != 4:
            raise ValueError(f"ImageCondition.semantic: expected [B, V, h, w], got {list(self.semantic.shape)}")
        b, v, h, w = self.semantic.shape
        want = {"depth": (b, v, h, w), "persp": (b, v, PERSP_CHANNELS, h, w), "points": (b, v, 3, h, w),
                "areas": (b, v, AREA_CHANNELS, h, w), "facade_paint": (b, v, PAINT_FEATURES, h, w),
                "geometry_mask": (b,), "camera": (b, v, CAMERA_FEATURES), "text_mask": (b,),
                "pose": (b, POSE_FEATURES), "reference_mask": (b,), "style": (b, STYLE_FEATURES)}
        for name, shape in want.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"ImageCondition.{name}: expected {list(shape)}, got {list(getattr(self, name).shape)}")
        n = self.box_labels.shape[-1]
        if (tuple(self.box_labels.shape) != (b, n) or tuple(self.box_geometry.shape) != (b, n, BOX_DIMS)
                or tuple(self.box_mask.shape) != (b, n)):
            raise ValueError("ImageCondition: boxes must be labels [B, N], geometry [B, N, 7], mask [B, N]")
        if tuple(self.box_paint.shape) != (b, n, PAINT_FEATURES):
            raise ValueError(f"ImageCondition.box_paint: expected [{b}, {n}, {PAINT_FEATURES}], "
                             f"got {list(self.box_paint.shape)}")
        rh, rw = self.reference.shape[-2:]
        if (self.reference.ndim != 5 or self.reference.shape[:2] != (b, v) or self.text.shape[0] != b
                or rh == 0 or h % rh or w % rw or h // rh != w // rw):
            raise ValueError(f"ImageCondition.reference: expected [B, V, C, h', w'] = [{b}, {v}, C, {h}/s, {w}/s] "
                             f"(s: the model's geometry_stride), got {list(self.reference.shape)}")
        if self.guide is not None and self.guide.shape != self.reference.shape:
            raise ValueError(f"ImageCondition.guide: expected the reference's shape {list(self.reference.shape)}, "
                             f"got {list(self.guide.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.semantic.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(h, w) of the denoised images (the reference's size; the geometry may be finer by a factor)."""
        return int(self.reference.shape[-2]), int(self.reference.shape[-1])

    @property
    def num_views(self) -> int:
        return int(self.semantic.shape[1])

    def view_styles(self) -> torch.Tensor:
        """float [B*V, STYLE_FEATURES]: each view's scene style, zero where the caption is dropped (the
        style belongs to the caption)."""
        style = self.style * self.text_mask[:, None].to(self.style.dtype)
        return style.repeat_interleave(self.num_views, 0)

    def to(self, device) -> "ImageCondition":
        return ImageCondition(*(None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)))

    def drop(self, keep_geometry=None, keep_boxes=None, keep_text=None, keep_reference=None) -> "ImageCondition":
        """The batch with parts removed where a keep flag (bool [B]) is False; None keeps all."""
        out = self
        if keep_geometry is not None:
            out = replace(out, geometry_mask=out.geometry_mask & keep_geometry)
        if keep_boxes is not None:
            out = replace(out, box_mask=out.box_mask & keep_boxes.view(-1, 1))
        if keep_text is not None:
            out = replace(out, text_mask=out.text_mask & keep_text)
        if keep_reference is not None:
            out = replace(out, reference_mask=out.reference_mask & keep_reference)
        return out

    def _none(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.semantic.device)

    def coarsened(self, factor: int) -> "ImageCondition":
        """The geometry `factor` times coarser, shrunk as view_condition_arrays shrinks renders (ids,
        depths, points and box faces by the nearest pixel centre, box edges and map lines by max-pooling,
        so thin lines survive, map areas and wall colours by averaging); tokens, reference and guide kept. What a denoiser
        reads when a decoder reads finer geometry (an upscaling GeometryDecoder); factor 1 returns the
        condition itself."""
        if factor == 1:
            return self
        k, o = factor, factor // 2
        near = lambda t: t[..., o::k, o::k]  # noqa: E731
        faces = len(semantics.OBJECT_IDS)
        lines = self.persp[:, :, faces:]
        pooled = F.max_pool2d(lines.flatten(0, 1), k).view(*lines.shape[:3], *near(lines).shape[-2:])
        mean = lambda t: F.avg_pool2d(t.flatten(0, 1), k).view(*t.shape[:3], *near(t).shape[-2:])  # noqa: E731
        return replace(self, semantic=near(self.semantic), depth=near(self.depth), points=near(self.points),
                       persp=torch.cat([near(self.persp[:, :, :faces]), pooled], 2), areas=mean(self.areas),
                       facade_paint=mean(self.facade_paint))

    def without_geometry(self) -> "ImageCondition":
        """Geometry maps zeroed (the alignment metric's floor); tokens and reference kept."""
        return self.drop(keep_geometry=self._none())

    def unconditional(self) -> "ImageCondition":
        """The classifier-free guidance branch: geometry, boxes and caption removed. The cameras and the
        reference view stay: they are hard constraints of the output, not a style to amplify."""
        n = self._none()
        return self.drop(n, n, n)

    @staticmethod
    def cat(items: Sequence["ImageCondition"]) -> "ImageCondition":
        """Concatenate batches (box lists padded to the longest)."""
        n = max(c.box_labels.shape[1] for c in items)

        def pad(t: torch.Tensor, value) -> torch.Tensor:
            extra = n - t.shape[1]
            if extra == 0:
                return t
            shape = list(t.shape)
            shape[1] = extra
            return torch.cat([t, t.new_full(shape, value)], 1)

        parts = {f.name: [getattr(c, f.name) for c in items] for f in fields(ImageCondition)}
        parts["box_labels"] = [pad(t, 0) for t in parts["box_labels"]]
        parts["box_geometry"] = [pad(t, 1.0) for t in parts["box_geometry"]]
        parts["box_mask"] = [pad(t, False) for t in parts["box_mask"]]
        parts["box_paint"] = [pad(t, 0.0) for t in parts["box_paint"]]
        guides = parts.pop("guide")
        if any(g is None for g in guides) and not all(g is None for g in guides):
            raise ValueError("ImageCondition.cat: some batches have a first-guess guide and some do not")
        return ImageCondition(**{k: torch.cat(v) for k, v in parts.items()},
                              guide=None if guides[0] is None else torch.cat(guides))

    @classmethod
    def collate(cls, arrays: Sequence[ViewArrays], text: Sequence[np.ndarray | None],
                reference: Sequence[np.ndarray | None], poses: Sequence[np.ndarray | None], image_channels: int,
                max_boxes: int, styles: Sequence[np.ndarray | None] | None = None,
                geometry_stride: int = 1, guides: Sequence[np.ndarray] | None = None) -> "ImageCondition":
        """One batch from per-scene ViewArrays, caption embeddings (None = no caption), reference views
        (float [V, C, h, w] in the model's image space, or None), relative poses (T_ref_new [4, 4] or
        None) and styles (style_features, or None = unknown; None for all = all unknown). Boxes beyond
        max_boxes are dropped, nearest to the ego kept. geometry_stride: the arrays are this many times
        finer than the images (h, w = their size / stride). guides: per scene its first-guess views (float
        [V, C, h, w] in the model's image space), or None for no guide."""
        b = len(arrays)
        V, gh, gw = arrays[0].semantic.shape
        h, w = gh // geometry_stride, gw // geometry_stride
        sel = [np.argsort(np.hypot(a.boxes[:, 0], a.boxes[:, 1]), kind="stable")[:max_boxes] for a in arrays]
        n = max([len(s) for s in sel] + [1])
        geo = np.zeros((b, n, BOX_DIMS), np.float32)
        geo[..., 3:6] = 1.0
        lab = np.zeros((b, n), np.int64)
        bmask = np.zeros((b, n), bool)
        paint = np.zeros((b, n, PAINT_FEATURES), np.float32)
        for i, (a, s) in enumerate(zip(arrays, sel)):
            geo[i, :len(s)] = a.boxes[s]
            lab[i, :len(s)] = a.box_labels[s]
            bmask[i, :len(s)] = True
            paint[i, :len(s)] = a.box_paints[s]
        txt = np.stack([np.zeros(384, np.float32) if t is None else np.asarray(t, np.float32) for t in text])
        ref = np.zeros((b, V, image_channels, h, w), np.float32)
        for i, r in enumerate(reference):
            if r is not None:
                if tuple(r.shape) != ref.shape[1:]:
                    raise ValueError(f"reference views: expected {list(ref.shape[1:])} (geometry {gh} x {gw} / stride "
                                     f"{geometry_stride}), got {list(r.shape)}")
                ref[i] = r
        sty = np.zeros((b, STYLE_FEATURES), np.float32)
        for i, st in enumerate(styles or []):
            if st is not None:
                sty[i] = st
        t = torch.from_numpy
        return cls(
            t(np.stack([a.semantic for a in arrays]).astype(np.int64)), t(np.stack([a.depth for a in arrays])),
            t(np.stack([a.persp for a in arrays]).astype(np.float32)), t(np.stack([a.points for a in arrays])),
            torch.ones(b, dtype=torch.bool), t(np.stack([a.camera for a in arrays])), t(lab), t(geo), t(bmask),
            t(txt), torch.tensor([x is not None for x in text]), t(ref),
            t(np.stack([pose_features(p) for p in poses])), torch.tensor([r is not None for r in reference]), t(sty),
            None if guides is None else t(np.stack([np.asarray(g, np.float32) for g in guides])), t(paint),
            t(np.stack([a.areas for a in arrays]).astype(np.float32) / 255.0),
            t(np.stack([a.facade_paint for a in arrays]).astype(np.float32) / 255.0))


def paint_map(cond: ImageCondition, facades: bool = False) -> torch.Tensor:
    """Per pixel the paint of the box seen there: float [B, V, PAINT_FEATURES, h, w] (zeros off boxes, for
    boxes of unknown paint and for boxes the condition dropped). A box-surface pixel (its normalised
    ego-frame point, ImageCondition.points) belongs to the box it lies in, or the nearest one it lies
    within PAINT_MARGIN of. facades: the walls' colours (ImageCondition.facade_paint) fill the pixels no
    painted box covers: one map of what colour each surface is painted."""
    b, v, h, w = cond.semantic.shape
    out = cond.box_paint.new_zeros(b, v, h, w, PAINT_FEATURES)
    known = cond.box_mask & (cond.box_paint[..., 3] > 0)                         # [B, N]
    on = cond.persp[:, :, : len(semantics.OBJECT_IDS)].sum(2) > 0                 # [B, V, h, w]
    half = torch.as_tensor(SCENE_HALF, dtype=out.dtype, device=out.device)
    centre = torch.as_tensor(SCENE_CENTRE, dtype=out.dtype, device=out.device)
    for i in range(b):
        if not known[i].any() or not on[i].any():
            continue
        p = cond.points[i].permute(0, 2, 3, 1)[on[i]] * half + centre          # [M, 3] ego metres
        g = cond.box_geometry[i][known[i]]                                       # [K, 7]
        d = p[:, None] - g[None, :, :3]
        cy, sy = g[:, 6].cos(), g[:, 6].sin()
        local = torch.stack([d[..., 0] * cy + d[..., 1] * sy, -d[..., 0] * sy + d[..., 1] * cy, d[..., 2]], -1)
        outside = (local.abs() - g[None, :, 3:6] / 2).amax(-1)                  # [M, K] metres outside the box
        best, idx = outside.min(-1)
        paint = cond.box_paint[i][known[i]][idx] * (best < PAINT_MARGIN)[:, None].to(out.dtype)
        out[i][on[i]] = paint
    out = out.permute(0, 1, 4, 2, 3)
    if facades:
        out = torch.where(out[:, :, 3:] > 0, out, cond.facade_paint.to(out.dtype))
    return out


def object_weights(cond: ImageCondition, size: tuple[int, int], weight: float) -> torch.Tensor:
    """Per-cell loss weights float [B, V, 1, *size]: 1 + (weight - 1) x the share of the cell that object
    boxes (their perspective faces) or marks (crossings, road paint, lights: ImageCondition.areas) cover in the views,
    area-pooled from the geometry's size. The foreground re-weighting of GeoDiffusion (Chen et al. 2023):
    vehicles, people and crossings fill a few percent of a view, so a plain mean loss barely asks for them.
    The facades' windows are not foreground: they cover whole walls, and weighting them would weigh the
    buildings over the vehicles."""
    b, v = cond.batch_size, cond.num_views
    faces = (cond.persp[:, :, : len(semantics.OBJECT_IDS)].sum(2, keepdim=True) > 0).to(cond.depth.dtype)
    fore = torch.maximum(faces, cond.areas[:, :, list(FOREGROUND_AREAS)].amax(2, keepdim=True).to(faces.dtype))
    cover = F.adaptive_avg_pool2d(fore.flatten(0, 1), tuple(size)).view(b, v, 1, *size)
    return 1.0 + (float(weight) - 1.0) * cover


class GeometryEncoder(nn.Module):
    """Per-pixel geometry -> features float [B*V, out_channels, h, w] (zero where geometry is dropped).

    Input channels: semantic one-hot (18), depth (hit flag, log depth), perspective maps (Cp), and the
    object positional embedding: Fourier features (bands octaves) of the box-surface coordinates, only on
    box pixels. The positional embedding goes through its own 1x1 projection before being added to the
    map branch's first features (the paper's fusion), then shared 3x3 convolutions. stride (1, 2 or 4,
    at most 2 ** layers): the first hidden convolutions are strided, so geometry at stride x the model
    resolution keeps lane lines and poles that a map at the latent size would lose (as ControlNet's
    condition embedding does); the output is [B*V, out_channels, h / stride, w / stride]. The weights
    have the same shapes for every stride. paint: also read the paint map (paint_map) through its own
    1x1 projection, zero-initialised so an encoder gains it without changing its output; areas: the same
    for the marks: map areas, road paint, light fixtures and windows (ImageCondition.areas; weights saved when it read
    fewer channels load with the new ones at zero); facades: the paint map also holds the walls' colours
    (paint_map's facades; through the same projection: a wall's colour is read as a car's paint is).
    """

    def __init__(self, hidden: int = 32, out_channels: int = 16, bands: int = 4, layers: int = 2,
                 stride: int = 1, paint: bool = False, areas: bool = False, facades: bool = False) -> None:
        super().__init__()
        if facades and not paint:
            raise ValueError("GeometryEncoder: facades (the walls' colours in the paint map) needs paint")
        self.facades = facades
        if stride not in (1, 2, 4) or stride > 2 ** layers:
            raise ValueError(f"GeometryEncoder: stride must be 1, 2 or 4 and at most 2 ** layers, got {stride}")
        self.bands = bands
        maps = NUM_IDS + 2 + PERSP_CHANNELS
        self.maps_in = nn.Conv2d(maps, hidden, 3, padding=1, bias=False)
        self.pos_in = nn.Conv2d(3 * (1 + 2 * bands), hidden, 1, bias=False)
        self.paint_in = nn.Conv2d(PAINT_FEATURES, hidden, 1, bias=False) if paint else None
        if paint:
            nn.init.zeros_(self.paint_in.weight)
        self.area_in = nn.Conv2d(AREA_CHANNELS, hidden, 1, bias=False) if areas else None
        if areas:
            nn.init.zeros_(self.area_in.weight)
        body: list[nn.Module] = []
        for i in range(layers):
            step = 2 if 2 ** i < stride else 1
            body += [nn.SiLU(), nn.Conv2d(hidden, hidden, 3, stride=step, padding=1, bias=False)]
        body += [nn.SiLU(), nn.Conv2d(hidden, out_channels, 3, padding=1, bias=False)]
        self.body = nn.Sequential(*body)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Weights from before the road paint read the crossings only: the paint's columns join at zero,
        # so such a model loads and runs exactly as it was trained.
        key = prefix + "area_in.weight"
        w = state_dict.get(key)
        if self.area_in is not None and w is not None and w.ndim == 4 and w.shape[1] < AREA_CHANNELS:
            state_dict[key] = widened_inputs(w, AREA_CHANNELS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, cond: ImageCondition) -> torch.Tensor:
        b, v, h, w = cond.semantic.shape
        keep = cond.geometry_mask.to(cond.depth.dtype).view(b, 1, 1, 1, 1)
        onehot = F.one_hot(cond.semantic.clamp(0, NUM_IDS - 1), NUM_IDS).permute(0, 1, 4, 2, 3).to(cond.depth.dtype)
        hit = (cond.depth > 0).to(cond.depth.dtype)
        logd = torch.log1p(cond.depth) / math.log1p(DEPTH_FAR) * hit
        maps = torch.cat([onehot, hit[:, :, None], logd[:, :, None], cond.persp], 2) * keep
        on_box = (cond.persp[:, :, : len(semantics.OBJECT_IDS)].sum(2, keepdim=True) > 0).to(maps.dtype)
        pos = fourier_features(cond.points.permute(0, 1, 3, 4, 2), self.bands).permute(0, 1, 4, 2, 3) * on_box * keep
        x = self.maps_in(maps.flatten(0, 1)) + self.pos_in(pos.flatten(0, 1))
        if self.paint_in is not None:
            x = x + self.paint_in((paint_map(cond, self.facades) * keep).flatten(0, 1))
        if self.area_in is not None:
            x = x + self.area_in((cond.areas * keep).flatten(0, 1))
        return self.body(x)


class ImageTokens(nn.Module):
    """Cross-attention tokens per view: [null, camera, pose, caption, boxes...] -> (tokens float
    [B*V, T, D], mask bool [B*V, T]). Boxes are expressed in each camera's frame (centre, log size, yaw
    relative to the optical axis), so one token says where the object lies in that view; boxes behind a
    camera are masked for it. paint: a box token also carries its paint (a zero-initialised linear map of
    ImageCondition.box_paint added to it)."""

    def __init__(self, dim: int, text_dim: int = 384, bands: int = 4, paint: bool = False) -> None:
        super().__init__()
        self.bands = bands
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        mlp = lambda n: nn.Sequential(nn.Linear(n, dim), nn.SiLU(), nn.Linear(dim, dim))  # noqa: E731
        self.camera = mlp(CAMERA_FEATURES)
        self.pose = mlp(POSE_FEATURES * (1 + 2 * bands))
        self.text = mlp(text_dim)
        self.box_class = nn.Embedding(NUM_IDS, dim)
        self.box = mlp(dim + 8 * (1 + 2 * bands))
        self.box_paint = nn.Linear(PAINT_FEATURES, dim, bias=False) if paint else None
        if paint:
            nn.init.zeros_(self.box_paint.weight)

    @staticmethod
    def boxes_in_cameras(geometry: torch.Tensor, camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box geometry float [B, N, 7] (ego frame) -> per-view features float [B, V, N, 8] and in-front
        flags bool [B, V, N], using each camera's yaw and position from its features [B, V, 10]."""
        s, c = camera[..., 0:1], camera[..., 1:2]  # [B, V, 1]
        pos = camera[..., 3:5] * 2.0
        dx = geometry[:, None, :, 0] - pos[..., 0:1]
        dy = geometry[:, None, :, 1] - pos[..., 1:2]
        fwd = dx * c + dy * s                         # along the optical axis (metres)
        left = -dx * s + dy * c
        yaw = geometry[:, None, :, 6] - torch.atan2(s, c)
        size = geometry[..., 3:6].clamp(min=1e-3).log()[:, None].expand(-1, camera.shape[1], -1, -1)
        up = ((geometry[:, None, :, 2] - 1.0) / 4.0).expand_as(fwd)
        feats = torch.stack([fwd / 40.0, left / 40.0, up], -1)
        feats = torch.cat([feats, size, yaw.sin()[..., None], yaw.cos()[..., None]], -1)
        return feats, fwd > 0.5

    def forward(self, cond: ImageCondition) -> tuple[torch.Tensor, torch.Tensor]:
        b, v = cond.batch_size, cond.num_views
        cam = self.camera(cond.camera)                                                  # [B, V, D]
        pose = self.pose(fourier_features(cond.pose, self.bands))[:, None].expand(-1, v, -1)
        text = self.text(cond.text)[:, None].expand(-1, v, -1)
        feats, front = self.boxes_in_cameras(cond.box_geometry, cond.camera)         # [B, V, N, 8]
        cls = self.box_class(cond.box_labels)[:, None].expand(-1, v, -1, -1)
        box = self.box(torch.cat([cls, fourier_features(feats, self.bands)], -1))      # [B, V, N, D]
        if self.box_paint is not None:
            box = box + self.box_paint(cond.box_paint)[:, None]
        bmask = cond.box_mask[:, None] & front
        pmask = cond.reference_mask[:, None].expand(-1, v)
        tmask = cond.text_mask[:, None].expand(-1, v)
        tokens = torch.cat([self.null.expand(b, v, 1, -1), cam[:, :, None], (pose * pmask[..., None])[:, :, None],
                            (text * tmask[..., None])[:, :, None], box * bmask[..., None]], 2)
        ones = torch.ones(b, v, 2, dtype=torch.bool, device=tokens.device)
        mask = torch.cat([ones, pmask[..., None], tmask[..., None], bmask], 2)
        return tokens.flatten(0, 1), mask.flatten(0, 1)
