"""Phantom slices and data sets on disk: :func:`generate_slice`, :func:`dataset_slice`,
:func:`generate_dataset` (the notebook's layout or the competition's raw layout with
``train.csv``).

Every slice's random streams are seeded by (seed, case, day, slice) alone, so a data set's
files do not depend on the order or the process that renders them.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from segapp.io.files import atomic_file
from segapp.io.rle import rle_encode
from segapp.synthetic.anatomy import ANATOMIES, SLICE_THICKNESS_MM, SLICES_PER_SCAN, STYLES, make_case
from segapp.synthetic.rendering import PhantomSlice, render_slice

CSV_CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")  # the real CSV's row order
RAW_VOLUME_SLICES = (20, 40)  # consecutive slices per case-day in the raw layout
NOTEBOOK_CASE_SLICES = (8, 16)  # slices per case-day in the notebook layout


# --------------------------------------------------------------------------------------------
# Single slices and data sets


def _check_seed(seed: int) -> int:
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def case_rng(seed: int, case_id: int) -> np.random.Generator:
    """The random stream of a patient in a data set of this seed (the day is drawn from it)."""
    return np.random.default_rng([seed, case_id, 0xCA5E])


def slice_rng(seed: int, case_id: int, day: int, z_index: int) -> np.random.Generator:
    """The random stream of one slice's rendering (noise, texture) in a data set of this seed."""
    return np.random.default_rng([seed, case_id, day, z_index, 0x511CE])


def generate_slice(
    seed: int,
    *,
    size: tuple[int, int] | None = None,
    empty: bool | None = None,
    style: str = "mixed",
    anatomy: str = "standard",
) -> PhantomSlice:
    """One phantom slice from its own case.

    Args:
        seed: Decides everything (>= 0); equal seeds give identical slices.
        size: (width, height), one of :data:`PROTOCOLS`; drawn when None.
        empty: True: a slice without any target organ; False: one with at least one
            organ pixel; None: any slice (about half are empty, as in the real data).
        style: Contrast family, one of :data:`STYLES`, or ``"mixed"`` (drawn per case).
            One seed gives the same anatomy and slice in every style.
        anatomy: One of :data:`ANATOMIES`.

    Returns:
        The slice.

    Raises:
        ValueError: Negative seed, unknown size, style or anatomy.
    """
    seed = _check_seed(seed)
    rng = np.random.default_rng([seed, 0x5EED])
    case_id, day = int(rng.integers(1, 160)), int(rng.integers(0, 40))
    case = make_case(rng, case_id=case_id, day=day, size=size, style=style, anatomy=anatomy)
    order = rng.permutation(case.n_slices).tolist()
    if empty is not None:  # try likely slices first (by the chains' z-ranges); rendering decides
        ranges = case.organ_z_ranges().values()
        hit = {k: any(lo < k * SLICE_THICKNESS_MM < hi for lo, hi in ranges) for k in order}
        order = [k for k in order if hit[k] != empty] + [k for k in order if hit[k] == empty]
    for z_index in order:
        result = render_slice(case, z_index, slice_rng(seed, case_id, day, z_index))
        if empty is None or bool(result.mask.any()) != empty:
            return result
    raise RuntimeError(f"seed {seed}: no slice with empty={empty}")  # pragma: no cover


def dataset_slice(seed: int, case_id: int, day: int, slice_index: int, *, style: str = "mixed",
                  anatomy: str = "standard") -> PhantomSlice:
    """The slice that :func:`generate_dataset` writes for this seed, name and style options.

    Args:
        seed: The data set's seed.
        case_id: N of ``caseN``.
        day: D of ``dayD``.
        slice_index: SSSS of ``slice_SSSS`` (1-based).
        style: As :func:`generate_dataset`'s.
        anatomy: As :func:`generate_dataset`'s.

    Returns:
        The slice, identical to the written one (image, masks, name).
    """
    seed = _check_seed(seed)
    if not 1 <= slice_index <= SLICES_PER_SCAN:
        raise ValueError(f"slice_index {slice_index} outside 1..{SLICES_PER_SCAN}")
    case = make_case(case_rng(seed, case_id), case_id=case_id, day=day, style=style, anatomy=anatomy)
    return render_slice(case, slice_index - 1, slice_rng(seed, case_id, day, slice_index - 1))


def _save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG (pillow's default compression) atomically: a half-written file is never seen."""
    with atomic_file(path, "wb") as f:
        image.save(f, format="PNG")


@dataclass(frozen=True)
class _Job:
    """One case-day's share of a data set."""

    seed: int
    case_id: int
    day: int
    slices: tuple[int, ...]  # 0-based z indices
    split: str
    raw: bool
    style: str
    anatomy: str


def _run_job(job: _Job, out: Path) -> tuple[list[list[str]], int, str]:
    """Render and write one job. Returns CSV rows (raw layout), empty slices, size WxH."""
    case = make_case(case_rng(job.seed, job.case_id), case_id=job.case_id, day=job.day, style=job.style,
                     anatomy=job.anatomy)
    rows: list[list[str]] = []
    empty = 0
    for z_index in job.slices:
        sl = render_slice(case, z_index, slice_rng(job.seed, job.case_id, job.day, z_index))
        empty += not sl.mask.any()
        if job.raw:
            folder = out / "train" / f"case{sl.case}" / f"case{sl.case}_day{sl.day}" / "scans"
            folder.mkdir(parents=True, exist_ok=True)
            _save_png(Image.fromarray(sl.image16), folder / sl.file_name.split("_", 2)[2])
            rows += [[sl.id, name, rle_encode(sl.organ_masks[name])] for name in CSV_CLASSES]
        else:
            rgb = np.repeat(sl.image8[..., None], 3, axis=-1)
            _save_png(Image.fromarray(rgb, mode="RGB"), out / job.split / "images" / sl.file_name)
            _save_png(Image.fromarray(sl.mask, mode="L"), out / job.split / "masks" / sl.file_name)
    return rows, empty, f"{case.width}x{case.height}"


def _plan(seed: int, train: int, valid: int, raw: bool, style: str, anatomy: str) -> list[_Job]:
    """Split the slice counts into case-day jobs. Each case has 1-3 days; valid cases are
    numbered after the train cases, so the splits share no patient."""
    rng = np.random.default_rng([seed, 0x91A])
    jobs: list[_Job] = []
    case_id = 0
    for split, left in (("train", train), ("valid", valid)):
        while left > 0:
            case_id += 1
            for day in sorted(rng.choice(40, size=int(rng.integers(1, 4)), replace=False).tolist()):
                if left <= 0:
                    break
                if raw:  # a run of consecutive slices somewhere in the scan
                    n = min(left, int(rng.integers(RAW_VOLUME_SLICES[0], RAW_VOLUME_SLICES[1] + 1)))
                    # Centred anywhere, then moved inside the scan: every slice about as likely.
                    start = min(max(int(rng.integers(0, SLICES_PER_SCAN)) - n // 2, 0), SLICES_PER_SCAN - n)
                    slices = tuple(range(start, start + n))
                else:  # slices anywhere in the scan
                    n = min(left, int(rng.integers(NOTEBOOK_CASE_SLICES[0], NOTEBOOK_CASE_SLICES[1] + 1)))
                    slices = tuple(sorted(rng.choice(SLICES_PER_SCAN, size=n, replace=False).tolist()))
                jobs.append(_Job(seed, case_id, int(day), slices, split, raw, style, anatomy))
                left -= n
    return jobs


def _progress(total: int, enabled: bool) -> Callable[[int], None]:
    """A tqdm bar's update function, or a no-op when disabled."""
    if not enabled or total == 0:
        return lambda n: None
    bar = tqdm(total=total, unit="slice", desc="phantom")

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def _check_request(out: Path, *, train: int, valid: int, raw: bool, overwrite: bool, style: str,
                   anatomy: str) -> None:
    """Refuse a request :func:`generate_dataset` cannot honour; with ``overwrite``, clear its old outputs."""
    if train < 0 or valid < 0:
        raise ValueError(f"slice counts must be >= 0, got train={train}, valid={valid}")
    if raw and valid:
        raise ValueError("the raw layout has no validation split: use valid=0 and split by case later")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty")
        for name in ("train", "valid"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "train.csv").unlink(missing_ok=True)
    if style != "mixed" and style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)} or mixed")
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy {anatomy!r} is not one of {', '.join(ANATOMIES)}")


def _render_jobs(jobs: list[_Job], out: Path, *, workers: int,
                 update: Callable[[int], None]) -> list[tuple[list[list[str]], int, str]]:
    """Each job's result, in job order; a job's files depend only on (seed, case, day), never on the worker."""
    results = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, result in zip(jobs, pool.map(_run_job, jobs, [out] * len(jobs))):
                results.append(result)
                update(len(job.slices))
    else:
        for job in jobs:
            results.append(_run_job(job, out))
            update(len(job.slices))
    return results


def generate_dataset(
    out: Path | str,
    *,
    train: int,
    valid: int,
    seed: int,
    raw: bool = False,
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
    style: str = "mixed",
    anatomy: str = "standard",
) -> dict:
    """Write a phantom data set in the notebook's layout or the competition's raw layout.

    Notebook layout (default): ``out/{train,valid}/{images,masks}/NAME`` with NAME
    ``caseN_dayD_slice_SSSS_W_H_PW_PH.png``; images 8-bit RGB with 3 equal channels
    (min-max scaled per image), masks mode L class ids. Each case-day gives 8-16
    slices from anywhere in its scan (about half without organs); train and valid
    come from disjoint cases.

    Raw layout (``raw=True``): ``out/train/caseN/caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png``,
    16-bit grayscale, 20-40 consecutive slices per case-day (the last run is cut short
    so that exactly ``train`` slices are written), and ``out/train.csv``
    (``id,class,segmentation``: 3 rows per slice, RLE of the per-organ masks).

    Args:
        out: Output folder; absent or empty unless ``overwrite``.
        train: Training slices (raw layout: all slices), >= 0.
        valid: Validation slices, >= 0; must be 0 for the raw layout.
        seed: >= 0; equal seeds give byte-identical files.
        raw: Write the raw competition layout.
        progress: Show a tqdm progress bar.
        workers: Processes to render with; the files do not depend on it.
        overwrite: In a non-empty ``out``, delete this generator's outputs (``train/``,
            ``valid/``, ``train.csv``) first; other files stay.
        style: Contrast family of every case (:data:`STYLES`), or ``"mixed"``: each patient
            draws one (bssfp 0.5, t2 0.3, t1 0.2). A case's anatomy is the same in every style.
        anatomy: ``"standard"`` or ``"variant"`` (:data:`ANATOMIES`).

    Returns:
        Summary: ``out``, ``layout``, ``train``, ``valid``, ``train_cases`` and
        ``valid_cases`` (case ids), ``case_days``, ``empty_share``, ``sizes`` (slices per WxH).

    Raises:
        ValueError: Negative counts or seed, ``valid`` > 0 with ``raw``, unknown style or anatomy.
        FileExistsError: ``out`` is not empty and ``overwrite`` is False.
    """
    out, seed = Path(out), _check_seed(seed)
    _check_request(out, train=train, valid=valid, raw=raw, overwrite=overwrite, style=style, anatomy=anatomy)
    jobs = _plan(seed, train, valid, raw, style, anatomy)
    out.mkdir(parents=True, exist_ok=True)
    for split in () if raw else ("train", "valid"):
        for kind in ("images", "masks"):
            (out / split / kind).mkdir(parents=True, exist_ok=True)

    results = _render_jobs(jobs, out, workers=workers, update=_progress(train + valid, progress))

    if raw:
        with atomic_file(out / "train.csv", "w", newline="") as f:  # UTF-8
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["id", "class", "segmentation"])
            for rows, _, _ in results:
                writer.writerows(rows)
    sizes: dict[str, int] = {}
    for job, (_, _, size) in zip(jobs, results):
        sizes[size] = sizes.get(size, 0) + len(job.slices)
    return {
        "out": str(out),
        "layout": "raw" if raw else "notebook",
        "train": train,
        "valid": valid,
        "train_cases": sorted({job.case_id for job in jobs if job.split == "train"}),
        "valid_cases": sorted({job.case_id for job in jobs if job.split == "valid"}),
        "case_days": len(jobs),
        "empty_share": sum(r[1] for r in results) / max(1, train + valid),
        "sizes": sizes,
    }
