"""predict: inputs (files, folders, globs), outputs mirroring names, RLE round trip, failures."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.inference.batch_inputs import collect_inputs
from segapp.io.naming import slice_id
from segapp.io.readers import read_image
from segapp.io.rle import rle_decode
from segapp.metrics.labelled_data import read_mask
from segapp.predict import PredictError, main, predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def slices(phantom_data: Path, tmp_path: Path) -> Path:
    """A folder tree: two phantom slices at the top, one in a sub-folder, one with an unknown name."""
    images = sorted((phantom_data / "valid" / "images").iterdir())
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(images[0], root / images[0].name)
    shutil.copy(images[1], root / images[1].name)
    shutil.copy(images[2], root / "sub" / images[2].name)
    Image.open(images[3]).convert("L").save(root / "sub" / "plain.png")
    return root


class SpySegmenter:
    """Wraps a segmenter and records the sizes in every batch."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self.batches: list[list[tuple[int, int]]] = []

    def predict_batch(self, scans, **options):
        self.batches.append([scan.size for scan in scans])
        return self.segmenter.predict_batch(scans, **options)

    def __getattr__(self, name: str):  # everything else (device, processing, ...) is the segmenter's
        return getattr(self.segmenter, name)


def test_collect_inputs(slices: Path, tmp_path: Path) -> None:
    files, problems = collect_inputs([slices])
    assert sorted(f.relative for f in files) == sorted(
        [p.name for p in slices.glob("*.png")] + ["sub/" + p.name for p in (slices / "sub").glob("*.png")]
    )
    assert problems == []
    # A file by its name; a pattern relative to its fixed part; repeats dropped; missing reported.
    one = next(slices.glob("case*.png"))
    files, problems = collect_inputs([one, str(slices / "**" / "plain.png"), one, tmp_path / "nope"])
    assert [f.relative for f in files] == [one.name, "sub/plain.png"]
    assert problems == [(str(tmp_path / "nope"), "no such file or folder")]
    # Two files that would write the same output are refused, not overwritten.
    shutil.copy(one, tmp_path / one.name)
    files, problems = collect_inputs([one, tmp_path / one.name])
    assert len(files) == 1 and "already that of" in problems[0][1]
    # The output folder inside an input folder is never read back.
    (slices / "out").mkdir()
    shutil.copy(one, slices / "out" / "old.png")
    files, _ = collect_inputs([slices], exclude=slices / "out")
    assert not any(f.relative.startswith("out/") for f in files)
    _, problems = collect_inputs([str(tmp_path / "*.tif")])
    assert problems[0][1] == "no image file matches this pattern"


def test_predict_writes_mirrored_outputs_and_round_trips_rle(
    slices: Path, tmp_path: Path, tiny_segmenter
) -> None:
    spy = SpySegmenter(tiny_segmenter)
    out = tmp_path / "out"
    summary = predict([slices], out=out, formats=["all"], batch_size=2, segmenter=spy, progress=False)
    assert summary.ok and summary.predicted == 4
    # Batches hold slices of one size only, at most batch_size of them.
    assert all(len(set(sizes)) == 1 and len(sizes) <= 2 for sizes in spy.batches)
    assert sum(len(sizes) for sizes in spy.batches) == 4
    inputs = sorted(p.relative_to(slices).as_posix() for p in slices.rglob("*.png"))
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == inputs
    assert (
        sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
        == inputs
    )

    with (out / "submission.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (out / "stats.csv").open() as f:
        stats = {row["file"]: row for row in csv.DictReader(f)}
    assert len(rows) == 3 * 4 and list(rows[0]) == ["id", "class", "predicted"]
    by_id = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    for relative in inputs:
        image = slices / relative
        mask = read_mask(out / "masks" / relative)
        assert mask.shape == read_image(image).size
        overlay = np.asarray(Image.open(out / "overlays" / relative))
        assert overlay.shape == (*mask.shape, 3)
        slice_rows = by_id[slice_id(image) or relative.removesuffix(".png")]
        assert [r["class"] for r in slice_rows] == ["large_bowel", "small_bowel", "stomach"]
        for row, class_id in zip(slice_rows, (3, 2, 1)):
            assert np.array_equal(rle_decode(row["predicted"], mask.shape), mask == class_id)
        # Areas: pixels x row spacing x column spacing, when the name gives the spacing.
        stat = stats[relative]
        assert int(stat["stomach_pixels"]) == np.count_nonzero(mask == 1)
        if relative.endswith("plain.png"):
            assert stat["stomach_area_mm2"] == "" and stat["id"] == ""
        else:
            spacing = read_image(image).spacing_mm
            assert float(stat["stomach_area_mm2"]) == pytest.approx(
                np.count_nonzero(mask == 1) * spacing[0] * spacing[1], abs=1e-3
            )
            assert stat["id"] == slice_id(image) and stat["id"].startswith("case")


def test_ids_come_from_raw_layout_folders(tmp_path: Path, phantom_data: Path, tiny_segmenter) -> None:
    scans = tmp_path / "train" / "case7" / "case7_day3" / "scans"
    scans.mkdir(parents=True)
    image = next((phantom_data / "valid" / "images").iterdir())
    Image.open(image).convert("L").resize((266, 266)).save(scans / "slice_0042_266_266_1.50_1.50.png")
    summary = predict(
        [tmp_path / "train"], out=tmp_path / "o", formats=["rle"], segmenter=tiny_segmenter, progress=False
    )
    assert summary.ok and not (tmp_path / "o" / "masks").exists()
    with (tmp_path / "o" / "submission.csv").open() as f:
        assert {row["id"] for row in csv.DictReader(f)} == {"case7_day3_slice_0042"}


def test_unreadable_inputs_are_reported_and_skipped(slices: Path, tmp_path: Path, tiny_segmenter) -> None:
    (slices / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (slices / "notes.png").write_text("hello")
    logged: list[str] = []
    summary = predict(
        [slices, tmp_path / "missing.png"],
        out=tmp_path / "out",
        segmenter=tiny_segmenter,
        progress=False,
        log=logged.append,
    )
    assert summary.predicted == 4 and not summary.ok
    failed = dict(summary.failed)
    assert set(failed) == {
        str(slices / "broken.png"),
        str(slices / "notes.png"),
        str(tmp_path / "missing.png"),
    }
    assert "not an image" in failed[str(slices / "notes.png")]
    assert len(logged) == 3 and all(line.startswith("skipped ") for line in logged)
    assert not (tmp_path / "out" / "masks" / "broken.png").exists()
    with (tmp_path / "out" / "stats.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4


def test_cli_exit_status(
    slices: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--weights", str(tiny_model_dir), "--device", "cpu", "--no-progress"]
    assert (
        main([str(slices), "--out", str(tmp_path / "a"), "--format", "png", "--format", "rle", *common]) == 0
    )
    assert (tmp_path / "a" / "submission.csv").is_file() and (tmp_path / "a" / "masks").is_dir()
    assert "4 slices segmented" in capsys.readouterr().out
    (slices / "bad.png").write_bytes(b"")
    assert main([str(slices), "--out", str(tmp_path / "b"), *common]) == 1
    assert "bad.png" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "c"), *common]) == 2
    assert "no image to segment" in capsys.readouterr().err
    with pytest.raises(PredictError, match="unknown format"):
        predict([slices], out=tmp_path / "d", formats=["jpeg"], progress=False)


def test_folder_scans_include_every_format_read_image_reads(tmp_path: Path, tiny_segmenter) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64)
    for suffix in (".png", ".gif", ".bmp", ".webp", ".tif"):
        Image.fromarray(gray).save(folder / f"slice_{suffix[1:]}{suffix}")  # distinct output names
    (folder / "notes.txt").write_text("not a slice")
    files, problems = collect_inputs([folder])
    assert sorted(f.relative for f in files) == sorted(f"slice_{s}.{s}" for s in ("png", "gif", "bmp", "webp", "tif"))
    assert problems == []
    summary = predict([folder], out=tmp_path / "out", segmenter=tiny_segmenter, progress=False)
    assert summary.predicted == 5 and not summary.failed
