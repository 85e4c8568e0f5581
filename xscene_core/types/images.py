"""Per-camera images: renders of the occupancy (semantic, depth) and generated RGB views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import semantics
from ._checks import as_array, check_shape
from .cameras import CameraRig


@dataclass
class RenderedViews:
    """Renders of an occupancy from a rig.

    semantic: uint8 [V, H, W] Occ3D ids (free where nothing is hit); depth: float32 [V, H, W] metres
    along the camera z axis (0 where nothing is hit); alpha: float32 [V, H, W] in [0, 1].
    """

    semantic: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    rig: CameraRig

    def __post_init__(self) -> None:
        v, h, w = len(self.rig), self.rig.cameras[0].height, self.rig.cameras[0].width
        self.semantic = as_array("RenderedViews.semantic", self.semantic, np.uint8, (v, h, w))
        self.depth = as_array("RenderedViews.depth", self.depth, np.float32, (v, h, w))
        self.alpha = as_array("RenderedViews.alpha", self.alpha, np.float32, (v, h, w))
        if self.semantic.max(initial=0) >= semantics.NUM_CLASSES:
            raise ValueError("RenderedViews.semantic: ids must lie in 0..17")
        if (self.depth < 0).any() or (self.alpha < 0).any() or (self.alpha > 1 + 1e-5).any():
            raise ValueError("RenderedViews: depth must be >= 0 and alpha in [0, 1]")

    def save(self, path: str | Path) -> None:
        """One .npz with semantic, depth, alpha and the rig as JSON text (no pickles)."""
        import json

        np.savez_compressed(path, semantic=self.semantic, depth=self.depth, alpha=self.alpha,
                            rig=np.array(json.dumps(self.rig.to_dict())))

    @classmethod
    def load(cls, path: str | Path) -> "RenderedViews":
        import json

        with np.load(path, allow_pickle=False) as d:
            return cls(d["semantic"], d["depth"], d["alpha"], CameraRig.from_dict(json.loads(str(d["rig"]))))


@dataclass
class MultiViewImages:
    """RGB views of a chunk: images uint8 [V, H, W, 3] in the rig's camera order."""

    images: np.ndarray
    rig: CameraRig

    def __post_init__(self) -> None:
        v, h, w = len(self.rig), self.rig.cameras[0].height, self.rig.cameras[0].width
        arr = np.asarray(self.images)
        check_shape("MultiViewImages.images", arr.shape, (v, h, w, 3))
        if arr.dtype != np.uint8:
            raise ValueError(f"MultiViewImages.images: expected uint8, got {arr.dtype}")
        self.images = arr

    def save(self, directory: str | Path) -> list[Path]:
        """Write one PNG per camera plus the rig calibration (rig.json); returns the PNG paths."""
        from PIL import Image

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for cam, img in zip(self.rig.cameras, self.images):
            p = d / f"{cam.name}.png"
            Image.fromarray(img).save(p)
            paths.append(p)
        self.rig.save(d / "rig.json")
        return paths

    @classmethod
    def load(cls, directory: str | Path) -> "MultiViewImages":
        from PIL import Image

        d = Path(directory)
        rig = CameraRig.load(d / "rig.json")
        return cls(np.stack([np.asarray(Image.open(d / f"{n}.png").convert("RGB")) for n in rig.names]), rig)
