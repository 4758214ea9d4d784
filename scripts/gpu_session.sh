#!/usr/bin/env bash
# One prepared GPU session (about 8 minutes on an H100/H200): continue the bundled weights,
# check the Segmenter's CUDA path, and run the GPU benchmarks. Results go to ${OUT:-./gpu-out}.
#   STAGE=finetune (default): fine-tune assets/model on fresh phantoms (the 0.90 Dice bar)
#   STAGE=scratch: remake the bundled weights from random initialisation
# The device machine has no Gradio, so the web and start-up parts of segapp.bench are skipped.
set -u
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
MINUTES=${MINUTES:-3}
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

# Bundled weights + examples
if [ "${STAGE:-finetune}" = scratch ]; then
    ARGS=(--minutes "$MINUTES")
else
    ARGS=(--base assets/model --epochs "${EPOCHS:-30}" --lr "${LR:-2e-4}")
fi
python3 scripts/bundle_weights.py --work /tmp/bundle --model-out "$OUT/model" --examples-out "$OUT/examples" \
    --workers 14 "${ARGS[@]}" 2>&1 | tee "$OUT/bundle.log"
tar czf "$OUT/model.tgz" -C "$OUT" model && tar czf "$OUT/examples.tgz" -C "$OUT" examples
cp /tmp/bundle/bundle_report.json "$OUT/" 2>/dev/null
rm -rf "$OUT/model" "$OUT/examples"

# Inference and training benchmarks on the GPU (latency vs the usual recipes, batch throughput, training)
python3 -m segapp.bench --device cuda --weights assets/model --skip web,startup --json "$OUT/bench.json" \
    2>&1 | tee "$OUT/bench.log"
