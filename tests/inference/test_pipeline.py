"""The one volume pipeline: source -> ScanVolume -> prediction -> files, and its one error type."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from segapp.inference.pipeline import (
    INPUT_REASONS,
    VolumeError,
    process_volume,
    read_source,
    segment_volume,
    terminal_progress,
    write_volume,
)
from segapp.io.readers import read_volume
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series, write_nifti_pair

SLICES = 4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict[str, Path | list[Path]]:
    """A 4-slice phantom series as DICOM files and as a NIfTI image (patient data in the headers)."""
    folder = tmp_path_factory.mktemp("phantom")
    volume = phantom_volume(3, 1, 1, first=60, count=SLICES, size=(234, 234))
    files = write_dicom_series(volume, folder / "series")
    image, _ = write_nifti_pair(volume, folder / "nifti")
    return {"files": files, "folder": folder / "series", "nifti": image}


def test_dicom_files_give_every_format_and_the_labels_of_predict_volume(tiny_segmenter, phantom, tmp_path) -> None:
    seen: list[tuple[int, int]] = []
    result = process_volume(phantom["files"], tiny_segmenter, tmp_path / "case", every=True, batch_size=3,
                            progress=lambda done, total: seen.append((done, total)))
    expected = tiny_segmenter.predict_volume(read_volume(phantom["folder"]))
    assert np.array_equal(result.prediction.labels, expected.labels)
    assert set(result.files) == {"nifti", "labels", "dicom-seg", "rtstruct"}
    assert all(path.parent == tmp_path / "case" and path.is_file() for path in result.files.values())
    assert pydicom.dcmread(result.files["dicom-seg"]).Modality == "SEG"
    assert seen == [(3, SLICES), (SLICES, SLICES)]
    assert set(result.seconds) == {"read", "segment", "write"}
    row = result.row()
    assert row["volume"] == "case" and row["slices"] == SLICES and row["kind"] == "dicom"


def test_formats_follow_the_input_and_a_dicom_output_of_a_nifti_is_refused_before_writing(
        tiny_segmenter, phantom, tmp_path) -> None:
    result = process_volume(phantom["nifti"], tiny_segmenter, tmp_path / "all", formats=["png"], every=True)
    assert set(result.files) == {"nifti", "labels"}  # every: the NIfTI only; slice formats ignored
    stored = np.asarray(nib.load(result.files["nifti"]).dataobj)
    assert np.array_equal(result.volume.from_source_order(stored), result.prediction.labels)
    with pytest.raises(VolumeError, match="needs a DICOM input") as caught:
        process_volume(phantom["nifti"], tiny_segmenter, tmp_path / "seg", formats=["dicom-seg"])
    assert caught.value.reason == "format" and caught.value.reason in INPUT_REASONS
    assert not (tmp_path / "seg").exists()


def test_unreadable_and_too_large_inputs_are_one_error_type_without_file_names(tiny_segmenter, tmp_path) -> None:
    letter = tmp_path / "Doe_John_19600101.zip"
    letter.write_text("not a zip, not a scan")
    with pytest.raises(VolumeError) as caught:
        process_volume(letter, tiny_segmenter, tmp_path / "out")
    assert caught.value.reason == "unreadable" and "Doe_John" not in str(caught.value)
    with pytest.raises(VolumeError, match="volumes up to") as caught:
        read_source([letter], max_bytes=10)
    assert caught.value.reason == "too-large"
    with pytest.raises(VolumeError) as caught:
        read_source(tmp_path / "Doe_John_gone.nii.gz")
    assert caught.value.reason == "unreadable" and "Doe_John" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_model_failure_and_a_cancel_are_volume_errors(tiny_segmenter, phantom, monkeypatch, caplog) -> None:
    volume = read_source(phantom["files"])
    cancel = threading.Event()
    with pytest.raises(VolumeError, match="cancelled") as caught:
        segment_volume(tiny_segmenter, volume, batch_size=1, progress=lambda done, total: cancel.set(), cancel=cancel)
    assert caught.value.reason == "cancelled"

    def broken(*args, **kwargs):
        raise RuntimeError(f"CUDA error reading {phantom['folder']}")

    monkeypatch.setattr(tiny_segmenter, "predict_volume", broken)
    with caplog.at_level(logging.INFO), pytest.raises(VolumeError, match=r"failed unexpectedly \(RuntimeError\)") as caught:
        segment_volume(tiny_segmenter, volume)
    assert caught.value.reason == "model" and str(phantom["folder"]) not in str(caught.value)
    assert "RuntimeError" in caplog.text and str(phantom["folder"]) not in caplog.text  # the type, never the text


def test_labels_handed_in_are_written_instead_of_predicted(tiny_segmenter, phantom, tmp_path) -> None:
    volume = read_source(phantom["files"])
    corrected = np.zeros(volume.shape, np.uint8)
    corrected[1:3, 10:20, 10:20] = 2
    result = process_volume(volume, tiny_segmenter, tmp_path / "fixed", formats=["nifti", "rtstruct"],
                            labels=corrected)
    assert np.array_equal(result.prediction.labels, corrected) and result.prediction.confidence is None
    assert result.prediction.organs["small_bowel"].voxels == 200
    assert result.prediction.organs["small_bowel"].mean_confidence is None
    assert set(result.files) == {"nifti", "labels", "rtstruct"}
    with pytest.raises(ValueError, match="grid"):
        process_volume(volume, tiny_segmenter, tmp_path / "bad", labels=corrected[:2])


def test_the_write_step_maps_a_refused_disk(tiny_segmenter, phantom, tmp_path) -> None:
    prediction = segment_volume(tiny_segmenter, read_source(phantom["files"]))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(VolumeError, match="Could not write") as caught:
        write_volume(prediction, blocker / "inside", ["nifti"])
    assert caught.value.reason == "write" and caught.value.reason not in INPUT_REASONS


def test_terminal_progress_draws_a_bar_only_when_enabled(capsys) -> None:
    with terminal_progress("segmenting", enabled=False) as bar:
        assert bar is None
    with terminal_progress("segmenting") as bar:
        assert bar is not None
        bar(2, 4)
        bar(4, 4)
    assert "segmenting" in capsys.readouterr().err
