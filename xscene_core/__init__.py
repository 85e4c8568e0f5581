"""xscene_core: the generation core of xscene (types, models, stages, world, data, training, eval).

The public API grows stage by stage; see DESIGN.md for the pipeline. Importing this package is cheap:
heavy dependencies (torch models, nuscenes-devkit) load in the modules that need them.
"""

__version__ = "0.1.0"
