"""Neural network modules, one architecture per file (see DESIGN.md). Imported lazily."""

from importlib import import_module

_EXPORTS = {"LayoutDiffusion": ".layout_diffusion", "ImageDiffusion": ".image_diffusion", "Segmenter": ".segmenter"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
