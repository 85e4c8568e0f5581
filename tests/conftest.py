"""Test-wide settings: offline switches and caches in a temp dir (DESIGN.md), shared paths and fixtures."""

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="xscene-tests-"))
for key, value in {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False", "MPLCONFIGDIR": str(_TMP / "mpl"),
    # idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # slow torch down several-fold
    "OMP_WAIT_POLICY": "PASSIVE",
    "XDG_CACHE_HOME": str(_TMP / "cache"), "GRADIO_TEMP_DIR": str(_TMP / "gradio"),
}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ARTIFACTS = REPO / "artifacts"  # pictures tests save for people to look at (git-ignored)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_labels_path(shared_data: Path) -> Path:
    return shared_data / "occ3d_nuscenes_sample" / "labels.npz"


@pytest.fixture(scope="session")
def cameras_json(shared_data: Path) -> Path:
    return shared_data / "nuscenes_cameras.json"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
