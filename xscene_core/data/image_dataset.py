"""Training data of the multi-view image diffusion model: synthetic chunks rendered from the rig, their
conditions at the model's resolution and the preview look as the target.

One file per (world, location), written once and reused (a resumable cache; delete the folder to rebuild):

    CACHE/world-v{WORLD_VERSION}/{h}x{w}/{split}/w{seed:06d}_{k:02d}.npz
        semantic uint8 [V, h, w], depth float16 [V, h, w], persp uint8 [V, Cp, h, w], points float16
        [V, 3, h, w], camera float32 [V, 10], boxes float32 [N, 7], box_labels int64 [N], box_paints
            float32 [N, 4], areas uint8 [V, 7, h, w] (models.image_condition.ViewArrays at the model
            resolution; areas are the marks of AREA_KINDS: crossings, road paint, light fixtures, windows; a cache
            written before paints or marks (or some kinds of them) were stored gets them with --add-paints,
            --add-areas, after a build of the same split has redrawn its night files older than
            LOOK_VERSION), look_version, areas_version (AREA_VERSION: how the marks were drawn; --add-areas
            redraws older ones)
        text float32 [384] (all-MiniLM-L6-v2 embedding of the caption), caption, style float32 [12]
            (models.image_condition.style_features of the chunk's time of day and weather; caches built
            before it existed get it from the caption, which states both; zeros = unknown otherwise)
        preview uint8 [L, V, h, w, 3]: L looks (preview seeds) of the chunk, rendered at 2x and
            box-downsampled (anti-aliased targets)
        reference uint8 [L, V, h, w, 3]: the same looks of the chunk that precedes it in an extension
            (the world chunk at -offset), T_ref_new float32 [4, 4]: this chunk's pose in that chunk's frame
        look_seeds int64 [L]; facade_paint uint8 [L, V, 4, h, w]: the walls' colours each look seed picks
            (ViewArrays.facade_paint at the condition size; a cache written before them gets them with
            --add-facades)

Chunks come from the first N worlds of a split (xscene_core.data.splits), one location per environment.
Time of day and weather (the caption and the preview look follow them): with --styles cycle (the
default) location k of the w-th world gets TIMES_OF_DAY[(w + k) % 6] and WEATHERS[(w + 2k) % 6], so every
6 consecutive worlds hold all 36 pairs once and each environment meets every time and every weather;
with --styles world each world keeps the style its seed draws (the cache of the image model's first
three training runs: 35 worlds gave 19 of the 36 pairs, no fog, few sunny noons). The two go to separate
folders.
The rig is the default nuScenes ring (stages.render.default_rig). Offsets of the reference chunk are the
WorldMap's 40 m stride along x or y (the extension step of the editor).

    python -m xscene_core.data.image_dataset --worlds 40 --split train --cache runs/image_cache
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..models.image_condition import (AREA_CHANNELS, ViewArrays, box_paint_features, facade_coverage,
                                     resize_images, style_features, view_condition_arrays)
from ..types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS, SceneDescription
from .splits import world_seeds

LOOKS = 2  # preview seeds per location: sun azimuth, facades and lit windows vary, geometry does not
# 2: the street lamps of the night looks stand where the layout puts them (ops.street_lights), as the
# condition marks them; files without a look_version hold night looks whose lamps followed the look seed.
LOOK_VERSION = 2
# 2: a far light's mark is widened to about one condition pixel (ops.street_lights.FIXTURE_MIN_RADIUS), so it
# survives the area-averaging; files without an areas_version hold marks of 1.5 render pixels. 3: the
# facades' windows and shop fronts (ops.facade_windows) join the marks.
AREA_VERSION = 3
EXTENSION_OFFSETS = ((40.0, 0.0), (-40.0, 0.0), (0.0, 40.0), (0.0, -40.0))
STYLE_MODES = ("cycle", "world")
DEFAULT_STYLES = "cycle"


def _check_styles(styles: str) -> None:
    if styles not in STYLE_MODES:
        raise ValueError(f"styles must be one of {STYLE_MODES}, got {styles!r}")


def location_style(world_index: int, k: int, styles: str = DEFAULT_STYLES):
    """The Style (time of day, weather) of location k of the world_index-th world of a split: "cycle" walks
    all 36 pairs over every 6 consecutive worlds (see the module docstring); "world" gives None (the
    world's own style)."""
    from .world import Style

    _check_styles(styles)
    if styles == "world":
        return None
    return Style(TIMES_OF_DAY[(world_index + k) % len(TIMES_OF_DAY)], WEATHERS[(world_index + 2 * k) % len(WEATHERS)])


def _world_version() -> int:
    from .world import WORLD_VERSION

    return WORLD_VERSION


def cache_dir(cache: Path, size: tuple[int, int], split: str, cond_size: tuple[int, int] | None = None,
              styles: str = DEFAULT_STYLES) -> Path:
    """Folder of one split for images of `size`, conditions of `cond_size` (default: the same; a
    latent-space model has conditions at the latent size) and style mode `styles` (STYLE_MODES)."""
    _check_styles(styles)
    name = f"{size[0]}x{size[1]}"
    if cond_size is not None and tuple(cond_size) != tuple(size):
        name += f"_c{cond_size[0]}x{cond_size[1]}"
    if styles != "world":  # "world" keeps the folder name of the caches built before the modes existed
        name += f"_{styles}"
    return Path(cache) / f"world-v{_world_version()}" / name / split


def latent_store(folder: Path, autoencoder: Path, tag: str) -> Path | None:
    """Where ImageDataset.encoded keeps the latents of the cache files in `folder` (a cache_dir) under the
    autoencoder in `autoencoder`/vae (told apart by a digest of its weights) and an encoding `tag` (e.g. its
    scale); None when the folder holds no such weights file."""
    weights = Path(autoencoder) / "vae" / "diffusion_pytorch_model.safetensors"
    if not weights.exists():
        return None
    digest = hashlib.sha1(weights.read_bytes()).hexdigest()[:12]
    return Path(folder) / "latents" / f"{digest}_{tag}"


def cache_files(folder: Path) -> list[Path]:
    """The finished sample files of one cache folder (cache_dir), sorted; temporary files are skipped."""
    return sorted(Path(folder).glob("w*_*[0-9].npz"))


def render_views(chunk, size: tuple[int, int]):
    """(RenderStage, RenderedViews) of a chunk's occupancy in the default rig at twice the model size `size`."""
    from ..stages.render import RenderStage, default_rig

    stage = RenderStage(default_rig((2 * size[0], 2 * size[1])), backend="torch")
    return stage, stage(chunk.occupancy)


def render_looks(chunk, size: tuple[int, int], seeds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(semantic uint8 [V, 2h, 2w], depth float32 [V, 2h, 2w], looks uint8 [L, V, h, w, 3]) of a chunk:
    rendered at twice the model size, preview looks box-downsampled to it."""
    stage, views = render_views(chunk, size)
    looks = [resize_images(stage.preview(views, chunk.description, chunk.layout, s, chunk.occupancy).images, size, False)
             for s in seeds]
    return views.semantic, views.depth, np.stack(looks)


def location_chunk(world, k: int, style=None):
    """((x, y), chunk) of location k of a world (a place of environment ENVIRONMENTS[k], searched from k),
    or None when the world has no such environment; style: the Style of the chunk (None: the world's)."""
    try:
        x, y = world.find_location(ENVIRONMENTS[k % len(ENVIRONMENTS)], start=k)
    except ValueError:
        return None
    return (x, y), world.chunk(x, y, style=style)


def build_sample(world, k: int, size: tuple[int, int], rng: np.random.Generator,
                 cond_size: tuple[int, int] | None = None, style=None) -> dict | None:
    """The cached arrays of location k (environment ENVIRONMENTS[k]) of a world, or None when the world
    has no such environment; style: the Style of this location and its reference chunk (None: the
    world's). The caption embedding is added by the caller (batched)."""
    from ..stages.render import default_rig

    found = location_chunk(world, k, style)
    if found is None:
        return None
    (x, y), chunk = found
    seeds = [int(s) for s in rng.integers(0, 2**31, LOOKS)]
    sem, depth, looks = render_looks(chunk, size, seeds)
    rig = default_rig((2 * size[0], 2 * size[1]))
    arrays = view_condition_arrays(sem, depth, chunk.layout, rig, cond_size or size, chunk.description.environment)
    walls = facade_coverage(sem, depth, rig, cond_size or size, chunk.description.environment, seeds)
    dx, dy = EXTENSION_OFFSETS[int(rng.integers(len(EXTENSION_OFFSETS)))]
    ref = world.chunk(x - dx, y - dy, style=style)
    _, _, ref_looks = render_looks(ref, size, seeds)
    T = np.eye(4, dtype=np.float32)
    T[:2, 3] = (dx, dy)
    return dict(semantic=arrays.semantic, depth=arrays.depth.astype(np.float16), persp=arrays.persp,
                points=arrays.points.astype(np.float16), camera=arrays.camera, boxes=arrays.boxes,
                box_labels=arrays.box_labels, box_paints=arrays.box_paints, areas=arrays.areas,
                caption=np.array(chunk.description.caption()),
                style=style_features(chunk.description.time_of_day, chunk.description.weather), preview=looks,
                reference=ref_looks, T_ref_new=T, look_seeds=np.array(seeds, np.int64), facade_paint=walls,
                look_version=np.int64(LOOK_VERSION), areas_version=np.int64(AREA_VERSION))


def _locations(split: str, n_worlds: int, first_world: int, styles: str):
    """(world seed, world index in the split, location k, Style or None) of worlds [first_world,
    first_world + n_worlds) of a split, in the order the cache is built."""
    seeds = world_seeds(split)
    for _ in range(first_world):
        next(seeds)
    for w in range(n_worlds):
        seed = next(seeds)
        for k in range(len(ENVIRONMENTS)):
            yield seed, first_world + w, k, location_style(first_world + w, k, styles)


def build_split(cache: Path, split: str, n_worlds: int, size: tuple[int, int], first_world: int = 0,
                cond_size: tuple[int, int] | None = None, log=print, styles: str = DEFAULT_STYLES,
                text_table: dict[str, np.ndarray] | None = None) -> list[Path]:
    """Cache files of worlds [first_world, first_world + n_worlds) of a split (built where missing);
    images at `size`, conditions at `cond_size` (default `size`), time and weather per `styles`.
    text_table: caption -> embedding (read_text_table) instead of the embedder, for a machine without the
    all-MiniLM-L6-v2 package; a sample whose caption it lacks is left out (logged) and built by a later run."""
    from .world import SyntheticWorld

    out, paths, t0 = cache_dir(cache, size, split, cond_size, styles), [], time.time()
    by_world: dict[tuple[int, int], list] = {}
    for seed, w, k, style in _locations(split, n_worlds, first_world, styles):
        by_world.setdefault((seed, w), []).append((k, style))
    for n, ((seed, w), locations) in enumerate(by_world.items()):
        todo = []
        for k, style in locations:
            p = out / f"w{seed:06d}_{k:02d}.npz"
            (paths.append(p) if p.exists() and not _stale_looks(p) else todo.append((k, style, p)))
        if not todo:
            continue
        world, items = SyntheticWorld(seed), []
        for k, style, p in todo:
            s = build_sample(world, k, size, np.random.default_rng([seed, k]), cond_size, style)
            if s is not None:
                items.append((p, s))
        texts = _caption_embeddings([str(s["caption"]) for _, s in items], text_table)
        for (p, s), t in zip(items, texts):
            if t is None:
                log(f"{p.name}: caption not in the text table, left out: {s['caption']!r}")
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **s, text=t.astype(np.float32), world_seed=np.int64(seed))
            tmp.replace(p)
            paths.append(p)
        log(f"{split}: world {seed} ({n + 1}/{len(by_world)}) -> {len(items)} samples, {time.time() - t0:.0f} s")
    return sorted(paths)


def add_paints(folder: Path, log=print) -> int:
    """Add box_paints to the cache files of a folder (cache_dir) written before they were stored (see
    _backfill). Returns how many files were changed."""
    return _backfill(folder, "box_paints",
                     lambda chunk, data: box_paint_features([b.color for b in chunk.layout.boxes]), log)


def add_areas(folder: Path, log=print) -> int:
    """Add the marks (ViewArrays.areas: map areas, road paint, light fixtures, windows) to the cache files of a
    folder (cache_dir) written before they were stored, or before all of AREA_KINDS were (see _backfill),
    drawn as build_sample draws them: from the layout and a render of the occupancy at twice the image size,
    area-averaged to the condition size. Returns how many files were changed."""
    redraw = [p.name for p in cache_files(folder) if _stale_looks(p)]
    if redraw:
        raise ValueError(f"{folder}: {len(redraw)} files ({', '.join(redraw[:4])}{', ...' if len(redraw) > 4 else ''}) "
                         "hold night looks drawn before the street lamps came from the layout; build the split "
                         "again first (the same command without --add-areas redraws them)")

    def areas(chunk, data) -> np.ndarray:
        _, views = render_views(chunk, data["preview"].shape[2:4])
        return view_condition_arrays(views.semantic, views.depth, chunk.layout, views.rig, data["semantic"].shape[1:],
                                     chunk.description.environment).areas

    return _backfill(folder, "areas", areas, log, stale=lambda d: _areas_version(d) < AREA_VERSION,
                     also={"areas_version": np.int64(AREA_VERSION)})


def add_facades(folder: Path, log=print) -> int:
    """Add the walls' colours of each look (facade_paint: ViewArrays.facade_paint per look seed) to the cache
    files of a folder (cache_dir) written before they were stored (see _backfill), drawn as build_sample
    draws them. Returns how many files were changed."""
    def walls(chunk, data) -> np.ndarray:
        _, views = render_views(chunk, data["preview"].shape[2:4])
        return facade_coverage(views.semantic, views.depth, views.rig, data["semantic"].shape[1:],
                               chunk.description.environment, [int(s) for s in data["look_seeds"]])

    return _backfill(folder, "facade_paint", walls, log)


def _areas_version(d) -> int:
    """How a cache file's marks were drawn (AREA_VERSION): 0 = none stored, 1 = before the version was stored."""
    if "areas" not in d or d["areas"].shape[1] != AREA_CHANNELS:
        return 0
    return int(d["areas_version"]) if "areas_version" in d else 1


def _stale_looks(path: Path) -> bool:
    """Whether a cache file holds night looks drawn before LOOK_VERSION (lamps where the look seed put them,
    not where the condition marks them); build_split draws such files again."""
    with np.load(path) as d:
        night = float(d["style"][TIMES_OF_DAY.index("night")]) > 0.5 if "style" in d else "night" in str(d["caption"])
        return night and int(d["look_version"]) < LOOK_VERSION if "look_version" in d else night


def _backfill(folder: Path, key: str, fill, log=print, stale=None, also: dict | None = None) -> int:
    """Add the array `key` (and the arrays of `also`, as they are) to the cache files of a folder (cache_dir)
    that lack it (or hold one that stale(file) calls out of date): each file's chunk is
    generated again from its world seed and location (not rendered), its boxes checked against the cached
    ones, and fill(chunk, data) (data: the file's arrays by name) gives the array. Files are rewritten
    beside and renamed (a crash loses none). Returns how many were changed. Raises ValueError when a
    regenerated chunk's boxes differ from the file's."""
    from .world import SyntheticWorld

    todo: dict[int, list[tuple[int, Path]]] = {}
    for path in cache_files(folder):
        with np.load(path) as d:
            if key not in d or (stale is not None and stale(d)):
                todo.setdefault(int(d["world_seed"]), []).append((int(path.stem.split("_")[1]), path))
    done, t0 = 0, time.time()
    for seed, items in todo.items():
        world = SyntheticWorld(seed)
        for k, path in items:
            found = location_chunk(world, k)
            with np.load(path) as d:
                data = {name: d[name] for name in d.files}
            boxes = data["boxes"].reshape(-1, 7)
            regenerated = None if found is None else found[1].layout.box_array().reshape(-1, 7)
            if regenerated is None or regenerated.shape != boxes.shape or not np.allclose(regenerated, boxes, atol=1e-4):
                raise ValueError(f"{path}: the regenerated chunk's boxes differ from the cached ones "
                                 "(a cache of another world version?); rebuild the cache instead")
            data[key] = fill(found[1], data)
            data.update(also or {})
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **data)
            tmp.replace(path)
            done += 1
        log(f"{folder.name}: world {seed}: {len(items)} files, {done} in all, {time.time() - t0:.0f} s")
    return done


def _caption_embeddings(captions: list[str], text_table: dict[str, np.ndarray] | None) -> list[np.ndarray | None]:
    """Embeddings [384] of captions: from the table when one is given (None where it lacks one), else by
    the embedder."""
    if text_table is not None:
        return [text_table.get(c) for c in captions]
    if not captions:
        return []
    from ..llm.embedder import embed

    return list(embed(captions))


def write_text_table(path: Path, split: str, n_worlds: int, first_world: int = 0,
                     styles: str = DEFAULT_STYLES, log=print) -> int:
    """Embed the captions of every location the cache builder would build for these worlds (the chunks are
    generated, not rendered) and save them as an .npz of captions [N] and text float32 [N, 384], merged
    with a table already at `path`. Returns the table's size. The cache can then be built where the
    embedder is missing (build_split(text_table=read_text_table(path)))."""
    from .world import SyntheticWorld

    table = read_text_table(path) if Path(path).exists() else {}
    new, world, t0 = [], None, time.time()
    for seed, w, k, style in _locations(split, n_worlds, first_world, styles):
        if world is None or world.seed != seed:
            world = SyntheticWorld(seed)
            log(f"{split}: world {seed} ({w + 1 - first_world}/{n_worlds}), {time.time() - t0:.0f} s")
        found = location_chunk(world, k, style)
        if found is None:
            continue
        caption = found[1].description.caption()
        if caption not in table:
            new.append(caption)
    new = sorted(set(new))
    table.update(zip(new, _caption_embeddings(new, None)))
    captions = sorted(table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, captions=np.array(captions), text=np.stack([table[c] for c in captions]).astype(np.float32))
    return len(captions)


def read_text_table(path: Path) -> dict[str, np.ndarray]:
    """caption -> embedding float32 [384] of a table written by write_text_table."""
    with np.load(path) as d:
        return {str(c): t for c, t in zip(d["captions"], d["text"].astype(np.float32))}


@dataclass
class ImageSample:
    """One cached sample in memory (see the module docstring for the arrays)."""

    arrays: ViewArrays
    text: np.ndarray
    caption: str
    style: np.ndarray
    preview: np.ndarray
    reference: np.ndarray
    T_ref_new: np.ndarray
    guide: np.ndarray | None = None
    """float16 [V, C, h, w]: the first-guess views in a model space (ImageDataset.guided), or None"""
    source: Path | None = None
    """the cache file it was loaded from (where ImageDataset.encoded keeps its latents), or None"""
    areas_version: int = AREA_VERSION
    """how arrays.areas were drawn (AREA_VERSION; 0 = none stored)"""
    facade_paint: np.ndarray | None = None
    """uint8 [L, V, 4, h, w]: the walls' colours of each look (ViewArrays.facade_paint), or None (unknown)"""


def _areas(d) -> np.ndarray | None:
    """A cache file's marks widened to AREA_CHANNELS: a file written before the road paint or the lights were
    stored holds the first kinds of AREA_KINDS only, and the others read as none known (zeros; --add-areas
    adds them)."""
    if "areas" not in d:
        return None
    a = d["areas"]
    return a if a.shape[1] == AREA_CHANNELS else np.concatenate(
        [a, np.zeros((a.shape[0], AREA_CHANNELS - a.shape[1], *a.shape[2:]), a.dtype)], 1)


def load_sample(path: Path) -> ImageSample:
    with np.load(path) as d:
        arrays = ViewArrays(d["semantic"], d["depth"].astype(np.float32), d["persp"], d["points"].astype(np.float32),
                            d["camera"], d["boxes"].reshape(-1, 7), d["box_labels"].reshape(-1),
                            d["box_paints"] if "box_paints" in d else None, _areas(d))
        caption = str(d["caption"])
        if "style" in d:
            style = d["style"]
        else:  # an older cache: its caption states the style; any other caption leaves it unknown (zeros)
            style = style_features(*(SceneDescription.caption_style(caption) or (None, None)))
        return ImageSample(arrays, d["text"], caption, style, d["preview"], d["reference"], d["T_ref_new"],
                           source=Path(path), areas_version=_areas_version(d),
                           facade_paint=d["facade_paint"] if "facade_paint" in d else None)


def _image_digest(s: ImageSample) -> np.ndarray:
    """uint8 [20]: a digest of a sample's looks and reference views (what ImageDataset.encoded encodes)."""
    h = hashlib.sha1()
    for a in (s.preview, s.reference):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return np.frombuffer(h.digest(), np.uint8)


def to_model_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [..., h, w, 3] -> float32 [..., 3, h, w] in [-1, 1] (the pixel-space model's image space); an
    array that is already in a model space (float [..., C, h, w], see ImageDataset.encoded) as float32."""
    if images.dtype != np.uint8:
        return torch.from_numpy(np.ascontiguousarray(images)).float()
    t = torch.from_numpy(np.ascontiguousarray(images)).float() / 127.5 - 1.0
    return t.movedim(-1, -3)


class ImageDataset:
    """Cached samples in memory; `batch` draws (targets, conditions) with a chosen look per sample."""

    def __init__(self, samples: list[ImageSample]) -> None:
        if not samples:
            raise ValueError("ImageDataset: no samples")
        self.samples = samples

    @classmethod
    def load(cls, paths: list[Path]) -> "ImageDataset":
        return cls([load_sample(p) for p in paths])

    def __len__(self) -> int:
        return len(self.samples)

    def missing_areas(self, size: tuple[int, int], cond_size: tuple[int, int]) -> str | None:
        """What to run when some sample's marks (ViewArrays.areas) are missing or drawn before AREA_VERSION
        (a cache of images at `size`, conditions at `cond_size` written before the areas, the paint or the
        lights were stored, or before the light marks were widened or the windows marked), for a model that reads them; None when
        every sample's are current."""
        old = [s for s in self.samples if s.areas_version < AREA_VERSION]
        if not old:
            return None
        names = ", ".join(s.source.name if s.source else "?" for s in old[:3]) + (", ..." if len(old) > 3 else "")
        return (f"{len(old)} of {len(self.samples)} cached samples ({names}) hold no marks or marks drawn before "
                f"version {AREA_VERSION} (road paint, widened light fixtures, windows); draw them first "
                f"(xscene_core.data.image_dataset --split train --size {size[0]} {size[1]} --cond-size "
                f"{cond_size[0]} {cond_size[1]} --add-areas, and the same for --split val)")

    def missing_facades(self, size: tuple[int, int], cond_size: tuple[int, int]) -> str | None:
        """What to run when some sample lacks the walls' colours of its looks (ImageSample.facade_paint), for
        a model that reads them; None when every sample has them."""
        old = [s for s in self.samples if s.facade_paint is None]
        if not old:
            return None
        names = ", ".join(s.source.name if s.source else "?" for s in old[:3]) + (", ..." if len(old) > 3 else "")
        return (f"{len(old)} of {len(self.samples)} cached samples ({names}) hold no wall colours; draw them first "
                f"(xscene_core.data.image_dataset --split train --size {size[0]} {size[1]} --cond-size "
                f"{cond_size[0]} {cond_size[1]} --add-facades, and the same for --split val)")

    def encoded(self, encode, chunk: int = 24, store: Path | None = None) -> "ImageDataset":
        """A copy whose looks and reference views are mapped once into a model space by encode (float
        [N, 3, H, W] in [-1, 1] -> [N, C, h, w], e.g. a frozen autoencoder), stored float16 [L, V, C, h, w]:
        a latent model then trains without running the encoder at every step. store: a folder (latent_store)
        that keeps each loaded sample's latents, so the next run with the same encoder reads them instead
        (a sample whose looks or reference views changed since is encoded again; one whose condition
        alone was redrawn, e.g. by --add-areas, is not)."""
        def enc(images: np.ndarray) -> np.ndarray:
            x = to_model_images(images.reshape(-1, *images.shape[-3:]))
            z = torch.cat([encode(x[i:i + chunk]) for i in range(0, len(x), chunk)])
            return z.to(torch.float16).numpy().reshape(*images.shape[:2], *z.shape[1:])

        def one(s: ImageSample) -> ImageSample:
            kept = None if store is None or s.source is None else Path(store) / s.source.name
            stamp = None if kept is None else _image_digest(s)
            if kept is not None and kept.exists():
                with np.load(kept) as d:
                    if np.array_equal(d["stamp"], stamp):
                        return replace(s, preview=d["preview"], reference=d["reference"])
            out = replace(s, preview=enc(s.preview), reference=enc(s.reference))
            if kept is not None:  # written beside and renamed: a crash leaves no half file
                kept.parent.mkdir(parents=True, exist_ok=True)
                tmp = kept.with_suffix(".tmp.npz")
                np.savez(tmp, preview=out.preview, reference=out.reference, stamp=stamp)
                os.replace(tmp, kept)
            return out

        with torch.no_grad():
            return ImageDataset([one(s) for s in self.samples])

    def in_model_space(self, codec, folder: Path | None = None, device: torch.device | str = "cpu") -> "ImageDataset":
        """`encoded` by codec's encoder (models.image_diffusion.ImageCodec.encode_tensor, run on device) into
        its model space; a latent codec keeps the latents in the latent_store of the samples' cache folder
        `folder` (if given), so the next run of any trainer or evaluation with that encoder and scale
        reads them instead of encoding again."""
        store = None
        if folder is not None and codec.config["space"] == "latent":
            store = latent_store(folder, codec.vae_folder(), f"x{codec.config['vae_scale']:.6g}")
        return self.encoded(lambda x: codec.encode_tensor(x.to(device)).cpu(), store=store)

    def guided(self, codec, device: torch.device | str = "cpu") -> "ImageDataset":
        """A copy of an `encoded` dataset (in codec's model space) whose samples hold their first-guess views,
        drawn once on `device` by codec.first_guess (models.image_diffusion.ImageCodec); `batch` then puts
        them into the conditions (ImageCondition.guide). The guess reads geometry and style, not the look."""
        cfg = codec.config
        out = []
        with torch.no_grad():
            for i, s in enumerate(self.samples):
                _, cond = self.batch([i], [0], [False], cfg["max_boxes"], cfg["image_channels"], cfg["geometry_stride"])
                out.append(replace(s, guide=codec.first_guess(cond.to(device))[0].to(torch.float16).cpu().numpy()))
        return ImageDataset(out)

    def batch(self, index, look, with_reference, max_boxes: int, channels: int = 3, geometry_stride: int = 1):
        """(targets float [B, V, C, h, w], ImageCondition) of samples `index` (int [B]) with looks `look`
        (int [B]); with_reference bool [B] adds the preceding chunk's same look as the reference view and
        its relative pose. Images are in [-1, 1], or in a model space of `channels` channels for an
        `encoded` dataset; geometry_stride: the cached conditions are this many times finer than the
        images; a `guided` dataset's first-guess views go into the condition."""
        from ..models.image_condition import ImageCondition

        items = [self.samples[i] for i in index]
        targets = torch.stack([to_model_images(s.preview[l]) for s, l in zip(items, look)])
        refs = [to_model_images(s.reference[l]).numpy() if r else None
                for s, l, r in zip(items, look, with_reference)]
        poses = [s.T_ref_new if r else None for s, r in zip(items, with_reference)]
        guides = [s.guide for s in items] if all(s.guide is not None for s in items) else None
        # the walls' colours are those of the look drawn
        arrays = [s.arrays if s.facade_paint is None else replace(s.arrays, facade_paint=s.facade_paint[l])
                  for s, l in zip(items, look)]
        cond = ImageCondition.collate(arrays, [s.text for s in items], refs, poses, channels, max_boxes,
                                      [s.style for s in items], geometry_stride, guides)
        return targets, cond


def add_styles_arg(ap: argparse.ArgumentParser) -> None:
    """--styles for the cache builder and the trainers that read the cache."""
    ap.add_argument("--styles", choices=STYLE_MODES, default=DEFAULT_STYLES,
                    help="time of day and weather per location: cycle through all pairs, or each world's own "
                         "(the cache of the shipped image model)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--worlds", type=int, default=40)
    ap.add_argument("--first-world", type=int, default=0, help="skip this many worlds of the split (sharding)")
    ap.add_argument("--size", type=int, nargs=2, default=(64, 112), metavar=("H", "W"), help="image size")
    ap.add_argument("--cond-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="condition size (default: the image size; a latent model's latent size, e.g. 28 50 for 224 400)")
    add_styles_arg(ap)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--text-table", type=Path, default=None,
                    help="caption embeddings from this table (--write-text-table) instead of the embedder package")
    ap.add_argument("--write-text-table", type=Path, default=None, metavar="TABLE",
                    help="only embed the captions of these worlds into TABLE (merged with it), render nothing")
    ap.add_argument("--add-paints", action="store_true",
                    help="only add the boxes' paint colours to the split's cache files that lack them")
    ap.add_argument("--add-facades", action="store_true",
                    help="only add the walls' colours of each look to the split's cache files that lack them")
    ap.add_argument("--add-areas", action="store_true",
                    help="only add the marks (crossings, road paint, light fixtures, windows) to the split's cache files that lack them")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.write_text_table is not None:
        n = write_text_table(args.write_text_table, args.split, args.worlds, args.first_world, args.styles)
        print(f"{args.write_text_table}: {n} captions")
        return
    cond = tuple(args.cond_size) if args.cond_size else None
    if args.add_paints or args.add_areas or args.add_facades:
        folder = cache_dir(args.cache, tuple(args.size), args.split, cond, args.styles)
        if args.add_paints:
            print(f"{folder}: box paints added to {add_paints(folder)} files")
        if args.add_areas:
            print(f"{folder}: marks added to {add_areas(folder)} files")
        if args.add_facades:
            print(f"{folder}: wall colours added to {add_facades(folder)} files")
        return
    table = read_text_table(args.text_table) if args.text_table is not None else None
    paths = build_split(args.cache, args.split, args.worlds, tuple(args.size), args.first_world, cond,
                        styles=args.styles, text_table=table)
    print(f"{args.split}: {len(paths)} samples under {cache_dir(args.cache, tuple(args.size), args.split, cond, args.styles)}")


if __name__ == "__main__":
    main()
