#!/usr/bin/env bash
# One GPU run of the image denoiser in a single command (see checkpoints/image_diffusion/MODEL_CARD.md,
# "A GPU run"). The machine's CPUs build the synthetic 128 x 224 cache in SHARDS processes while its GPU
# trains from the start on whatever is finished (the trainer takes new files at each evaluation); at the
# end the EMA weights of the best validation loss go to $OUT/model/ in float16, with the logs and the loss
# per noise level of the new model and of its start (xscene_core.eval.noise_levels; 7 files in all).
#
# Needs $PREP from scripts/device_prepare.sh (carry it). On the device tool:
#   run(command="bash scripts/device_image_diffusion.sh", carry=["runs/device"], timeout_s=560)
# A dry run on a CPU: DEVICE=cpu MINUTES=1 WORLDS=1 SHARDS=1 BATCH=1 NL_SCENES=2 OUT=/tmp/dry bash scripts/device_image_diffusion.sh
set -euo pipefail
PREP=${PREP:-runs/device}
OUT=${OUT:-runs/device_out}
MINUTES=${MINUTES:-7}          # the trainer's wall-time budget (its cosine follows it)
WORLDS=${WORLDS:-160}          # train worlds asked of the cache builders (the budget ends them earlier)
SHARDS=${SHARDS:-13}           # cache-building processes
BATCH=${BATCH:-16}             # scenes (x 6 views) per step
LR=${LR:-3e-4}
PRESET=${PRESET:-small_latent}
NL_SCENES=${NL_SCENES:-12}     # scenes per split of the per-noise-level figure
DEVICE=${DEVICE:-cuda}
CACHE=${CACHE:-/tmp/xscene_cache}
RUN=${RUN:-/tmp/xscene_run}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
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
$PY -m xscene_core.data.image_dataset --split val --worlds 2 "${SIZE[@]}" > /tmp/cache_val.log 2>&1 &
val=$!
per=$(( (WORLDS + SHARDS - 1) / SHARDS ))
shards=()
for i in $(seq 0 $((SHARDS - 1))); do
    $PY -m xscene_core.data.image_dataset --split train --first-world $((i * per)) --worlds "$per" "${SIZE[@]}" \
        > "/tmp/cache_train_$i.log" 2>&1 &
    shards+=($!)
done
stop_shards() { kill "${shards[@]}" 2>/dev/null || true; }
trap stop_shards EXIT
wait "$val"
train_dir=$CACHE/world-v*/128x224_c64x112_cycle/train
count() { ls $train_dir/w*_*[0-9].npz 2>/dev/null | wc -l; }
for _ in $(seq 150); do  # the first world of each shard (about 40 s), 5 min at most
    [ "$(count)" -ge "$SHARDS" ] && break
    sleep 2
done
[ "$(count)" -gt 0 ] || { echo "no train samples were built:"; tail -n 20 /tmp/cache_train_0.log; exit 1; }
echo "cache: $(count) train samples at the start"

$PY -m xscene_core.train.image_diffusion --preset "$PRESET" --cache "$CACHE" --out "$RUN" --device "$DEVICE" \
    --init "$PREP/init" --vae-path checkpoints/image_autoencoder --batch "$BATCH" --lr "$LR" --warmup 100 \
    --steps 1000000 --max-minutes "$MINUTES" --eval-every 400 --ckpt-every 2000 --log-every 50 --val-samples 32 \
    --high-noise-share 0.3 --threads 2 > "$OUT/train.log" 2>&1 || { tail -n 30 "$OUT/train.log"; exit 1; }
stop_shards
cat /tmp/cache_val.log /tmp/cache_train_*.log > "$OUT/cache.log"
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
$PY -m xscene_core.train.export "$RUN/best" "$OUT/model" --set vae_path=checkpoints/image_autoencoder \
    --set guidance_scale=1.5 --set geometry_decoder=true
echo "cache: $(count) train samples at the end"
tail -n 3 "$OUT/train.log"
# the figure to compare with the CPU runs (image card): the loss per noise level, the new model and its start
for m in "$OUT/model" "$PREP/init"; do
    $PY -m xscene_core.eval.noise_levels --checkpoint "$m" --cache "$CACHE" --device "$DEVICE" --scenes "$NL_SCENES" \
        --json "$OUT/noise_levels_$(basename "$m").json"
done
