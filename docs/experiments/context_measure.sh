#!/usr/bin/env bash
# Issue #18: 2D against 2.5D (channel offsets +-1 and +-2) on coherent phantom case-days, the same
# training budget for every run, scored on a phantom set of a fresh seed. Results in ${OUT:-./ctx-out}.
#   STAGE=data   raw-layout phantoms (seed 31: train + validation; seed 32: scoring), prepared with
#                every slice kept (dropped empty slices would be false edges for the neighbours)
#   STAGE=train  the three runs: same data, seed, steps and batch; only --context differs
#   STAGE=score  each run's best/ on the scoring set (needs scipy: the 3D figures) -> OUT/<run>.json,
#                then the table (pooled per-organ Dice, its mean, the competition score)
#   STAGE=all    the three in a row (default)
# Sizes: TRAIN_SLICES (2400), SCORE_SLICES (1200), STEPS (3000), BATCH (16), SIZE (288), VALID_EVERY (4
# epochs), DEVICE (auto), BASE (scratch; or a model folder to fine-tune from, e.g. segapp/bundled/model),
# AUGMENT (classic, the set the table in docs/experiments/context-2.5d.md was measured with; or domain).
# The phantoms are deterministic per seed, so data made twice is the same data.
# A tiny check of the whole way (about 35 s on 2 CPU cores):
#   TRAIN_SLICES=120 SCORE_SLICES=80 STEPS=4 BATCH=4 SIZE=64 bash docs/experiments/context_measure.sh
# On the GPU machine (no scipy there, and only small results come back): train there, score here:
#   there: DATA=/tmp/ctx-data OUT=/tmp/ctx STAGE=data bash docs/experiments/context_measure.sh &&
#          DATA=/tmp/ctx-data OUT=/tmp/ctx STAGE=train bash docs/experiments/context_measure.sh &&
#          for r in 2d ctx1 ctx2; do mkdir -p $OUT/runs/$r && cp -r /tmp/ctx/runs/$r/{best,summary.json,metrics.jsonl} $OUT/runs/$r/; done
#   here:  OUT=<the fetched folder> STAGE=data bash docs/experiments/context_measure.sh && OUT=<same> STAGE=score bash docs/experiments/context_measure.sh
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)  # the repository: this file is docs/experiments/<name>.sh
OUT=${OUT:-./ctx-out}; DATA=${DATA:-$OUT/data}; mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$ROOT} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
TRAIN_SLICES=${TRAIN_SLICES:-2400}; SCORE_SLICES=${SCORE_SLICES:-1200}
STEPS=${STEPS:-3000}; BATCH=${BATCH:-16}; SIZE=${SIZE:-288}; DEVICE=${DEVICE:-auto}; VALID_EVERY=${VALID_EVERY:-4}; BASE=${BASE:-scratch}; AUGMENT=${AUGMENT:-classic}
WORKERS=${WORKERS:-$(nproc)}
RUNS=("2d:0,0,0" "ctx1:-1,0,1" "ctx2:-2,0,2")
STAGE=${STAGE:-all}

if [ "$STAGE" = data ] || [ "$STAGE" = all ]; then
    python -m segapp.phantom --out "$DATA/raw-train" --train "$TRAIN_SLICES" --seed 31 --raw --workers "$WORKERS" --quiet
    python -m segapp.prepare --raw "$DATA/raw-train" --out "$DATA/train" --keep-empty --valid-fraction 0.15 --no-progress
    python -m segapp.phantom --out "$DATA/raw-score" --train "$SCORE_SLICES" --seed 32 --raw --workers "$WORKERS" --quiet
    # Nearly every case-day to the scoring split (prepare keeps at least one case on the other side).
    python -m segapp.prepare --raw "$DATA/raw-score" --out "$DATA/score" --keep-empty --valid-fraction 0.95 --no-progress
fi

if [ "$STAGE" = train ] || [ "$STAGE" = all ]; then
    for run in "${RUNS[@]}"; do
        name=${run%%:*}; offsets=${run#*:}
        start=$SECONDS
        python -m segapp.train --data "$DATA/train" --out "$OUT/runs/$name" \
            --base "$BASE" --augment-preset "$AUGMENT" --context "$offsets" --image-size "$SIZE" --batch-size "$BATCH" --grad-accum 1 \
            --epochs 1000 --max-steps "$STEPS" --valid-every "$VALID_EVERY" --seed 7 --device "$DEVICE" \
            --no-progress --log-every 100 --no-hausdorff --description "Phantom case-days, seed 31 (issue #18, run $name)"
        echo "$name: trained in $((SECONDS - start)) s"
    done
fi

if [ "$STAGE" = score ] || [ "$STAGE" = all ]; then
    for run in "${RUNS[@]}"; do
        name=${run%%:*}
        python -m segapp.evaluate --data "$DATA/score/valid" --weights "$OUT/runs/$name/best" --device "$DEVICE" \
            --no-progress --json "$OUT/$name.json"
    done
    python - "$OUT" "${RUNS[@]}" <<'EOF'
import json, pathlib, sys

out, runs = pathlib.Path(sys.argv[1]), sys.argv[2:]
organs = ("stomach", "small_bowel", "large_bowel")
print("| model | offsets | stomach | small bowel | large bowel | mean pooled Dice | mean slice Dice | competition score |")
print("|---|---|---|---|---|---|---|---|")
for run in runs:
    name, offsets = run.split(":")
    r = json.loads((out / f"{name}.json").read_text())
    pooled = [r["pooled_dice"][o] for o in organs]
    score = r["competition"].get("score")
    print(f"| {name} | {offsets} | " + " | ".join(f"{v:.4f}" for v in pooled)
          + f" | {sum(pooled) / 3:.4f} | {r['mean_foreground_dice']:.4f} | "
          + (f"{score:.4f}" if score is not None else r["competition"].get("skipped", "")) + " |")
EOF
fi
