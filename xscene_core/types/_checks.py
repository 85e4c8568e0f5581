"""Validation helpers shared by the type dataclasses: each raises ValueError with a message that names
the field, the expected shape/dtype and what it got."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def as_array(name: str, value: Any, dtype: Any, shape: Sequence[int | None]) -> np.ndarray:
    """Convert `value` to an array of `dtype` and check its shape (None = any length) and finiteness."""
    try:
        raw = np.asarray(value)
        if np.dtype(dtype).kind in "iu" and raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
                raise ValueError(f"{name}: expected whole numbers for a {np.dtype(dtype).name} array")
        if np.dtype(dtype).kind == "u" and raw.size and raw.dtype.kind in "if" and raw.min() < 0:
            raise ValueError(f"{name}: negative values for an unsigned array")
        arr = raw.astype(dtype, copy=False)
    except (TypeError, ValueError, OverflowError) as e:
        if str(e).startswith(name):
            raise
        raise ValueError(f"{name}: cannot convert to {np.dtype(dtype).name} array ({e})") from None
    check_shape(name, arr.shape, shape)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_shape(name: str, got: Sequence[int], want: Sequence[int | None]) -> None:
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        pretty = "[" + ", ".join("N" if w is None else str(w) for w in want) + "]"
        raise ValueError(f"{name}: expected shape {pretty}, got {list(got)}")


def check_finite(name: str, *values: float) -> None:
    if not all(np.isfinite(v) for v in values):
        raise ValueError(f"{name}: values must be finite, got {values}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(repr, choices))}")


def check_positive(name: str, *values: float) -> None:
    check_finite(name, *values)
    if not all(v > 0 for v in values):
        raise ValueError(f"{name}: values must be > 0, got {values}")
