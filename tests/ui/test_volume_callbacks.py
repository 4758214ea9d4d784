"""The volume tab's handlers and drawing, without a browser (tiny model, phantom series)."""

from __future__ import annotations

import csv
import json
import struct
import threading

import gradio as gr
import numpy as np
import pytest
from helpers import save_tiny_model

from segapp.io.readers import read_volume
from segapp.labels import FOREGROUND
from segapp.synthetic import generate_slice
from segapp.ui.callbacks import Callbacks
from segapp.ui.page import build_demo
from segapp.ui.server import SAME, LazySegmenter
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
    labels = [label for label, _ in choices]
    assert sum(" 4 slices" in label for label in labels) == 1
    assert sum(f" {VOLUME_SLICES} slices" in label for label in labels) == 1
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



# --- the volume mode's own model (a 2.5D one beside a 2D slice model) ------------------------


@pytest.fixture(scope="module")
def volume_model_dir(tmp_path_factory):
    """A tiny 2.5D model folder (offsets -1,0,1), with other weights than the 2D ``tiny_segmenter``."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "model-2.5d", context=(-1, 0, 1), seed=1)


@pytest.fixture(scope="module")
def slice_file(tmp_path_factory):
    """A 16-bit phantom slice under its competition-style name."""
    from PIL import Image

    phantom = generate_slice(3, empty=False)
    path = tmp_path_factory.mktemp("slice") / phantom.file_name
    Image.fromarray(phantom.image16).save(path)
    return str(path)


@pytest.fixture()
def two_models(tiny_model_dir, volume_model_dir, tmp_path):
    """Callbacks with a lazy 2D slice model and a lazy 2.5D volume model, as app.py wires them."""
    slice_model = LazySegmenter(tiny_model_dir, device="cpu")
    volume_model = LazySegmenter(volume_model_dir, device="cpu", same_as=slice_model)
    return Callbacks(slice_model, volume_segmenter=volume_model, output_root=tmp_path / "out"), slice_model, volume_model


def test_a_volume_model_of_its_own_segments_volumes_and_loads_at_the_first(two_models, tiny_segmenter,
                                                                           phantom_series) -> None:
    import pydicom

    callbacks, slice_model, volume_model = two_models
    about, _ = callbacks.about()
    assert slice_model.loaded and not volume_model.loaded  # the About loads only the slice model
    assert "Slice mode: `models" in about and "tiny` (folder), 2D" in about
    assert "Volume mode: `" in about and "model-2.5d`, 2.5D, channels at slice offsets -1,0,1; loaded at the first volume" in about
    assert "a second model: it reads each slice together with its neighbours" in about

    outputs = VolumeCallbacks(callbacks).segment([str(phantom_series["zip"])])
    assert volume_model.loaded
    source = read_volume(phantom_series["zip"])
    expected = volume_model().predict_volume(source)
    flat = tiny_segmenter.predict_volume(source)
    assert volume_model().processing.is_2_5d and not np.array_equal(expected.confidence, flat.confidence)
    assert np.array_equal(outputs.state.labels, expected.labels)
    assert {name: organ["voxels"] for name, organ in outputs.stats["organs"].items()} == {
        name: organ.voxels for name, organ in expected.organs.items()}
    assert "/model-2.5d, 2.5D, channels at slice offsets -1,0,1</span>" in outputs.card and "Device cpu" in outputs.card
    assert pydicom.dcmread(outputs.seg).SegmentSequence[0].SegmentAlgorithmName == "model-2.5d"
    # Once loaded, the About says where the volume model runs.
    about, _ = callbacks.about()
    assert "model-2.5d` (folder), 2.5D, channels at slice offsets -1,0,1; SegFormer-" in about and "on `cpu`" in about


def test_the_slice_mode_keeps_the_2d_model_beside_a_2_5d_volume_model(two_models, tiny_segmenter, slice_file) -> None:
    callbacks, _, volume_model = two_models
    outputs = callbacks.segment(slice_file)
    assert np.array_equal(outputs.state.mask, tiny_segmenter.predict(slice_file).mask)
    assert "neighbouring slices" not in outputs.card  # a 2D model: no single-slice notice
    assert not volume_model.loaded


def test_same_or_no_volume_model_is_the_slice_model(tiny_model_dir, tiny_segmenter, tmp_path) -> None:
    plain = Callbacks(tiny_segmenter, output_root=tmp_path / "a")
    assert plain.volume_segmenter() is tiny_segmenter
    assert "Volume mode: the slice mode's weights" in plain.about()[0] and "a second model" not in plain.about()[0]

    loads: list[str] = []

    def loader(source, options):
        loads.append(str(source))
        return tiny_segmenter

    slice_model = LazySegmenter(tiny_model_dir, loader=loader)
    for source in (SAME, tiny_model_dir):  # the word, or the slice model's own source
        volume_model = LazySegmenter(source, loader=loader, same_as=slice_model)
        callbacks = Callbacks(slice_model, volume_segmenter=volume_model, output_root=tmp_path / "b")
        assert volume_model.shares_model
        assert "Volume mode: the slice mode's weights" in callbacks.about()[0]
        assert callbacks.volume_segmenter() is callbacks.segmenter() is tiny_segmenter
    assert loads == [str(tiny_model_dir)]  # loaded once, for both modes
    with pytest.raises(ValueError, match="slice model"):
        LazySegmenter(SAME)()


def test_a_volume_model_that_cannot_load_is_a_readable_error(tiny_segmenter, tmp_path, phantom_series,
                                                            slice_file) -> None:
    missing = LazySegmenter(tmp_path / "no-such-model", device="cpu")
    callbacks = Callbacks(tiny_segmenter, volume_segmenter=missing, output_root=tmp_path / "out")
    assert "no-such-model`; loaded at the first volume" in callbacks.about()[0]
    with pytest.raises(gr.Error, match="volume model could not be loaded"):
        VolumeCallbacks(callbacks).segment([str(phantom_series["zip"])])
    assert callbacks.segment(slice_file).state is not None  # the slice mode keeps serving


def test_slices_are_served_while_a_volume_runs_on_its_own_model(two_models, phantom_series, slice_file) -> None:
    callbacks, slice_model, volume_model = two_models
    slice_model(), volume_model()  # loaded first, so the timing below is the models' alone
    midway, slice_done = threading.Event(), threading.Event()
    waited: list[bool] = []

    def progress(done: int, total: int) -> None:
        if done < total and not midway.is_set():  # after the first batch: hold the volume here
            midway.set()
            waited.append(slice_done.wait(timeout=60))

    runner = threading.Thread(target=VolumeCallbacks(callbacks).segment, args=([str(phantom_series["zip"])],),
                              kwargs={"progress": progress})
    runner.start()
    assert midway.wait(timeout=60)
    assert callbacks.segment(slice_file).state is not None  # while the volume is half done
    slice_done.set()
    runner.join(timeout=60)
    assert waited == [True] and not runner.is_alive()
