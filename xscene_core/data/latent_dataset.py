"""Training data of the triplane latent diffusion model: chunks encoded by the frozen triplane VAE.

Two caches under one folder, so that a new VAE re-encodes without regenerating the world:

    CACHE/world-v{WORLD_VERSION}/{split}/w{seed:06d}_{k:02d}.npz       one chunk, VAE-independent:
        labels uint8 [X, Y, Z], bev uint8 [Cb, X, Y] (BEV layout map coverage x 255), boxes float32 [N, 7],
        box_labels int64 [N], text float32 [384] (all-MiniLM-L6-v2 embedding of the caption), caption
    CACHE/latents-{vae_hash}/world-v{WORLD_VERSION}/{split}/<same name>.npz
        latents float16 [4, C, X'+Z', Y'+Z']: the rolled-out VAE latent of the chunk and of its x-, y- and
        xy-mirrored volumes (flip order FLIPS); float16 for storage only, training computes in fp32

`vae_hash` is a digest of the VAE's encoder (settings and weights), so retraining the encoder never reads
stale latents while a retrained decoder keeps them; WORLD_VERSION changes whenever the same seed starts to give different chunks. Chunks are
taken from the first N worlds of a split (`xscene_core.data.splits`: train / val / test never share a
world), `per_world` locations per world cycling through the environments. A dataset folder written by
`xscene_core.data.build` (or real data in that layout) plugs in with `--data`.

    python -m xscene_core.data.latent_dataset --vae checkpoints/triplane_vae --worlds 60 --cache runs/occdiff_cache
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.condition_encoders import OccupancyCondition, flip_boxes
from ..types.occupancy import GridSpec
from ..types.scene import ENVIRONMENTS
from .splits import world_seeds

FLIPS = ((False, False), (True, False), (False, True), (True, True))  # (mirror x, mirror y) per stored latent


def vae_hash(vae_dir: str | Path) -> str:
    """12 hex digits of the SHA-256 of a VAE folder's encoder: the latent-shaping settings of config.json
    (models.triplane_vae.ENCODER_CONFIG) and the encoder's tensors in model.safetensors (ENCODER_MODULES).
    The decoder is left out on purpose: retraining it (train.triplane_vae --freeze-encoder) keeps every
    latent, the cache and the diffusion models trained on them valid."""
    import json

    from safetensors import safe_open

    from ..models.triplane_vae import ENCODER_CONFIG, ENCODER_MODULES

    vae_dir = Path(vae_dir)
    config = json.loads((vae_dir / "config.json").read_text())
    h = hashlib.sha256(json.dumps({k: config.get(k) for k in ENCODER_CONFIG}, sort_keys=True).encode())
    with safe_open(str(vae_dir / "model.safetensors"), framework="pt") as f:
        for key in sorted(k for k in f.keys() if k.split(".", 1)[0] in ENCODER_MODULES):
            t = f.get_tensor(key).contiguous()
            h.update(key.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:12]


def _world_version() -> int:
    from .world import WORLD_VERSION

    return WORLD_VERSION


def chunk_dir(cache: Path, split: str) -> Path:
    return Path(cache) / f"world-v{_world_version()}" / split


def latent_dir(cache: Path, vae_digest: str, split: str) -> Path:
    return Path(cache) / f"latents-{vae_digest}" / f"world-v{_world_version()}" / split


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def chunk_arrays(chunk, grid: GridSpec) -> dict:
    """The cached arrays of one Chunk (occupancy, layout, description); text is filled in by the caller."""
    from ..ops.condition_maps import bev_layout_map

    lay = chunk.layout
    bev = np.rint(bev_layout_map(lay, grid).channels * 255).astype(np.uint8)
    caption = chunk.description.caption() if chunk.description is not None else ""
    return dict(labels=chunk.occupancy.labels.astype(np.uint8), bev=bev, boxes=lay.box_array().astype(np.float32),
                box_labels=lay.box_labels(), caption=np.array(caption))


def build_chunks(cache: Path, split: str, n_worlds: int, per_world: int = len(ENVIRONMENTS), log=print) -> list[Path]:
    """Chunk files of the first n_worlds worlds of `split` (generated where missing); returns their paths."""
    from ..llm.embedder import embed
    from .world import SyntheticWorld

    out_dir, paths, seeds, t0 = chunk_dir(cache, split), [], world_seeds(split), time.time()
    for w in range(n_worlds):
        seed = next(seeds)
        todo = []
        for k in range(per_world):
            p = out_dir / f"w{seed:06d}_{k:02d}.npz"
            if p.exists():
                paths.append(p)
            else:
                todo.append((k, p))
        if not todo:
            continue
        world, items = SyntheticWorld(seed), []
        for k, p in todo:
            try:
                x, y = world.find_location(ENVIRONMENTS[k % len(ENVIRONMENTS)], start=k)
            except ValueError:  # this world has no such environment
                continue
            items.append((p, chunk_arrays(world.chunk(x, y), world.grid)))
        texts = embed([str(a["caption"]) for _, a in items]) if items else []
        for (p, a), t in zip(items, texts):
            _save_npz(p, **a, text=t.astype(np.float32), world_seed=np.int64(seed))
            paths.append(p)
        log(f"{split}: world {seed} ({w + 1}/{n_worlds}) -> {len(items)} chunks, {time.time() - t0:.0f} s")
    return sorted(paths)


def dataset_chunks(cache: Path, data: Path, split: str, grid: GridSpec | None = None, log=print) -> list[Path]:
    """Chunk files of a dataset folder's split (xscene_core.data.build layout: DATA/<split>/<chunk>/ with
    labels.npz, layout.json, description.json), converted into the chunk cache where missing."""
    from ..llm.embedder import embed
    from .chunk_io import is_complete, load_chunk

    out_dir = Path(cache) / "datasets" / hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:8] / split
    paths, todo = [], []
    for d in sorted(p for p in (Path(data) / split).iterdir() if p.is_dir() and is_complete(p)):
        p = out_dir / f"{d.name}.npz"
        (paths.append(p) if p.exists() else todo.append((d, p)))
    for i in range(0, len(todo), 64):
        items = []
        for d, p in todo[i:i + 64]:
            chunk, _ = load_chunk(d)
            if chunk.occupancy is None or chunk.layout is None:
                continue
            items.append((p, chunk_arrays(chunk, grid or chunk.occupancy.grid)))
        for (p, a), t in zip(items, embed([str(a["caption"]) for _, a in items])):
            _save_npz(p, **a, text=t.astype(np.float32))
            paths.append(p)
        log(f"{split}: {min(i + 64, len(todo))}/{len(todo)} dataset chunks converted")
    return sorted(paths)


@torch.no_grad()
def encode_latents(vae, chunk_paths: list[Path], out_dir: Path, log=print) -> list[Path]:
    """Latent files (FLIPS x rolled-out latent, float16) of chunk files, encoded where missing."""
    from ..ops.triplane import rollout

    out, t0 = [], time.time()
    for i, p in enumerate(chunk_paths):
        q = Path(out_dir) / p.name
        if not q.exists():
            with np.load(p) as d:
                labels = d["labels"]
            vols = np.stack([labels[::-1 if fx else 1, ::-1 if fy else 1] for fx, fy in FLIPS])
            planes = vae.encode(torch.from_numpy(np.ascontiguousarray(vols)))
            lat = rollout(planes.xy, planes.xz, planes.yz).cpu().numpy().astype(np.float16)
            _save_npz(q, latents=lat)
            if (i + 1) % 20 == 0:
                log(f"encoded {i + 1}/{len(chunk_paths)} chunks, {time.time() - t0:.0f} s")
        out.append(q)
    return out


@dataclass
class LatentDataset:
    """Encoded chunks in memory.

    latents: float16 [M, 4, C, H, W] (VAE units, one per flip of FLIPS); bev: uint8 [M, Cb, X, Y];
    boxes / box_labels: per chunk float32 [N_i, 7] / int64 [N_i]; text: float32 [M, 384]; captions.
    """

    latents: torch.Tensor
    bev: np.ndarray
    boxes: list[np.ndarray]
    box_labels: list[np.ndarray]
    text: np.ndarray
    captions: list[str]
    grid: GridSpec

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    @classmethod
    def load(cls, chunk_paths: list[Path], latent_paths: list[Path], grid: GridSpec | None = None) -> "LatentDataset":
        lat, bev, boxes, labels, text, caps = [], [], [], [], [], []
        for p, q in zip(chunk_paths, latent_paths):
            with np.load(p) as d, np.load(q) as e:
                lat.append(torch.from_numpy(e["latents"]))
                bev.append(d["bev"])
                boxes.append(d["boxes"].reshape(-1, 7))
                labels.append(d["box_labels"].reshape(-1))
                text.append(d["text"])
                caps.append(str(d["caption"]))
        if not lat:
            raise ValueError("LatentDataset: no chunks")
        return cls(torch.stack(lat), np.stack(bev), boxes, labels, np.stack(text), caps, grid or GridSpec())

    def latent_std(self) -> float:
        """Standard deviation of the unflipped latents over the plane cells (the zero corner left out)."""
        x = self.latents[:, 0].float()                 # [M, C, H, W]
        cells = ~(x == 0).all(dim=1).all(dim=0)          # [H, W]: False in the padded corner
        return float(x[..., cells].std())

    def batch(self, index: np.ndarray, flip: np.ndarray | None = None, max_boxes: int | None = None
              ) -> tuple[torch.Tensor, OccupancyCondition]:
        """(latents float32 [B, C, H, W] in VAE units, conditions) of chunks `index` with flips `flip`
        (indices into FLIPS; 0 = none)."""
        index = np.asarray(index, dtype=np.int64)
        flip = np.zeros(len(index), np.int64) if flip is None else np.asarray(flip, dtype=np.int64)
        lat = self.latents[torch.from_numpy(index), torch.from_numpy(flip)].float()
        bev, boxes = [], []
        for i, f in zip(index, flip):
            fx, fy = FLIPS[f]
            bev.append(np.ascontiguousarray(self.bev[i][:, ::-1 if fx else 1, ::-1 if fy else 1]))
            boxes.append(flip_boxes(self.boxes[i], fx, fy, self.grid))
        cond = OccupancyCondition.from_arrays(bev, boxes, [self.box_labels[i] for i in index],
                                              [self.text[i] for i in index], self.text.shape[1], max_boxes)
        return lat, cond


def load_split(cache: Path, split: str, vae_dir: Path, n_worlds: int | None = None, data: Path | None = None,
               per_world: int = len(ENVIRONMENTS), log=print) -> LatentDataset:
    """Build (where missing) and load one split: synthetic worlds (n_worlds) or a dataset folder (data)."""
    from ..models.triplane_vae import TriplaneVAE

    if data is not None:
        chunks = dataset_chunks(cache, data, split, log=log)
    else:
        chunks = build_chunks(cache, split, n_worlds or 1, per_world, log)
    vae = TriplaneVAE.from_pretrained(vae_dir)
    lats = encode_latents(vae, chunks, latent_dir(cache, vae_hash(vae_dir), split), log)
    return LatentDataset.load(chunks, lats)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", type=Path, required=True, help="TriplaneVAE folder (save_pretrained)")
    ap.add_argument("--cache", type=Path, default=Path("runs/occdiff_cache"))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--worlds", type=int, default=60, help="train worlds")
    src.add_argument("--data", type=Path, help="dataset folder (xscene_core.data.build layout)")
    ap.add_argument("--val-worlds", type=int, default=2)
    ap.add_argument("--per-world", type=int, default=len(ENVIRONMENTS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for split, n in (("train", args.worlds), ("val", args.val_worlds)):
        ds = load_split(args.cache, split, args.vae, n, args.data, args.per_world)
        print(f"{split}: {len(ds)} chunks, latent std {ds.latent_std():.4f}")


if __name__ == "__main__":
    main()
