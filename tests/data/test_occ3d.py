"""Occ3D labels.npz reading and writing against the real Occ3D-nuScenes frame in ../shared/data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xscene_core import semantics
from xscene_core.data.occ3d import KEYS, read_labels_npz, write_labels_npz
from xscene_core.types import GridSpec, Occupancy


def _raw(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def test_real_frame_reads_into_occupancy(real_labels_path):
    occ = read_labels_npz(real_labels_path)
    assert occ.labels.shape == (200, 200, 16) and occ.labels.dtype == np.uint8
    assert occ.grid == GridSpec()
    assert occ.mask_lidar.shape == occ.mask_camera.shape == (200, 200, 16)
    # The frame as documented in ../shared/data/README.md.
    assert int(occ.occupied.sum()) == 31_107
    present = set(np.flatnonzero(occ.class_counts()).tolist())
    assert present == {2, 4, 5, 6, 11, 12, 13, 14, 15, 16, semantics.FREE}
    assert Occupancy.load(real_labels_path).labels.tobytes() == occ.labels.tobytes()


@pytest.mark.parametrize("compressed", [True, False])
def test_write_then_read_is_bit_exact(real_labels_path, tmp_path, compressed):
    original = _raw(real_labels_path)
    out = tmp_path / "sub" / "labels.npz"
    write_labels_npz(out, read_labels_npz(real_labels_path), compressed=compressed)
    written = _raw(out)
    assert sorted(written) == sorted(original) == sorted(KEYS)
    for k in KEYS:
        assert written[k].dtype == original[k].dtype == np.uint8, k
        assert written[k].shape == original[k].shape, k
        assert np.array_equal(written[k], original[k]), k
    again = read_labels_npz(out)
    assert np.array_equal(again.labels, original["semantics"])
    assert np.array_equal(again.mask_camera, original["mask_camera"].astype(bool))


def test_occupancy_save_without_masks_writes_all_visible(tmp_path):
    labels = np.full(GridSpec().shape, semantics.FREE, np.uint8)
    labels[100, 100, 2] = semantics.ID["car"]
    Occupancy(labels).save(tmp_path / "labels.npz")
    raw = _raw(tmp_path / "labels.npz")
    assert np.array_equal(raw["semantics"], labels)
    assert raw["mask_lidar"].dtype == np.uint8 and raw["mask_lidar"].all() and raw["mask_camera"].all()


def test_npz_without_semantics_names_the_file(tmp_path):
    path = tmp_path / "not_labels.npz"
    np.savez(path, voxels=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*semantics"):
        read_labels_npz(path)


def test_broken_zip_names_the_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_labels_npz(path)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "missing.npz"
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_labels_npz(path)


def test_text_file_names_the_file(tmp_path):
    path = tmp_path / "labels.npz"
    path.write_text("semantics = not an archive")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_labels_npz(path)


def test_npy_file_names_the_file(tmp_path):
    path = tmp_path / "labels.npy"
    np.save(path, np.zeros((200, 200, 16), np.uint8))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_labels_npz(path)
