"""Reading what users upload into typed objects, with messages a user can act on (ValueError)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from xscene_core.types.layout import Layout
from xscene_core.types.occupancy import GridSpec
from xscene_core.types.scene import SceneDescription

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def read_layout_file(path: str | Path) -> tuple[Layout, SceneDescription | None]:
    """A project layout JSON ({"format": "xscene.layout/1", "boxes": [...], ...}); a file may also hold
    {"layout": {...}, "description": {...}} (the description's keys as in the paper's JSON).
    Raises ValueError saying what is wrong with the file."""
    p = Path(path)
    name = p.name
    if p.stat().st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is too large for a layout ({p.stat().st_size / 1e6:.1f} MB)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{name} is not a JSON file ({err}). Upload a layout JSON as written by "
                         "Layout.save (\"format\": \"xscene.layout/1\").") from None
    description = None
    if isinstance(data, dict) and "layout" in data:
        if data.get("description") is not None:
            try:
                description = SceneDescription.from_json_dict(data["description"])
            except ValueError as err:
                raise ValueError(f"{name}: the description is not valid: {err}") from None
        data = data["layout"]
    try:
        layout = Layout.from_dict(data)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{name}: a box or map element lacks a field or has a wrong type ({err})") from None
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    if not layout.boxes and not layout.lanes:
        raise ValueError(f"{name}: the layout has no boxes and no lanes; there is nothing to generate from")
    return layout, description


def read_nuscenes_sample(dataroot: str, version: str, sample: str) -> tuple[Layout, str]:
    """The boxes of one nuScenes keyframe (in its ego frame, inside the chunk) through
    xscene_core.data.nuscenes; `sample` is a token or an index (blank: the first). Returns (layout, token)."""
    from xscene_core.data.nuscenes import NuScenesSource

    if not dataroot.strip():
        raise ValueError("give the nuScenes dataroot folder (the one holding v1.0-mini/ and maps/)")
    source = NuScenesSource(dataroot.strip(), version.strip() or "v1.0-mini")
    tokens = source.sample_tokens()
    if not tokens:
        raise ValueError("that nuScenes release has no samples")
    sample = sample.strip()
    if not sample:
        token = tokens[0]
    elif sample.isdigit():
        if int(sample) >= len(tokens):
            raise ValueError(f"sample index {sample} is out of range (the release has {len(tokens)} samples)")
        token = tokens[int(sample)]
    else:
        token = sample
    layout = source.layout(token, within=GridSpec())
    return layout, token


def zip_folder(folder: Path, target: Path) -> Path:
    """The folder's files in a zip (paths relative to the folder)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder))
    return target
