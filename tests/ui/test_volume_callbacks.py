"""The volume tab's handlers and drawing, without a browser (tiny model, phantom series)."""

from __future__ import annotations

import csv
import json
import struct

import gradio as gr
import numpy as np
import pytest

from segapp.io.volume import read_volume
from segapp.labels import FOREGROUND
from segapp.ui.callbacks import Callbacks
from segapp.ui.page import build_demo
from segapp.ui.views import VolumeView, glb_bytes, organ_meshes
from segapp.ui.volume import VolumeCallbacks, make_example_zip

VOLUME_SLICES = 6  # the phantom_series fixture's slice count (tests/ui/conftest.py)


@pytest.fixture()
def volume(tiny_segmenter, tmp_path) -> VolumeCallbacks:
    return VolumeCallbacks(Callbacks(tiny_segmenter, output_root=tmp_path / "out"))


def test_a_dicom_zip_gives_every_download_and_the_masks_of_predict_volume(volume, tiny_segmenter, phantom_series) -> None:
    import pydicom

    outputs = volume.segment([str(phantom_series["zip"])], None, 0.5, [label.name for label in FOREGROUND])
    expected = tiny_segmenter.predict_volume(read_volume(phantom_series["zip"]))
    assert np.array_equal(outputs.state.labels, expected.labels)
    import nibabel as nib

    assert nib.load(outputs.nifti).get_fdata().astype(np.uint8).sum() == expected.labels.sum()
    assert pydicom.dcmread(outputs.seg).Modality == "SEG"
    assert pydicom.dcmread(outputs.rtstruct).Modality == "RTSTRUCT"
    with open(outputs.table, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["organ"] for row in rows] == [label.name for label in FOREGROUND]
    for row in rows:
        assert int(row["voxels"]) == expected.organs[row["organ"]].voxels
    with open(outputs.mesh, "rb") as handle:
        assert handle.read(4) == b"glTF"
    assert outputs.stats["size"] == [VOLUME_SLICES, *expected.labels.shape[1:]]
    json.dumps(outputs.stats)
    assert f'data-slices="{VOLUME_SLICES}"' in outputs.views
    assert outputs.slider.maximum == VOLUME_SLICES and outputs.slider.interactive is True
    # Nothing from the header that identifies the patient reaches the page.
    for shown in (outputs.card, outputs.views, json.dumps(outputs.stats)):
        assert "Phantom^" not in shown and "PH0000" not in shown
    assert "mL" in outputs.card and "slice step 3.00 mm" in outputs.card


def test_a_nifti_gives_the_label_map_without_dicom_outputs(volume, phantom_series) -> None:
    outputs = volume.segment(str(phantom_series["nifti"]))
    assert outputs.nifti and outputs.seg is None and outputs.rtstruct is None and outputs.table


def test_a_folder_upload_and_one_dicom_file_are_read(volume, phantom_series) -> None:
    files = sorted(str(p) for p in phantom_series["folder"].iterdir())
    assert volume.read(files).shape[0] == VOLUME_SLICES
    assert volume.read([str(phantom_series["first_file"])]).shape[0] == 1


def test_a_zipped_case_day_folder_is_a_volume_without_a_series_choice(volume, phantom_series, caplog) -> None:
    import logging

    archive = [str(phantom_series["case_day_zip"])]
    chooser, card = volume.inspect(archive)
    assert chooser.visible is False and "Ready" in card
    with caplog.at_level(logging.DEBUG):
        outputs = volume.segment(archive)
    assert outputs.stats["size"][0] == VOLUME_SLICES and outputs.nifti and outputs.seg is None
    assert outputs.stats["spacing_mm"][0] == 3.0  # the data set's slice step
    assert "slice_0" not in caplog.text and "case2_day1" not in caplog.text  # file names are never logged


def test_several_series_are_listed_before_anything_runs(volume, phantom_series) -> None:
    chooser, card = volume.inspect([str(phantom_series["two_series_zip"])])
    choices = chooser.choices
    assert len(choices) == 2 and "Several series" in card
    labels = sorted(label for label, _ in choices)
    assert "4 slices" in labels[0] and f"{VOLUME_SLICES} slices" in labels[1]
    with pytest.raises(gr.Error, match="2 series"):
        volume.read([str(phantom_series["two_series_zip"])])
    uid = next(uid for label, uid in choices if f"{VOLUME_SLICES} slices" in label)
    assert volume.read([str(phantom_series["two_series_zip"])], uid).shape[0] == VOLUME_SLICES
    single, _ = volume.inspect([str(phantom_series["zip"])])
    assert single.visible is False


def test_refusals_are_readable(volume, tmp_path, tiny_segmenter) -> None:
    letter = tmp_path / "letter.zip"
    letter.write_text("not a zip, not a scan")
    with pytest.raises(gr.Error, match="DICOM"):
        volume.segment([str(letter)])
    with pytest.raises(gr.Error, match="No volume yet"):
        volume.segment(None)
    with pytest.raises(gr.Error, match="no longer on the server"):
        volume.segment([str(tmp_path / "gone.zip")])
    small = VolumeCallbacks(Callbacks(tiny_segmenter, output_root=tmp_path / "o"), max_bytes=10)
    with pytest.raises(gr.Error, match="volumes up to"):
        small.segment([str(letter)])


def test_progress_is_reported_and_cancel_stops_the_run(volume, phantom_series) -> None:
    seen: list[tuple[int, int]] = []
    volume.segment([str(phantom_series["zip"])], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (VOLUME_SLICES, VOLUME_SLICES)

    def cancel_at_once(done: int, total: int) -> None:
        volume.cancel("session-a")

    source = read_volume(phantom_series["zip"])
    assert volume.batch_size < VOLUME_SLICES  # so the cancel lands between two batches
    with pytest.raises(gr.Error, match="cancelled"):
        volume.predict(source, cancel_at_once, "session-a")


def test_slice_steps_show_the_slice_asked_for(volume, phantom_series) -> None:
    outputs = volume.segment([str(phantom_series["zip"])])
    first = volume.show(outputs.state, 1, 0.5, ["stomach"])
    last = volume.show(outputs.state, VOLUME_SLICES, 0.5, ["stomach"])
    assert 'data-slice="1"' in first and f'data-slice="{VOLUME_SLICES}"' in last and first != last
    assert volume.show(outputs.state, 99, 0.5, []).count(f'data-slice="{VOLUME_SLICES}"') == 1  # clamped
    assert isinstance(volume.show(None, 1, 0.5, []), type(gr.skip()))


def test_reformats_keep_the_true_proportions() -> None:
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[4:6, 8:12, 10:20] = 1
    view = VolumeView.of(np.full(labels.shape, 100, np.uint8), labels, (3.0, 1.5, 1.0))
    assert view.reformat("coronal", opacity=0.5, visible=None).shape == (30, 30, 3)  # 10 x 3 mm / 1 mm
    assert view.reformat("sagittal", opacity=0.5, visible=None).shape == (20, 20, 3)  # 10 x 3 mm / 1.5 mm
    assert (view.coronal_row, view.sagittal_column) == (9, 14)  # through the organ
    coronal = view.reformat("coronal", opacity=1.0, visible=None)
    assert coronal[:12, 15].tolist() == [[100, 100, 100]] * 12  # head at the top: the organ is low
    assert view.marker_percent(0) == pytest.approx(95.0) and view.marker_percent(9) == pytest.approx(5.0)
    assert view.reformat_uri("coronal", opacity=0.5, visible=None) is view.reformat_uri(
        "coronal", opacity=0.5, visible=None)  # drawn once per setting


def test_meshes_are_in_patient_mm_and_the_glb_is_valid() -> None:
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[2:6, 4:12, 4:12] = 2
    affine = np.array([[0, 0, 1.5, 10], [0, 1.5, 0, 20], [3.0, 0, 0, 30], [0, 0, 0, 1]])
    meshes = organ_meshes(labels, affine)
    assert [m.name for m in meshes] == ["small_bowel"]
    vertices = meshes[0].vertices
    assert vertices[:, 2].min() == pytest.approx(30 + 3.0 * 1.5) and vertices[:, 2].max() == pytest.approx(30 + 3.0 * 5.5)
    data = glb_bytes(meshes)
    magic, version, length = struct.unpack("<III", data[:12])
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    size = struct.unpack("<I", data[12:16])[0]
    document = json.loads(data[20 : 20 + size])
    assert document["accessors"][2]["count"] == meshes[0].faces.size
    assert document["materials"][0]["name"] == "small_bowel"
    assert glb_bytes([])[:4] == b"glTF"


def test_the_example_is_a_phantom_series_zip(tmp_path, volume) -> None:
    archive = make_example_zip(tmp_path, count=3)
    assert read_volume(archive).shape[0] == 3


def test_the_page_has_a_volume_tab(tiny_segmenter) -> None:
    demo = build_demo(tiny_segmenter, examples_dir=None)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"volume-tab", "vol-upload", "vol-folder", "vol-slice", "vol-views", "vol-mesh",
            "vol-download-seg", "slice-tab", "upload"} <= ids

