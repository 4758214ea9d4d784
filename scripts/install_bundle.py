"""Install a finished training run as the bundled demonstration weights, with its examples.

    python scripts/install_bundle.py --run runs/bundle19 --tune-data data/p19/mixed/valid \\
        --eval-data data/p19/score-fresh/valid --command-file runs/bundle19.commands --data-file card.md

1. copies RUN/best, chooses its small-region clean-up on --tune-data (the run's own validation
   split; ``segapp.tune_postprocessing``) and stores it in the folder;
2. scores it on --eval-data (a fresh phantom set never seen in training or in any choice);
3. writes the model folder (``--model-out``, default segapp/bundled/model) with a model card: the
   notice, --data-file's text, the commands of --command-file and the fresh-set figures;
4. copies six slices of --eval-data with at least two organs (at most two of each size) to
   ``--examples-out`` (default: the top-level examples/), replacing the PNGs there.

The volume mode's 2.5D weights go the same way into segapp/bundled/model-2.5d, scored on fresh
labelled volumes (2D, 3D and competition figures) and without examples::

    python scripts/install_bundle.py --run runs/c18-ctx1 --tune-data data/c18/train/valid \
        --eval-data data/c18/score-nifti --model-out segapp/bundled/model-2.5d --no-examples ...

Prints the evaluation table; writes the full evaluation to RUN/bundle_evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segapp.bundled import EXAMPLES_DIR, MODEL_DIR  # noqa: E402
from segapp.evaluate import evaluate, evaluate_volumes, format_table  # noqa: E402
from segapp.metrics.labelled_data import is_volume_split  # noqa: E402
from segapp.model.weights import load_model, save_model  # noqa: E402
from segapp.tune_postprocessing import tune, write_min_region  # noqa: E402

ORGANS = ("stomach", "small_bowel", "large_bowel")
NOTICE = (
    "**Demonstration weights, not for clinical use.** They were trained on synthetic phantom "
    "slices made by `python -m segapp.phantom`, not on patient data, and have never been validated "
    "on real MRI. Train on the real UW-Madison GI Tract data with the same command to get a model "
    "worth evaluating (`python -m segapp.prepare`, then `python -m segapp.train`)."
)


def pick_examples(split: Path, out: Path, count: int = 6) -> list[str]:
    """Copy ``count`` images of ``split`` (images/ + masks/) holding at least two organs, at most
    two of each slice size, into ``out`` (whose PNGs are replaced); returns their names."""
    chosen: list[str] = []
    sizes: dict[tuple[int, ...], int] = {}
    for mask_path in sorted((split / "masks").iterdir()):
        mask = np.asarray(Image.open(mask_path))
        if len(set(np.unique(mask).tolist()) - {0}) >= 2 and sizes.get(mask.shape, 0) < 2:
            chosen.append(mask_path.name)
            sizes[mask.shape] = sizes.get(mask.shape, 0) + 1
        if len(chosen) == count:
            break
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    for name in chosen:
        shutil.copy(split / "images" / name, out / name)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training run folder (with best/ and summary.json)")
    parser.add_argument("--tune-data", required=True, help="the run's validation split, for the clean-up")
    parser.add_argument("--eval-data", required=True, help="a fresh labelled split, for the card and examples")
    parser.add_argument("--command-file", required=True, help="the commands that made the run (for the card)")
    parser.add_argument("--data-file", required=True, help="the card's Data section (markdown)")
    parser.add_argument("--model-out", default=str(MODEL_DIR))
    parser.add_argument("--examples-out", default=str(EXAMPLES_DIR))
    parser.add_argument("--no-examples", action="store_true", help="leave the examples alone (volume weights)")
    args = parser.parse_args()

    run = Path(args.run)
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "model"
        shutil.copytree(run / "best", staged)
        tuned = tune(str(staged), args.tune_data, progress=False)
        write_min_region(staged, tuned["best"])
        score = evaluate_volumes if is_volume_split(args.eval_data) else evaluate
        result = score(args.eval_data, weights=str(staged), progress=False)
        print(format_table(result), flush=True)
        loaded = load_model(staged)
        per_class = {name: {"dice": result["dice"][name], "pooled_dice": result["pooled_dice"][name],
                            "iou": result["iou"][name], "hd95_mm": result["hd95_mm"][name]} for name in ORGANS}
        save_model(
            loaded.model, args.model_out, processing=loaded.processing, notes=NOTICE,
            data=Path(args.data_file).read_text(encoding="utf-8"),
            command=Path(args.command_file).read_text(encoding="utf-8"),
            metrics={"per_class": per_class, "mean_foreground_dice": result["mean_foreground_dice"],
                     "mean_pooled_dice": sum(result["pooled_dice"][o] for o in ORGANS) / 3,
                     "min_region_px": tuned["best"], "slices": result["slices"],
                     **({"competition_score": result["competition"]["score"]} if "score" in result["competition"] else {}),
                     **({"volumes": result["volumes_3d"]["volumes"]} if "volumes" in result.get("volumes_3d", {}) else {})},
        )
    examples = [] if args.no_examples else pick_examples(Path(args.eval_data), Path(args.examples_out))
    report = {"tuning": tuned, "evaluation": result, "examples": examples}
    (run / "bundle_evaluation.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({"min_region_px": tuned["best"], "examples": examples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
