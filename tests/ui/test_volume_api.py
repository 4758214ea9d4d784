"""The /segment_volume API over HTTP with gradio_client: a phantom DICOM zip, a NIfTI, a zipped
case-day folder, a refusal, and a volume model of its own (2.5D) beside the slice model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import free_port, save_tiny_model

from segapp.io.readers import read_volume
from segapp.ui import build_demo, launch_options

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def url(tiny_segmenter):
    demo = build_demo(tiny_segmenter, examples_dir=None)
    _, address, _ = demo.launch(**launch_options(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        yield address
    finally:
        demo.close()


@pytest.mark.parametrize("kind", ["zip", "nifti", "two_series_zip", "case_day_zip"])
def test_segment_volume_returns_the_label_map_of_predict_volume(url, tiny_segmenter, phantom_series, kind) -> None:
    import nibabel as nib

    client = gradio_client.Client(url, verbose=False)
    series = ""
    if kind == "two_series_zip":
        with pytest.raises(gradio_client.exceptions.AppError, match="2 series"):
            client.predict(gradio_client.handle_file(str(phantom_series[kind])), api_name="/segment_volume")
        from segapp.io.dicom import list_series

        series = next(s.uid for s in list_series(phantom_series[kind]) if s.slices == 6)
    labels_file, stats = client.predict(gradio_client.handle_file(str(phantom_series[kind])), series,
                                        api_name="/segment_volume")
    source = read_volume(phantom_series[kind], series=series or None)
    expected = tiny_segmenter.predict_volume(source)
    # A NIfTI input's labels come back in its own voxel order; a DICOM's or PNG slices' as
    # (column, row, slice).
    stored = np.asarray(nib.load(labels_file).dataobj)
    shown = source.from_source_order(stored) if kind == "nifti" else np.transpose(stored, (2, 1, 0))
    assert np.array_equal(shown, expected.labels)
    for name, organ in expected.organs.items():
        assert stats["organs"][name]["voxels"] == organ.voxels
        assert stats["organs"][name]["volume_ml"] == pytest.approx(organ.volume_ml)
    assert stats["spacing_mm"] == pytest.approx(list(source.spacing_mm))
    assert stats["size"] == list(source.shape) and stats["device"] == "cpu" and "total" in stats["timings_ms"]
    json.dumps(stats)


def test_segment_volume_refuses_with_the_readers_message(url, tmp_path) -> None:
    client = gradio_client.Client(url, verbose=False)
    letter = tmp_path / "letter.zip"
    letter.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)zip|DICOM"):
        client.predict(gradio_client.handle_file(str(letter)), api_name="/segment_volume")


@pytest.fixture(scope="module")
def url_with_volume_model(tiny_segmenter, tmp_path_factory):
    """The page with the 2D tiny model for slices and a 2.5D tiny model (offsets -1,0,1) for volumes."""
    from segapp.ui.server import LazySegmenter

    folder = save_tiny_model(tmp_path_factory.mktemp("models") / "model-2.5d", context=(-1, 0, 1), seed=1)
    volume_model = LazySegmenter(folder, device="cpu")
    demo = build_demo(tiny_segmenter, volume_segmenter=volume_model, examples_dir=None)
    _, address, _ = demo.launch(**launch_options(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        yield address, volume_model
    finally:
        demo.close()


def test_segment_volume_uses_the_volume_model(url_with_volume_model, tiny_segmenter, phantom_series) -> None:
    import nibabel as nib

    address, volume_model = url_with_volume_model
    client = gradio_client.Client(address, verbose=False)
    assert not volume_model.loaded  # loaded at the first volume, not with the page
    labels_file, stats = client.predict(gradio_client.handle_file(str(phantom_series["zip"])), "",
                                        api_name="/segment_volume")
    source = read_volume(phantom_series["zip"])
    expected = volume_model().predict_volume(source)
    assert volume_model().processing.context_offsets == (-1, 0, 1)
    assert np.array_equal(np.transpose(np.asarray(nib.load(labels_file).dataobj), (2, 1, 0)), expected.labels)
    assert {name: organ["voxels"] for name, organ in stats["organs"].items()} == {
        name: organ.voxels for name, organ in expected.organs.items()}
    # The slice API keeps the 2D model.
    mask_file, _ = client.predict(gradio_client.handle_file(str(phantom_series["first_file"])), "", api_name="/segment")
    from PIL import Image

    from segapp.io.readers import read_image

    expected_mask = tiny_segmenter.predict(read_image(phantom_series["first_file"])).mask
    assert np.array_equal(np.asarray(Image.open(mask_file)), expected_mask)
