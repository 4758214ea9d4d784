"""Make the bundled demonstration weights and the example slices (package data in segapp/bundled/).

Reproduces, in one process, what these commands do:

    python -m segapp.phantom --out WORK/phantom --train 2500 --valid 300 --seed 1
    python -m segapp.phantom --out WORK/phantom-eval --train 0 --valid 500 --seed 2
    python -m segapp.train --data WORK/phantom --out WORK/run --base scratch \\
        --batch-size 32 --grad-accum 1 --lr 6e-4 --epochs E --valid-every 10 --no-hausdorff
    python -m segapp.evaluate --data WORK/phantom-eval/valid --weights WORK/run/best

then writes WORK/run/best to segapp/bundled/model with a model card carrying the evaluation on
the fresh seed, and copies six evaluation slices with organs to examples/ (top level). E is
chosen from a short throughput probe so that training fits ``--minutes`` (a GPU is expected: on
2 CPU cores expect hours, see docs/training.md).

    python scripts/bundle_weights.py --work /tmp/bundle --minutes 4.5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segapp.bundled import EXAMPLES_DIR, MODEL_DIR  # noqa: E402
from segapp.evaluate import evaluate, format_table  # noqa: E402
from segapp.model.weights import load_model, save_model  # noqa: E402
from segapp.synthetic import generate_dataset  # noqa: E402
from segapp.training.config import TrainConfig  # noqa: E402
from segapp.training.loop import train  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from install_bundle import NOTICE, pick_examples  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="scratch folder for data and the run")
    parser.add_argument("--model-out", default=str(MODEL_DIR))
    parser.add_argument("--examples-out", default=str(EXAMPLES_DIR))
    parser.add_argument("--train", type=int, default=2500)
    parser.add_argument("--valid", type=int, default=300)
    parser.add_argument("--eval", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=4.5, help="training time budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--workers", type=int, default=8, help="phantom generation processes")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--base", default="scratch", help="starting weights (e.g. a previous run's best/)")
    parser.add_argument("--epochs", type=int, default=0, help="fixed epoch count instead of the time probe")
    parser.add_argument("--run-name", default="run")
    args = parser.parse_args()

    work = Path(args.work)
    data, eval_data, run = work / "phantom", work / "phantom-eval", work / args.run_name
    t0 = time.perf_counter()
    # Data
    if not data.exists():
        generate_dataset(data, train=args.train, valid=args.valid, seed=1, workers=args.workers, progress=False)
    if not eval_data.exists():
        generate_dataset(eval_data, train=0, valid=args.eval, seed=2, workers=args.workers, progress=False)
    print(f"phantoms ready in {time.perf_counter() - t0:.0f} s", flush=True)

    base = dict(data=str(data), base=args.base, batch_size=args.batch_size, grad_accum=1, lr=args.lr,
                hausdorff=False, progress=False, log_every=50)
    # Throughput probe: choose the epoch count that fits the time budget.
    rate = 0.0
    epochs = args.epochs
    if not epochs:
        probe = train(TrainConfig(out=str(work / "probe"), max_steps=60, epochs=1000, valid_every=1000, **base))
        rate = probe["train_images_per_s"]
        epochs = max(1, min(args.max_epochs, math.floor(args.minutes * 60 * rate / args.train)))
    print(f"probe: {rate:.0f} images/s -> {epochs} epochs", flush=True)

    # Train!
    valid_every = max(1, epochs // 12)
    summary = train(TrainConfig(out=str(run), epochs=epochs, valid_every=valid_every, **base))
    command = (
        f"python -m segapp.phantom --out data/phantom --train {args.train} --valid {args.valid} --seed 1\n"
        f"python -m segapp.phantom --out data/phantom-eval --train 0 --valid {args.eval} --seed 2\n"
        f"python -m segapp.train --data data/phantom --out runs/bundled --base {args.base} --batch-size "
        f"{args.batch_size} --grad-accum 1 --lr {args.lr} --epochs {epochs} --valid-every {valid_every} "
        "--no-hausdorff\n"
        "python -m segapp.evaluate --data data/phantom-eval/valid --weights runs/bundled/best\n"
        f"# all of the above in one go: python scripts/bundle_weights.py --work /tmp/bundle "
        f"--minutes {args.minutes}"
    )

    # Evaluate on a fresh seed
    result = evaluate(eval_data / "valid", weights=str(run / "best"), batch_size=64, progress=False)
    print(format_table(result), flush=True)
    per_class = {
        name: {"dice": result["dice"][name], "iou": result["iou"][name],
               "hd95_px": result["hd95_px"][name], "hd95_mm": result["hd95_mm"][name]}
        for name in ("stomach", "small_bowel", "large_bowel")
    }
    best = load_model(run / "best")
    device = summary["device"]
    save_model(
        best.model, args.model_out, processing=best.processing, command=command, notes=NOTICE,
        data=(
            f"Synthetic phantom slices from `segapp.phantom`: {args.train} training and {args.valid} "
            f"validation slices (seed 1, disjoint cases), SegFormer-B0 "
            + ("trained from random initialisation" if args.base == "scratch" else f"fine-tuned from `{args.base}`")
            + f" for {summary['epochs']} epochs ({summary['steps']} steps, batch "
            f"{args.batch_size}, {summary['precision']}) on {device} in {summary['wall_seconds'] / 60:.1f} "
            f"minutes. The figures below are on {result['slices']} slices of a fresh phantom set "
            "(seed 2, never seen in training); about half of them contain no organ, and a class absent "
            "from both prediction and truth counts Dice 1 (competition convention)."
        ),
        metrics={"per_class": per_class, "mean_foreground_dice": result["mean_foreground_dice"],
                 "slices": result["slices"]},
    )

    # Examples: six evaluation slices with organs, sizes varied
    chosen = pick_examples(eval_data / "valid", Path(args.examples_out))
    report = {"summary": summary, "evaluation": result, "epochs": epochs, "probe_images_per_s": rate,
              "examples": chosen, "seconds": time.perf_counter() - t0}
    (work / "bundle_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "evaluation"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
