#!/usr/bin/env bash
# One prepared GPU session: bundled weights, CUDA check of the Segmenter, training benchmark.
# Run from the repository root on a CUDA machine; results go to ${OUT:-./gpu-out}.
set -u
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
MINUTES=${MINUTES:-3.5}
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

# Bundled weights + examples
python3 scripts/bundle_weights.py --work /tmp/bundle --model-out "$OUT/model" --examples-out "$OUT/examples" \
    --minutes "$MINUTES" --workers 14 2>&1 | tee "$OUT/bundle.log"
tar czf "$OUT/model.tgz" -C "$OUT" model && tar czf "$OUT/examples.tgz" -C "$OUT" examples
cp /tmp/bundle/bundle_report.json "$OUT/" 2>/dev/null
rm -rf "$OUT/model" "$OUT/examples"

# CUDA path of the inference service: load straight onto the GPU, warm-up, latency, batch throughput
python3 - "$OUT" <<'PY' 2>&1 | tee "$OUT/cuda_check.log"
import json, statistics, sys, time, tarfile, tempfile
from pathlib import Path
import torch
from segapp.segmenter import Segmenter
from segapp.phantom import generate_slice
out = Path(sys.argv[1]); tmp = Path(tempfile.mkdtemp())
tarfile.open(out / "model.tgz").extractall(tmp)
seg = Segmenter.from_pretrained(tmp / "model", device="auto")
assert seg.device.type == "cuda" and next(seg.model.parameters()).is_cuda
slices = [generate_slice(s, size=(266, 266)).image8 for s in range(64)]
lat = []
for i in range(60):
    t = time.perf_counter(); p = seg.predict(slices[i % 64]); lat.append((time.perf_counter() - t) * 1000)
res = {"device": torch.cuda.get_device_name(), "load_s": seg.load_seconds, "warmup_s": seg.warmup_seconds,
       "predict_ms_median": statistics.median(lat[10:]), "timings_ms": p.timings_ms}
for bs in (16, 64):
    seg.max_batch_size = bs
    seg.predict_batch(slices[:bs]); torch.cuda.synchronize()
    t = time.perf_counter(); n = 0
    while time.perf_counter() - t < 3:
        seg.predict_batch(slices[:bs]); n += bs
    res[f"batch{bs}_slices_per_s"] = n / (time.perf_counter() - t)
print(json.dumps(res)); (out / "cuda_check.json").write_text(json.dumps(res, indent=2))
PY

# Training throughput vs the plain per-sample DataLoader pipeline (batch 6 x 2, 288, fp16)
python3 -m segapp.bench.training --data /tmp/bundle/phantom --steps 200 --plain-steps 40 \
    --json "$OUT/bench_train.json" 2>&1 | grep -v "plain: step" | tee "$OUT/bench_train.log"
