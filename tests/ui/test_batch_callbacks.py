"""The slice tab's batch, its colours and the confidence distribution, without a browser."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pydicom
import pytest
from PIL import Image

from segapp.inference.render import overlay
from segapp.labels import FOREGROUND, LABELS, organ_palette
from segapp.synthetic import generate_slice
from segapp.ui.batch import BatchCallbacks, BatchState, neutral_name
from segapp.ui.callbacks import Callbacks
from segapp.ui.plots import distribution_tables
from segapp.ui.volume import VolumeCallbacks

PATIENT = "Doe_Jane_1970-01-01"  # a name that must never reach an output
RED, GREEN, BLUE = "#ff0000", "#00ff00", "#0000ff"


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two slices under patient-like names, one under its competition name, a non-image, a zip of the first three."""
    folder = tmp_path_factory.mktemp("batch")
    paths = {}
    for key, seed, name in (("a", 31, f"{PATIENT}_a.png"), ("b", 32, f"{PATIENT}_b.png"), ("c", 33, None)):
        phantom = generate_slice(seed, empty=False)
        paths[key] = folder / (name or phantom.file_name)
        Image.fromarray(phantom.image16).save(paths[key])
    paths["bad"] = folder / f"{PATIENT}_letter.png"
    paths["bad"].write_text("Discharge letter, not a scan.\n" * 10)
    paths["zip"] = folder / f"{PATIENT}.zip"
    with zipfile.ZipFile(paths["zip"], "w") as archive:
        for key in ("a", "b", "c"):
            archive.write(paths[key], arcname=f"scans/{paths[key].name}")
    return paths


@pytest.fixture
def callbacks(tiny_segmenter, tmp_path: Path) -> Callbacks:
    return Callbacks(tiny_segmenter, output_root=tmp_path / "out")


@pytest.fixture
def batch(callbacks: Callbacks) -> BatchCallbacks:
    return BatchCallbacks(callbacks)


def _all_text(out: Path) -> str:
    """Every file name under ``out`` and inside its zips, and the CSV contents."""
    names = [p.as_posix() for p in out.rglob("*")]
    for archive in out.rglob("*.zip"):
        names += zipfile.ZipFile(archive).namelist()
    return "\n".join(names) + "".join(p.read_text() for p in out.rglob("*.csv"))


def test_a_batch_gives_a_gallery_a_table_a_csv_and_a_zip_under_neutral_names(batch, slices, tiny_segmenter) -> None:
    files = [str(slices[k]) for k in ("a", "b", "c")]
    result = batch.segment(files)
    competition = slices["c"].name
    assert [caption for _, caption in result.gallery] == ["slice-001.png", "slice-002.png", competition]
    # The table and the CSV are sorted by name, as predict's stats.csv.
    assert list(result.table["slice"]) == sorted(["slice-001.png", "slice-002.png", competition])
    assert "Stomach px" in result.table.columns and "Large bowel mm²" in result.table.columns
    # The batched path gives the single-slice masks; areas from the competition name's 1.5 mm spacing.
    with zipfile.ZipFile(result.zip) as archive:
        names = set(archive.namelist())
        assert {"stats.csv", "masks/slice-001.png", "overlays/slice-002.png", f"masks/{competition}"} <= names
        with archive.open("masks/slice-001.png") as handle:
            assert np.array_equal(np.array(Image.open(handle)), tiny_segmenter.predict(slices["a"]).mask)
    rows = list(csv.DictReader(Path(result.csv).read_text(encoding="utf-8").splitlines()))
    assert [row["file"] for row in rows] == sorted(["slice-001.png", "slice-002.png", competition])
    last = next(row for row in rows if row["file"] == competition)
    assert float(last["stomach_area_mm2"] or 0) == pytest.approx(int(last["stomach_pixels"]) * 2.25, abs=0.01)
    assert PATIENT not in _all_text(batch.callbacks.output_root)
    assert "3 of 3 slices" in result.summary
    # A click opens the slice in the full view, the same as a single upload of it.
    opened = batch.open(result.state, 0, 0.5, None)
    assert np.array_equal(opened.state.mask, tiny_segmenter.predict(slices["a"]).mask)
    assert "Stomach" in opened.card


def test_a_zip_goes_through_the_safe_unzipper_and_bad_slices_are_named_neutrally(batch, slices) -> None:
    result = batch.segment([str(slices["zip"]), str(slices["bad"])])
    assert len(result.gallery) == 3
    assert "3 of 4 slices" in result.summary and "slice-004.png" in result.summary
    assert PATIENT not in result.summary and PATIENT not in _all_text(batch.callbacks.output_root)


def test_the_bounds_refuse_clearly(callbacks, slices) -> None:
    files = [str(slices[k]) for k in ("a", "b", "c")]
    with pytest.raises(gr.Error, match="at most 2 slices"):
        BatchCallbacks(callbacks, max_slices=2).segment(files)
    with pytest.raises(gr.Error, match="batches up to"):
        BatchCallbacks(callbacks, max_bytes=100).segment(files)
    with pytest.raises(gr.Error, match="time limit"):
        BatchCallbacks(callbacks, time_limit_s=0).segment(files)
    with pytest.raises(gr.Error, match="No slice of the batch"):
        BatchCallbacks(callbacks).segment([str(slices["bad"])])
    with pytest.raises(gr.Error, match="no longer available"):
        BatchCallbacks(callbacks).open(BatchState(()), 0, 0.5, None)


def test_the_batch_api_returns_the_zip_and_the_table(batch, slices) -> None:
    archive, table = batch.segment_api([str(slices["a"]), str(slices["c"])])
    assert "masks/slice-001.png" in zipfile.ZipFile(archive).namelist()
    assert Path(table).read_text().startswith("file,id,height,width")


def test_neutral_names_keep_only_competition_names() -> None:
    taken: set[str] = set()
    assert neutral_name("Doe_Jane.png", 1, taken) == "slice-001.png"
    assert neutral_name("case1_day2_slice_0003_266_266_1.50_1.50.png", 2, taken).startswith("case1_day2_slice_0003")
    assert neutral_name("case1_day2_slice_0003_266_266_1.50_1.50.png", 3, taken) == "slice-003.png"


# --- colours -------------------------------------------------------------------------------


def _organ_pixels(mask: np.ndarray) -> list[int]:
    return [label.id for label in FOREGROUND if (mask == label.id).any()]


def test_chosen_colours_reach_the_overlay_the_mask_view_the_download_and_the_batch(callbacks, slices) -> None:
    colors = [RED, GREEN, BLUE]
    palette = organ_palette(colors)
    out = callbacks.segment(str(slices["c"]), "", 1.0, None, colors)
    mask = out.state.mask
    for organ in _organ_pixels(mask):
        assert tuple(out.mask_view[mask == organ][0]) == palette[organ]
    with Image.open(out.overlay_png) as saved:
        assert np.array_equal(np.array(saved), overlay(out.state.gray, mask, opacity=1.0, palette=palette))
    again = callbacks.rerender(out.state, 1.0, [label.name for label in FOREGROUND], [BLUE, RED, GREEN])
    assert not np.array_equal(again.overlay, out.overlay) or not _organ_pixels(mask)
    result = BatchCallbacks(callbacks).segment([str(slices["c"])], colors)
    with Image.open(result.gallery[0][0]) as saved:
        assert np.array_equal(np.array(saved), overlay(out.state.gray, mask, palette=palette))


def test_the_confidence_distribution_has_one_plot_per_organ(callbacks, slices) -> None:
    out = callbacks.segment(str(slices["c"]), "", 0.5, None)
    tables = distribution_tables(out.state.mask, out.state.confidence)
    for table, label in zip(tables, FOREGROUND):
        pixels = int((out.state.mask == label.id).sum())
        if pixels:  # shares of the organ's pixels, per 0.05 of confidence from 0.25
            assert table["share"].sum() == pytest.approx(100, abs=0.1)
            assert table["confidence"].iloc[0] == 0.25 and set(table["organ"]) == {label.display}
        else:
            assert table.empty
    plots = callbacks.distribution(out.state, [RED, GREEN, BLUE])
    assert [type(p) for p in plots] == [gr.BarPlot] * len(FOREGROUND)
    assert [p.color_map for p in plots] == [{lb.display: c} for lb, c in zip(FOREGROUND, (RED, GREEN, BLUE))]
    assert all(table.empty for table in distribution_tables(None, None))


def test_volume_colours_reach_the_planes_and_meshes_but_not_the_label_files(tiny_segmenter, tmp_path,
                                                                          phantom_series) -> None:
    volume = VolumeCallbacks(Callbacks(tiny_segmenter, output_root=tmp_path / "out"))
    colors = [RED, GREEN, BLUE]
    out = volume.segment(str(phantom_series["zip"]), colors=colors)
    glb = Path(out.mesh).read_bytes()
    document = json.loads(glb[20:20 + int.from_bytes(glb[12:16], "little")])
    for material in document.get("materials", []):
        expected = organ_palette(colors)[next(lb.id for lb in LABELS if lb.name == material["name"])]
        assert [round(c * 255) for c in material["pbrMetallicRoughness"]["baseColorFactor"][:3]] == list(expected)
    recoloured = volume.recolour(out.state, BLUE, RED, GREEN)
    assert recoloured != out.mesh and Path(recoloured).is_file()
    assert len(volume.distribution(out.state, *colors)) == len(FOREGROUND)
    # The exported label files keep the one label table's colours, whatever the page shows.
    labels_json = json.loads((Path(out.nifti).parent / "labels.json").read_text())
    assert [entry["color"] for entry in labels_json["labels"]] == [list(label.color) for label in LABELS]
    rt = pydicom.dcmread(out.rtstruct)
    shown = {roi.ROIName: list(map(int, contour.ROIDisplayColor))
             for roi, contour in zip(rt.StructureSetROISequence, rt.ROIContourSequence)}
    for label in FOREGROUND:
        if label.display in shown:
            assert shown[label.display] == list(label.color)
