"""Pipeline stages: one class per stage with a typed __call__ (see DESIGN.md).

Stages are imported lazily, so that `python -m xscene_core.stages.<stage>` runs its module once.
"""

from importlib import import_module

_EXPORTS = {"RenderStage": ".render", "default_rig": ".render", "DescribeStage": ".describe",
            "LayoutStage": ".layout", "LayoutInterrupted": ".layout",
            "OccupancyStage": ".occupancy", "OccupancyInterrupted": ".occupancy", "MultiViewStage": ".multiview",
            "MultiViewInterrupted": ".multiview", "GaussianStage": ".gaussians", "GaussiansInterrupted": ".gaussians"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
