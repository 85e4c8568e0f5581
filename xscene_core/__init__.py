"""xscene_core: the generation core of xscene (types, models, stages, world, data, training, eval).

The public API grows stage by stage; see DESIGN.md for the pipeline. Importing this package is cheap:
heavy dependencies (torch models, nuscenes-devkit) load in the modules that need them.
"""

import os

# Idle OpenMP threads sleep instead of spinning. On a small shared CPU a spinning torch pool slows
# everything several-fold (measured: a 0.7 s render took 9-19 s under load). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
