#!/usr/bin/env bash
# One GPU run of the image denoiser in a single command (see checkpoints/image_diffusion/MODEL_CARD.md,
# "A GPU run"). The machine's CPUs build the synthetic 128 x 224 cache in shards while its GPU trains on
# whatever is finished (the trainer starts once the val worlds and a first train world per shard are
# built, and takes new files at each evaluation); at the end the EMA weights of the best validation loss
# go to $OUT/model/ in float16, with the logs and the loss per noise level of the new model and of its
# start (xscene_core.eval.noise_levels): 7 files in all. Everything is timed to end by DEADLINE seconds.
#
# Needs $PREP from scripts/device_prepare.sh (carry it). On the device tool:
#   run(command="bash scripts/device_image_diffusion.sh", carry=["runs/device"], timeout_s=600)
# A dry run on a CPU (the slow test in tests/test_device_scripts.py):
#   DEVICE=cpu DEADLINE=200 WORLDS=1 SHARDS=1 BATCH=1 NL_SCENES=2 PRESET=tiny_latent OUT=/tmp/dry bash scripts/device_image_diffusion.sh
set -euo pipefail
PREP=${PREP:-runs/device}
OUT=${OUT:-runs/device_out}
DEADLINE=${DEADLINE:-540}      # seconds from the start by which the script is done (the tool kills at 600)
RESERVE=${RESERVE:-110}        # seconds kept after training: final evaluation, export, two noise-level runs
WORLDS=${WORLDS:-$(cat "$PREP/worlds")}  # train worlds whose captions the table holds (device_prepare.sh)
SHARDS=${SHARDS:-12}           # train cache-building processes (2 more build the val worlds)
BATCH=${BATCH:-16}             # scenes (x 6 views) per step
LR=${LR:-3e-4}
PRESET=${PRESET:-$(cat "$PREP/preset" 2>/dev/null || echo tiny_latent)}  # init/'s (device_prepare.sh)
OBJECT_WEIGHT=${OBJECT_WEIGHT:-4}  # object boxes' pixels weigh this much more (the shipped recipe)
NL_SCENES=${NL_SCENES:-12}     # scenes per split of the per-noise-level figure
DEVICE=${DEVICE:-cuda}
CACHE=${CACHE:-/tmp/xscene_cache}
RUN=${RUN:-/tmp/xscene_run}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
LOGS=/tmp/xscene_cache_logs
mkdir -p "$LOGS"
shards=()
finish() {  # on any exit: stop the builders, bring their logs back
    kill "${shards[@]}" 2>/dev/null || true
    cat "$LOGS"/*.log > "$OUT/cache.log" 2>/dev/null || true
}
trap finish EXIT
if ! $PY -c "import diffusers" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$PREP"/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
# fail in seconds, not minutes: the device, diffusers and the starting weights
$PY -c "
import sys, torch
from xscene_core.models.image_diffusion import ImageDiffusion
if '$DEVICE' == 'cuda' and not torch.cuda.is_available():
    sys.exit('no CUDA device')
m = ImageDiffusion.from_pretrained('$PREP/init')
print('torch', torch.__version__, 'device', '$DEVICE', 'init', sum(p.numel() for p in m.parameters()), 'parameters')
"

SIZE=(--size 128 224 --cond-size 64 112 --cache "$CACHE" --text-table "$PREP/captions.npz")
vals=()
for w in 0 1; do
    $PY -m xscene_core.data.image_dataset --split val --first-world $w --worlds 1 "${SIZE[@]}" > "$LOGS/val_$w.log" 2>&1 &
    vals+=($!)
done
per=$(( (WORLDS + SHARDS - 1) / SHARDS ))
for i in $(seq 0 $((SHARDS - 1))); do
    n=$(( WORLDS - i * per < per ? WORLDS - i * per : per ))  # the last shard stops where the table does
    [ "$n" -gt 0 ] || break
    $PY -m xscene_core.data.image_dataset --split train --first-world $((i * per)) --worlds "$n" "${SIZE[@]}" \
        > "$LOGS/train_$i.log" 2>&1 &
    shards+=($!)
done
for pid in "${vals[@]}"; do
    wait "$pid" || { echo "the val cache failed:"; tail -n 30 "$LOGS"/val_*.log; exit 1; }
done
train_dir=$CACHE/world-v*/128x224_c64x112_cycle/train
count() { ls $train_dir/w*_*[0-9].npz 2>/dev/null | wc -l; }
alive() { for pid in "${shards[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
until [ "$(count)" -ge "${#shards[@]}" ] || ! alive; do sleep 2; done  # a first world per shard
[ "$(count)" -gt 0 ] || { echo "no train samples were built:"; tail -n 30 "$LOGS/train_0.log"; exit 1; }
minutes=$(awk "BEGIN { print ($DEADLINE - $SECONDS - $RESERVE) / 60 }")
echo "cache: $(count) train samples at the start; training for $minutes min ($SECONDS s spent)"
awk "BEGIN { exit !($minutes > 0.5) }" || { echo "no time left to train"; exit 1; }

$PY -m xscene_core.train.image_diffusion --preset "$PRESET" --cache "$CACHE" --out "$RUN" --device "$DEVICE" \
    --init "$PREP/init" --vae-path checkpoints/image_autoencoder --batch "$BATCH" --lr "$LR" --warmup 100 \
    --steps 1000000 --max-minutes "$minutes" --eval-every 400 --ckpt-every 2000 --log-every 50 --val-samples 32 \
    --high-noise-share 0.3 --object-weight "$OBJECT_WEIGHT" --threads 2 > "$OUT/train.log" 2>&1 || { tail -n 30 "$OUT/train.log"; exit 1; }
echo "cache: $(count) train samples at the end ($SECONDS s spent)"
finish
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
$PY -m xscene_core.train.export "$RUN/best" "$OUT/model" --set vae_path=checkpoints/image_autoencoder \
    --set guidance_scale=1.5 --set geometry_decoder=true
tail -n 3 "$OUT/train.log"
# the figure to compare with the CPU runs (image card): the loss per noise level, the new model and its start
val_count=$(ls $CACHE/world-v*/128x224_c64x112_cycle/val/w*_*[0-9].npz | wc -l)
scenes=$(( NL_SCENES < val_count ? NL_SCENES : val_count ))
for m in "$OUT/model" "$PREP/init"; do
    $PY -m xscene_core.eval.noise_levels --checkpoint "$m" --cache "$CACHE" --device "$DEVICE" --scenes "$scenes" \
        --json "$OUT/noise_levels_$(basename "$m").json" || echo "noise levels of $m failed (the model is in $OUT/model)"
done
echo "done in $SECONDS s"
