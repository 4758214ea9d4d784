#!/usr/bin/env bash
# Issue #19: the generalisation check and the levers, on phantoms (real slices are the final judge).
#   STAGE=data      phantom sets: one style to train on (seed 23), and scoring sets of a fresh seed (24)
#                   in every style and in the anatomy variant, plus the mixed sets for a bundle
#                   (seed 21 to train and validate, seed 22: score-fresh, mixed styles)
#   STAGE=baseline  the starting weights (BASE) scored on every scoring set
#   STAGE=cross     two runs on the one style (TRAIN_STYLE, default bssfp), the same budget, differing
#                   only in --augment-preset (classic, domain); each scored on every scoring set
#   STAGE=table     the table of pooled mean Dice per scoring set, from OUT/*.json
#   STAGE=all       data, baseline, cross, table
# Sizes: STEPS (500), BATCH (8), SIZE (192), BASE (segapp/bundled/model), DEVICE (auto).
# On 2 CPU cores with nothing else running: about 4 minutes of training a run (20 images/s at 192),
# and 2 minutes a scoring set of 400 slices (about 3.5 slices/s).
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)  # the repository: this file is docs/experiments/<name>.sh
OUT=${OUT:-./domain-out}; DATA=${DATA:-$OUT/data}; mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$ROOT} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
STEPS=${STEPS:-500}; BATCH=${BATCH:-8}; SIZE=${SIZE:-192}; DEVICE=${DEVICE:-auto}
BASE=${BASE:-$ROOT/segapp/bundled/model}; TRAIN_STYLE=${TRAIN_STYLE:-bssfp}; WORKERS=${WORKERS:-$(nproc)}
SCORES=(bssfp t2 t1 variant)
STAGE=${STAGE:-all}
phantom() { python -m segapp.phantom --workers "$WORKERS" --quiet "$@"; }

if [ "$STAGE" = data ] || [ "$STAGE" = all ]; then
    [ -d "$DATA/only-$TRAIN_STYLE" ] || phantom --out "$DATA/only-$TRAIN_STYLE" --train 3000 --valid 300 --seed 23 --style "$TRAIN_STYLE"
    for s in bssfp t2 t1; do
        [ -d "$DATA/score-$s" ] || phantom --out "$DATA/score-$s" --train 1 --valid 400 --seed 24 --style "$s"
    done
    [ -d "$DATA/score-variant" ] || phantom --out "$DATA/score-variant" --train 1 --valid 400 --seed 24 --anatomy variant
    [ -d "$DATA/mixed" ] || phantom --out "$DATA/mixed" --train 8000 --valid 300 --seed 21
    [ -d "$DATA/score-fresh" ] || phantom --out "$DATA/score-fresh" --train 1 --valid 500 --seed 22
fi

score() {  # score WEIGHTS NAME: every scoring set -> OUT/NAME-<set>.json
    for s in "${SCORES[@]}" fresh; do
        python -m segapp.evaluate --data "$DATA/score-$s/valid" --weights "$1" --device "$DEVICE" \
            --no-progress --no-hausdorff --json "$OUT/$2-$s.json" > /dev/null
    done
}

if [ "$STAGE" = baseline ] || [ "$STAGE" = all ]; then
    score "$BASE" base
fi

if [ "$STAGE" = cross ] || [ "$STAGE" = all ]; then
    for preset in classic domain; do
        name="$TRAIN_STYLE-$preset"
        python -m segapp.train --data "$DATA/only-$TRAIN_STYLE" --out "$OUT/runs/$name" --base "$BASE" \
            --augment-preset "$preset" --image-size "$SIZE" --batch-size "$BATCH" --grad-accum 1 \
            --epochs 1000 --max-steps "$STEPS" --valid-every 2 --seed 7 --device "$DEVICE" \
            --no-progress --log-every 100 --no-hausdorff --description "Phantom, style $TRAIN_STYLE only (issue #19)"
        score "$OUT/runs/$name/best" "$name"
    done
fi

if [ "$STAGE" = table ] || [ "$STAGE" = all ]; then
    python - "$OUT" "${SCORES[@]}" fresh <<'PY'
import json, pathlib, sys

out, sets = pathlib.Path(sys.argv[1]), sys.argv[2:]
organs = ("stomach", "small_bowel", "large_bowel")
models = sorted({p.name.rsplit("-", 1)[0] for p in out.glob("*.json")})
print("| weights | " + " | ".join(sets) + " |")
print("|---|" + "---|" * len(sets))
for model in models:
    cells = []
    for s in sets:
        path = out / f"{model}-{s}.json"
        if path.is_file():
            pooled = json.loads(path.read_text())["pooled_dice"]
            cells.append(f"{sum(pooled[o] for o in organs) / 3:.3f}")
        else:
            cells.append("")
    print(f"| {model} | " + " | ".join(cells) + " |")
PY
fi
