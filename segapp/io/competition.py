"""The competition download turned into a training set (the work of ``python -m segapp.prepare``).

Input, the UW-Madison GI Tract layout: ``RAW/train.csv`` (``id,class,segmentation``) and
``RAW/train/caseN/caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png`` (16-bit). Output, the layout
training reads (:mod:`segapp.training.data`): ``DATA/{train,valid}/{images,masks}/caseN_dayD_slice_SSSS_W_H_PW_PH.png``,
plus ``DATA/prepare_summary.json``.

- Images: 8-bit, three equal channels, converted by :func:`segapp.read_image` (per-image
  min-max to 0..255), so training sees exactly what inference reads.
- Masks: one class id per pixel (:mod:`segapp.labels`), from the CSV's run-length codes.
- Overlapping organs (a pixel in two organs' codes): **the smaller organ wins**. In each slice
  the organs are painted from the largest area to the smallest, so a shared pixel goes to the
  organ with fewer pixels in that slice; equal areas: the lower class id wins (stomach, then
  small bowel, then large bowel). A shared pixel is a larger share of the smaller organ, so
  this loses the least Dice, and thin structures are not swallowed by a big neighbour. The
  number of shared pixels is reported. (The notebook turned them into background.)
- Split: by case (patient) by default, so no patient is on both sides; ``--split slice``
  reproduces the notebook's leaky slice-level split. Cases, in an order shuffled by the seed,
  go to validation while that brings its slice count closer to ``valid_fraction`` of all
  slices (the first always goes, one case always stays for training).
- Slices without any organ: validation keeps them all (scores and 3D volumes stay like the
  real data); training keeps ``empty_fraction`` of them, drawn with the seed, or all with
  ``keep_empty``.
- Nothing half-written: everything is written into a hidden folder next to ``DATA``, which is
  renamed to ``DATA`` only when complete (:func:`segapp.io.files.atomic_folder`). A missing scan, a malformed code or one running
  past its image stops the run with an error naming the CSV line.

Reading and checking the raw layout: :mod:`segapp.io.competition_raw`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from segapp.io.competition_raw import CSV_NAME, PrepareError, RawSlice, match_slices
from segapp.io.files import atomic_folder, recover_interrupted_swap, write_text_atomic
from segapp.io.image import InvalidImageError, save_mask_png, save_png
from segapp.io.readers import read_image
from segapp.io.rle import rle_decode
from segapp.labels import FOREGROUND, LABEL2ID, NUM_LABELS

SUMMARY_NAME = "prepare_summary.json"
DEFAULT_VALID_FRACTION = 0.2
DEFAULT_EMPTY_FRACTION = 0.5
DEFAULT_SEED = 42
SPLITS = ("train", "valid")
OVERLAP_RULE = "smaller organ wins (area in the slice; equal areas: lower class id)"


# ---------------------------------------------------------------------------------------------
# Masks and splits


def resolve_overlaps(organ_masks: Mapping[int, np.ndarray]) -> tuple[np.ndarray, int]:
    """Combine per-organ masks into one class-id mask; where organs overlap, the smaller one wins.

    Organs are painted from the largest area to the smallest (equal areas: higher id first),
    so each shared pixel ends with the smallest organ claiming it, ties going to the lower id.

    Args:
        organ_masks: Class id (1..3) -> (H, W) bool mask; all the same shape, at least one.

    Returns:
        ((H, W) uint8 class ids, 0 where no organ; number of pixels claimed by two or more organs).
    """
    if not organ_masks:
        raise ValueError("need at least one organ mask")
    masks = {int(c): np.asarray(m, dtype=bool) for c, m in organ_masks.items()}
    shape = next(iter(masks.values())).shape
    if any(m.shape != shape for m in masks.values()) or not all(0 < c < NUM_LABELS for c in masks):
        raise ValueError(f"organ masks must share one shape and use class ids 1..{NUM_LABELS - 1}")
    claims = np.zeros(shape, dtype=np.uint8)
    out = np.zeros(shape, dtype=np.uint8)
    for class_id, mask in sorted(masks.items(), key=lambda item: (-int(item[1].sum()), -item[0])):
        out[mask] = class_id
        claims += mask
    return out, int(np.count_nonzero(claims > 1))


def choose_valid(
    cases: Mapping[str, int], *, valid_fraction: float, seed: int, split: str = "case"
) -> set[str]:
    """Pick the validation slices.

    Args:
        cases: Slice id -> case number.
        valid_fraction: Target share of slices in validation, 0 < f < 1.
        seed: Shuffling seed; equal seeds give equal splits.
        split: ``"case"``: whole cases (see the module notes for the rule); ``"slice"``:
            ``round(f * n)`` slices at random (clamped to 1..n-1), patients on both sides.

    Returns:
        The ids of the validation slices.

    Raises:
        PrepareError: Fewer than two cases (case split) or two slices (slice split).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise PrepareError(f"--valid-fraction must lie strictly between 0 and 1, got {valid_fraction}.")
    rng = np.random.default_rng(seed)
    ids = sorted(cases)
    if split == "slice":
        if len(ids) < 2:
            raise PrepareError(f"A train/valid split needs at least 2 slices; found {len(ids)}.")
        count = min(max(round(valid_fraction * len(ids)), 1), len(ids) - 1)
        return {ids[i] for i in rng.permutation(len(ids))[:count]}
    if split != "case":
        raise ValueError(f"split must be 'case' or 'slice', got {split!r}")
    sizes: dict[int, int] = {}
    for slice_id in ids:
        sizes[cases[slice_id]] = sizes.get(cases[slice_id], 0) + 1
    if len(sizes) < 2:
        raise PrepareError(
            f"A split by case needs at least 2 cases; found {len(sizes)} ({', '.join(f'case{c}' for c in sizes)}). "
            "Use --split slice (the same patient then appears on both sides)."
        )
    target = valid_fraction * len(ids)
    chosen: list[int] = []
    count = 0
    for case in rng.permutation(sorted(sizes)).tolist():
        if len(chosen) == len(sizes) - 1:
            break
        # Take the case when the count gets closer to the target: count + n/2 <= target.
        if not chosen or count + sizes[case] / 2 <= target:
            chosen.append(case)
            count += sizes[case]
    valid_cases = set(chosen)
    return {slice_id for slice_id in ids if cases[slice_id] in valid_cases}


def _convert(item: RawSlice, folder: Path) -> dict[str, Any]:
    """Write one slice's image and mask under ``folder`` (a split folder); return its figures."""
    try:
        scan = read_image(item.scan)
    except InvalidImageError as exc:
        raise PrepareError(
            f"{CSV_NAME} line {item.first_line} ({item.id}): scan {item.scan}: {exc}"
        ) from None
    if scan.size != (item.height, item.width):
        raise PrepareError(
            f"{CSV_NAME} line {item.first_line} ({item.id}): scan {item.scan} is {scan.width} x {scan.height} "
            f"pixels but its name says {item.width} x {item.height}."
        )
    organ_masks = {
        LABEL2ID[organ]: rle_decode(code, scan.size)
        for organ, (_, code) in item.codes.items()
        if code.strip()
    }
    if organ_masks:
        mask, overlap = resolve_overlaps(organ_masks)
    else:
        mask, overlap = np.zeros(scan.size, dtype=np.uint8), 0
    save_png(np.repeat(scan.pixels[..., None], 3, axis=2), folder / "images" / item.file_name)
    save_mask_png(mask, folder / "masks" / item.file_name)
    present = np.bincount(mask.ravel(), minlength=NUM_LABELS) > 0
    return {"overlap": overlap, "classes": [label.name for label in FOREGROUND if present[label.id]]}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PrepareError(
            f"{out} already exists and is not empty; choose another --out or pass --overwrite."
        )


def prepare(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    *,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    seed: int = DEFAULT_SEED,
    split: str = "case",
    empty_fraction: float = DEFAULT_EMPTY_FRACTION,
    keep_empty: bool = False,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert the competition layout in ``raw`` into the training layout in ``out``.

    Args:
        raw: Folder with ``train.csv`` and ``train/caseN/caseN_dayD/scans/``.
        out: Folder to create; must be absent or empty unless ``overwrite``.
        valid_fraction: Target share of slices in validation, 0 < f < 1.
        seed: Seed of the split and of the choice of empty training slices.
        split: ``"case"`` (default, no patient on both sides) or ``"slice"``.
        empty_fraction: Share 0..1 of the training slices without any organ to keep.
        keep_empty: Keep every empty training slice (overrides ``empty_fraction``).
        workers: Threads converting slices (default: up to 8, one per CPU).
        overwrite: Replace a non-empty ``out`` (only once the new one is complete).
        progress: Show progress bars.

    Returns:
        The summary also written to ``out/prepare_summary.json``: settings, ``splits`` (per
        split: ``slices``, ``empty``, ``cases``, ``classes`` = slices holding each organ),
        ``dropped_empty``, ``overlap_pixels``, ``overlap_slices``, ``unlabelled_scans``.

    Raises:
        PrepareError: Bad raw data or options; nothing is left in ``out`` then.
    """
    raw_dir, out_dir = Path(raw), Path(out)
    if not 0.0 <= empty_fraction <= 1.0:
        raise PrepareError(f"--empty-fraction must lie in 0..1, got {empty_fraction}.")
    # A run killed between the swap's two renames left only <out>.previous: put it back first,
    # so it counts as an existing folder that only --overwrite replaces.
    recover_interrupted_swap(out_dir)
    _check_out(out_dir, overwrite)
    slices, unlabelled = match_slices(raw_dir)
    if not slices:
        raise PrepareError(f"{raw_dir / CSV_NAME} lists no slice.")

    # Split, then thin out the empty training slices
    valid_ids = choose_valid(
        {s.id: s.case for s in slices}, valid_fraction=valid_fraction, seed=seed, split=split
    )
    chosen = {
        "train": [s for s in slices if s.id not in valid_ids],
        "valid": [s for s in slices if s.id in valid_ids],
    }
    empty_train = [s for s in chosen["train"] if s.empty]
    keep = len(empty_train) if keep_empty else round(empty_fraction * len(empty_train))
    rng = np.random.default_rng([seed, 1])  # its own stream: the split does not move with it
    kept_empty = {empty_train[i].id for i in rng.permutation(len(empty_train))[:keep]}
    chosen["train"] = [s for s in chosen["train"] if not s.empty or s.id in kept_empty]
    if not chosen["train"]:
        raise PrepareError("No training slice left; raise --empty-fraction or use --keep-empty.")

    # Write everything into a hidden sibling folder, swapped into place only when complete.
    # Not durable: the slices are fsynced one by one as they are written (save_png), and a
    # second pass over tens of thousands of files would only cost time.
    with atomic_folder(out_dir, durable=False) as temp:
        figures = _write_all(chosen, temp, workers=workers, progress=progress)
        summary = {
            "raw": str(raw_dir),
            "out": str(out_dir),
            "split": split,
            "valid_fraction": valid_fraction,
            "seed": seed,
            "empty_fraction": None if keep_empty else empty_fraction,
            "overlap_rule": OVERLAP_RULE,
            **_counts(chosen, figures),
            "dropped_empty": len(empty_train) - keep,
            "unlabelled_scans": unlabelled,
        }
        write_text_atomic(temp / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def _write_all(
    chosen: dict[str, list[RawSlice]], temp: Path, *, workers: int | None, progress: bool
) -> dict[str, list[dict[str, Any]]]:
    """Convert every chosen slice into ``temp/{split}``; threads overlap PNG decoding and writing."""
    for split in SPLITS:
        for kind in ("images", "masks"):
            (temp / split / kind).mkdir(parents=True, exist_ok=True)
    workers = workers or min(8, os.cpu_count() or 1)
    total = sum(len(v) for v in chosen.values())
    bar = None
    if progress:
        from tqdm.auto import tqdm  # here: only a run with progress bars pays its import (55 ms)

        bar = tqdm(total=total, desc="preparing", unit="slice")
    figures: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs: list[tuple[str, Future]] = [
            (split, pool.submit(_convert, item, temp / split)) for split in SPLITS for item in chosen[split]
        ]
        try:
            for split, job in jobs:
                figures[split].append(job.result())
                if bar is not None:
                    bar.update(1)
        except BaseException:
            for _, job in jobs:
                job.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
    return figures


def _counts(chosen: dict[str, list[RawSlice]], figures: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-split counts and the overlap totals of the written slices."""
    splits = {}
    for split in SPLITS:
        classes = {label.name: 0 for label in FOREGROUND}
        for fig in figures[split]:
            for name in fig["classes"]:
                classes[name] += 1
        splits[split] = {
            "slices": len(chosen[split]),
            "empty": sum(not fig["classes"] for fig in figures[split]),
            "cases": sorted({s.case for s in chosen[split]}),
            "classes": classes,
        }
    every = [fig for split in SPLITS for fig in figures[split]]
    return {
        "splits": splits,
        "overlap_pixels": sum(fig["overlap"] for fig in every),
        "overlap_slices": sum(fig["overlap"] > 0 for fig in every),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A readable report of a :func:`prepare` summary."""
    organs = [label.name for label in FOREGROUND]
    lines = [f"{'split':<7}{'slices':>8}{'cases':>7}{'empty':>7}" + "".join(f"{name:>13}" for name in organs)]
    for split in SPLITS:
        s = summary["splits"][split]
        lines.append(
            f"{split:<7}{s['slices']:>8}{len(s['cases']):>7}{s['empty']:>7}"
            + "".join(f"{s['classes'][name]:>13}" for name in organs)
        )
    lines.append("(organ columns: slices holding the organ)")
    lines.append(
        f"split by {summary['split']}, seed {summary['seed']}; "
        f"empty training slices dropped: {summary['dropped_empty']}"
    )
    lines.append(
        f"overlapping labels: {summary['overlap_pixels']} pixels in {summary['overlap_slices']} slices, "
        f"resolved by the rule: {summary['overlap_rule']}"
    )
    if summary["unlabelled_scans"]:
        lines.append(f"scans without any row in {CSV_NAME} (skipped): {summary['unlabelled_scans']}")
    lines.append(f"written to {summary['out']}")
    return "\n".join(lines)
