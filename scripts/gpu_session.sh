#!/usr/bin/env bash
# One prepared GPU session on an H100/H200 (about 9 minutes): the CUDA figures of issue #7 and,
# optionally, more training of the bundled weights. Results go to ${OUT:-./gpu-out}.
#   STAGE=bench (default): benchmarks only -- eager and torch.compile'd inference, concurrent
#                          callers combined vs one by one, training vs a plain DataLoader
#   STAGE=train-compiled:  only training with a compiled step (CUDA graphs) vs the plain
#                          DataLoader (about 4 minutes; a second device call after STAGE=bench)
#   STAGE=finetune: first fine-tune segapp/bundled/model on fresh phantoms (scripts/bundle_weights.py)
#   STAGE=scratch:  first remake the bundled weights from random initialisation
# The device machine has no Gradio, so the web and start-up parts of segapp.bench are skipped;
# without scipy there, the small-region clean-up is switched off for the benchmark (noted).
# Part 6 (a whole DICOM series in and out) needs pydicom, nibabel and highdicom, which that machine
# lacks: carry their wheels (.whl, see the device README) and install them first, or the part says
# it is skipped.
set -u
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
MINUTES=${MINUTES:-3}
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

WEIGHTS=segapp/bundled/model
if ! python3 -c "import scipy" 2>/dev/null; then
    echo "note: no scipy here; benchmarking with the small-region clean-up off" | tee "$OUT/notes.txt"
    cp -r segapp/bundled/model /tmp/model-no-cleanup
    python3 - <<'EOF'
import json, pathlib
p = pathlib.Path("/tmp/model-no-cleanup/preprocessor_config.json")
d = json.loads(p.read_text()); d.pop("segapp_min_region_px", None); p.write_text(json.dumps(d, indent=2))
EOF
    WEIGHTS=/tmp/model-no-cleanup
fi

# Bundled weights + examples (optional)
case "${STAGE:-bench}" in
    scratch) ARGS=(--minutes "$MINUTES") ;;
    finetune) ARGS=(--base segapp/bundled/model --epochs "${EPOCHS:-30}" --lr "${LR:-2e-4}") ;;
    *) ARGS=() ;;
esac
if [ ${#ARGS[@]} -gt 0 ]; then
    python3 scripts/bundle_weights.py --work /tmp/bundle --model-out "$OUT/model" --examples-out "$OUT/examples" \
        --workers 14 "${ARGS[@]}" 2>&1 | tee "$OUT/bundle.log"
    tar czf "$OUT/model.tgz" -C "$OUT" model && tar czf "$OUT/examples.tgz" -C "$OUT" examples
    cp /tmp/bundle/bundle_report.json "$OUT/" 2>/dev/null
    rm -rf "$OUT/model" "$OUT/examples"
fi

if [ "${STAGE:-bench}" = train-compiled ]; then
    python3 -m segapp.phantom --out /tmp/phantom-train --train 240 --valid 4 --seed 9 --workers 8 --quiet
    timeout 240 python3 -m segapp.bench.training --data /tmp/phantom-train --device cuda --steps 300 \
        --plain-steps 10 --compile reduce-overhead --json "$OUT/train_compiled.json" 2>&1 | tail -40 | tee "$OUT/train_compiled.log"
    exit 0
fi

# Inference (eager and CUDA-graph compiled), concurrency and training benchmarks on the GPU
timeout 420 python3 -m segapp.bench --device cuda --weights "$WEIGHTS" --skip web,startup \
    --compile reduce-overhead --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
