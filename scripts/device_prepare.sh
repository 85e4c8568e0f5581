#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what scripts/device_image_diffusion.sh needs on a GPU machine that has no
# internet, no diffusers and no all-MiniLM-L6-v2 weights (see checkpoints/image_diffusion/MODEL_CARD.md,
# "A GPU run"). Writes $PREP (default runs/device, 18 MB; carry it to the device):
#   wheels/      diffusers and importlib_metadata for Python 3.12 (pure-Python wheels)
#   captions.npz the caption embeddings of every location the GPU machine's cache will hold
#   init/        the starting weights, float16 (default: the shipped checkpoints/image_diffusion, which a
#                fresh checkout has; a run folder such as the wider denoiser's runs/small/best with
#                PRESET=small_latent)
#   preset       the preset of init/ (the device script trains that preset)
#   worlds       the number of train worlds the table covers (the device script builds that many)
# Usage: [PRESET=P] bash scripts/device_prepare.sh [INIT_FOLDER]   (WORLDS=160 by default)
set -euo pipefail
PREP=${PREP:-runs/device}
WORLDS=${WORLDS:-160}
INIT=${1:-checkpoints/image_diffusion}
PRESET=${PRESET:-tiny_latent}
[ -f "$INIT/config.json" ] || { echo "no model in $INIT (give the starting weights' folder)"; exit 1; }
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$PREP/wheels"
diffusers=$($PY -c "import diffusers; print(diffusers.__version__)")
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    -d "$PREP/wheels" "diffusers==$diffusers" importlib_metadata
$PY -m xscene_core.data.image_dataset --split val --worlds 2 --write-text-table "$PREP/captions.npz"
$PY -m xscene_core.data.image_dataset --split train --worlds "$WORLDS" --write-text-table "$PREP/captions.npz"
$PY -m xscene_core.train.export "$INIT" "$PREP/init"
echo "$WORLDS" > "$PREP/worlds"
echo "$PRESET" > "$PREP/preset"
du -sh "$PREP"
