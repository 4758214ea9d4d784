#!/usr/bin/env bash
# Issue #19, capacity and schedule levers, on the mixed phantom of docs/experiments/domain_measure.sh
# (DATA/mixed: 8,000 slices seed 21 to train and validate; DATA/score-fresh: 500 slices seed 22).
#   STAGE=runs   SegFormer-B0 and -B1 from random weights, side by side, one CPU thread each (pinned to
#                a core each where taskset exists), so both get the same machine for the same wall time.
#                Each run's step count makes it last about WALL minutes at its own speed (STEPS_B0 and
#                STEPS_B1, measured beforehand with a few steps; the OneCycle schedule then completes);
#                --max-minutes WALL + 2 stops a run that is slower than planned.
#   STAGE=score  every run's best/ with the clean-up MIN_REGION px (and each FINETUNED run folder given, e.g. the bundle's run that
#                fine-tuned the previous bundle for STEPS_B0 steps on the same data) on score-fresh
#                -> OUT/<run>.json, then the table
# Everything else equals the bundle's run: batch 6 x 2, 288 px, lr 3e-4 OneCycle, domain preset, seed 19.
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)  # the repository: this file is docs/experiments/<name>.sh
OUT=${OUT:-./levers-out}; DATA=${DATA:-./domain-out/data}; mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$ROOT} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
WALL=${WALL:-30}; STEPS_B0=${STEPS_B0:-700}; STEPS_B1=${STEPS_B1:-390}; DEVICE=${DEVICE:-cpu}
FINETUNED=${FINETUNED:-}; MIN_REGION=${MIN_REGION:-50}  # the bundle's clean-up, for every run alike
STAGE=${STAGE:-all}
RUNS=("b0-scratch:scratch:$STEPS_B0:0" "b1-scratch:scratch:b1:$STEPS_B1:1")

pin() { if command -v taskset > /dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

if [ "$STAGE" = runs ] || [ "$STAGE" = all ]; then
    for run in "${RUNS[@]}"; do
        name=${run%%:*}; rest=${run#*:}; core=${rest##*:}; rest=${rest%:*}; steps=${rest##*:}; base=${rest%:*}
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 pin "$core" python -m segapp.train --data "$DATA/mixed" \
            --out "$OUT/runs/$name" --base "$base" --augment-preset domain --epochs 1000 --max-steps "$steps" \
            --max-minutes $((WALL + 2)) --valid-every 1 --seed 19 --device "$DEVICE" --no-hausdorff \
            --no-progress --log-every 50 --description "Capacity lever (issue #19): $base, $steps steps" \
            > "$OUT/$name.log" 2>&1 &
    done
    wait
fi

if [ "$STAGE" = score ] || [ "$STAGE" = all ]; then
    folders=()
    for run in "${RUNS[@]}"; do folders+=("$OUT/runs/${run%%:*}"); done
    for extra in $FINETUNED; do folders+=("$extra"); done
    for folder in "${folders[@]}"; do
        python -m segapp.evaluate --data "$DATA/score-fresh/valid" --weights "$folder/best" --device "$DEVICE" \
            --min-region-px "$MIN_REGION" --no-progress --no-hausdorff --json "$OUT/$(basename "$folder").json" > /dev/null
    done
    python - "$OUT" "${folders[@]}" <<'EOF'
import json, pathlib, sys

from transformers import SegformerConfig

from segapp.model.weights import variant_name

out, folders = pathlib.Path(sys.argv[1]), [pathlib.Path(f) for f in sys.argv[2:]]
organs = ("stomach", "small_bowel", "large_bowel")
print("| run | base | variant | steps | training minutes | images/s | best valid Dice | fresh slice Dice | fresh pooled Dice |")
print("|---|---|---|---|---|---|---|---|---|")
for folder in folders:
    r = json.loads((out / f"{folder.name}.json").read_text())
    s = json.loads((folder / "summary.json").read_text())
    c = json.loads((folder / "train_config.json").read_text())
    pooled = sum(r["pooled_dice"][o] for o in organs) / 3
    minutes = s["wall_seconds"] / 60
    print(f"| {folder.name} | {c['base']} | {variant_name(SegformerConfig.from_pretrained(folder / 'best'))} | {s['steps']} | {minutes:.1f} | "
          f"{s['train_images_per_s']:.2f} | {s['best_mean_foreground_dice']:.4f} | "
          f"{r['mean_foreground_dice']:.4f} | {pooled:.4f} |")
EOF
fi
