"""python -m segapp.predict on volumes: DICOM folders and zips, NIfTI files, case-day slices."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segapp.io.dicom_seg import read_dicom_seg_labels
from segapp.io.readers import read_volume
from segapp.io.rtstruct import read_rtstruct_labels
from segapp.predict import main, predict
from segapp.synthetic import generate_dataset
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series, write_nifti_pair


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return phantom_volume(4, 9, 1, first=70, count=4)


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory, phantom) -> Path:
    folder = tmp_path_factory.mktemp("inputs") / "abdomen_series"
    write_dicom_series(phantom, folder, orientation="flip-rows", reverse=True)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_dicom_folder_gives_every_volume_format(tiny_segmenter, dicom_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = predict([dicom_folder], out=out, formats=["all"], segmenter=tiny_segmenter, progress=False)
    assert summary.ok and summary.volumes == 1 and summary.predicted == 0
    folder = out / "abdomen_series"
    assert {p.name for p in folder.iterdir()} == {
        "segmentation.nii.gz", "seg.dcm", "rtstruct.dcm", "labels.json", "labels.itksnap.txt", "labels.ctbl"}
    volume = read_volume(dicom_folder)
    labels = read_volume(folder / "segmentation.nii.gz").voxels
    # The same labels through every format, and each slice as the segmenter gives it alone.
    assert np.array_equal(read_dicom_seg_labels(folder / "seg.dcm", volume), labels)
    assert np.array_equal(read_rtstruct_labels(folder / "rtstruct.dcm", volume), labels)
    slices = volume.slices_uint8()
    assert np.array_equal(labels[1], tiny_segmenter.predict(slices[1]).mask)
    (row,) = _rows(out / "volumes.csv")
    assert row["volume"] == "abdomen_series" and row["kind"] == "dicom" and row["slices"] == "4"
    voxel_ml = np.prod(volume.spacing_mm) / 1000
    assert float(row["stomach_ml"]) == pytest.approx(int(row["stomach_voxels"]) * voxel_ml, abs=1e-3)
    assert int(row["stomach_voxels"]) == int((labels == 1).sum())


def test_patient_data_stays_out_of_names_tables_and_output(tiny_segmenter, dicom_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main([str(dicom_folder), "--out", str(out), "--format", "nifti", "--no-progress", "--device", "cpu",
                 "--weights", str(tiny_segmenter.loaded.source)]) == 0
    printed = capsys.readouterr()
    texts = [printed.out, printed.err, (out / "volumes.csv").read_text()]
    texts += [p.name for p in out.rglob("*")]
    texts += [nib.load(out / "abdomen_series" / "segmentation.nii.gz").header["descrip"].tobytes().decode(errors="ignore")]
    for text in texts:
        assert "Phantom^" not in text and "PH00009" not in text


def test_nifti_input_all_means_nifti_and_dicom_outputs_are_refused(tiny_segmenter, phantom, tmp_path: Path) -> None:
    image, _ = write_nifti_pair(phantom, tmp_path / "in", axcodes="RAS", name="scan")
    out = tmp_path / "out"
    summary = predict([image], out=out, formats=["all"], segmenter=tiny_segmenter, progress=False)
    assert summary.ok and sorted(p.name for p in (out / "scan_image").iterdir())[0] == "labels.ctbl"
    assert not (out / "scan_image" / "seg.dcm").exists()
    written = nib.load(out / "scan_image" / "segmentation.nii.gz")
    assert np.allclose(written.affine, nib.load(image).affine)  # on the input's own grid
    lines: list[str] = []
    summary = predict([image], out=tmp_path / "out2", formats=["dicom-seg"], segmenter=tiny_segmenter,
                      progress=False, log=lines.append)
    assert not summary.ok and "needs a DICOM input" in lines[0]
    assert not (tmp_path / "out2" / "scan_image").exists()


def test_a_zip_and_a_series_choice(tiny_segmenter, phantom, dicom_folder: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    write_dicom_series(phantom, two / "a")
    write_dicom_series(phantom, two / "b", orientation="transposed")  # another series (other UIDs)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(two.rglob("IM*")):
            zf.write(path, path.relative_to(two).as_posix())
    lines: list[str] = []
    summary = predict([archive], out=tmp_path / "out", formats=["nifti"], segmenter=tiny_segmenter,
                      progress=False, log=lines.append)
    assert not summary.ok and "2 series; choose one" in lines[0]
    uid = lines[0].splitlines()[1].rsplit(" ", 1)[-1]
    summary = predict([archive], out=tmp_path / "out", formats=["nifti"], segmenter=tiny_segmenter,
                      progress=False, series=uid)
    assert summary.ok and (tmp_path / "out" / "study" / "segmentation.nii.gz").is_file()


def test_case_day_slices_also_become_nifti_volumes(tiny_segmenter, tmp_path: Path) -> None:
    generate_dataset(tmp_path / "raw", train=20, valid=0, seed=3, raw=True, progress=False)
    scans = sorted((tmp_path / "raw").rglob("scans"))[0]
    out = tmp_path / "out"
    summary = predict([scans], out=out, formats=["png", "nifti"], segmenter=tiny_segmenter, progress=False)
    assert summary.ok and summary.predicted == len(list(scans.glob("*.png")))
    case_day = scans.parent.name
    labels = read_volume(out / case_day / "segmentation.nii.gz").voxels
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == summary.predicted == labels.shape[0]
    from segapp.io.readers import read_image

    # Volume slice 0 is the highest slice number (slices grow toward the feet).
    assert np.array_equal(labels[0], read_image(masks[-1]).pixels)
    (row,) = _rows(out / "volumes.csv")
    assert row["volume"] == case_day and row["kind"] == "png" and row["slice_mm"] == "3.0"


def test_format_lists_are_checked() -> None:
    with pytest.raises(SystemExit):
        main(["x", "--out", "y", "--format", "nifti,bogus"])


def test_sharing_gives_each_input_to_exactly_one_process(tmp_path: Path) -> None:
    from segapp.inference.batch import _share
    from segapp.inference.batch_inputs import InputFile
    from segapp.model.distributed import Dist

    entries = [InputFile(tmp_path / f"case{c}_day1_slice_{n:04d}_8_8_1.50_1.50.png", f"c{c}n{n}.png")
               for c in (1, 2, 3) for n in (1, 2, 3)] + [InputFile(tmp_path / f"plain{i}.png", f"plain{i}.png") for i in range(3)]
    volumes = [tmp_path / f"v{i}" for i in range(3)]
    shares = [_share(entries, volumes, Dist(rank, 2)) for rank in (0, 1)]
    got_entries = [e for share in shares for e in share[0]]
    got_volumes = [v for share in shares for v in share[1]]
    assert sorted(e.relative for e in got_entries) == sorted(e.relative for e in entries)  # each exactly once
    assert sorted(got_volumes) == sorted(volumes)
    assert all(share[0] or share[1] for share in shares)  # both processes get work
    for share in shares:  # a case-day's slices stay together (its NIfTI volume needs them all)
        days = {e.path.name.split("_slice")[0] for e in share[0] if e.path.name.startswith("case")}
        for other in shares:
            if other is not share:
                assert not days & {e.path.name.split("_slice")[0] for e in other[0] if e.path.name.startswith("case")}


def test_torchrun_two_processes_write_every_output_once(tiny_model_dir: Path, phantom, tmp_path: Path) -> None:
    from helpers import torchrun_two_cpu

    inputs = tmp_path / "in"
    for name, orientation in (("a", "standard"), ("b", "transposed"), ("c", "rotated-180")):
        write_dicom_series(phantom, inputs / name, orientation=orientation)
    generate_dataset(tmp_path / "raw", train=30, valid=0, seed=3, raw=True, progress=False)
    scan_folders = sorted(str(p) for p in (tmp_path / "raw").rglob("scans"))[:2]
    out = tmp_path / "out"
    result = torchrun_two_cpu("-m", "segapp.predict", *(str(inputs / n) for n in "abc"), *scan_folders,
                              "--out", str(out), "--format", "png,nifti", "--weights", str(tiny_model_dir),
                              "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    slices = sum(len(list(Path(f).glob("*.png"))) for f in scan_folders)
    stats = _rows(out / "stats.csv")
    assert len(stats) == slices == len({row["file"] for row in stats})  # every slice once
    volumes = _rows(out / "volumes.csv")
    case_days = sorted(Path(f).parent.name for f in scan_folders)
    assert sorted(row["volume"] for row in volumes) == sorted(["a", "b", "c", *case_days])
    for row in volumes:
        assert (out / row["volume"] / "segmentation.nii.gz").is_file()
    assert not (out / ".segapp-shards").exists()
    assert result.stdout.count("slices segmented") == 1  # rank 0 reports for both


def test_a_2_5d_model_reads_case_day_slices_with_their_neighbours_and_names_lone_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import save_tiny_model
    from PIL import Image

    from segapp.inference.segmenter import Segmenter
    from segapp.io.casefolder import read_case_folder

    weights = save_tiny_model(tmp_path / "ctx", context=(-2, 0, 2), seed=1)
    generate_dataset(tmp_path / "raw", train=20, valid=0, seed=3, raw=True, progress=False)
    scans = sorted((tmp_path / "raw").rglob("scans"))[0]
    lone = tmp_path / "lone.png"
    Image.open(next(scans.glob("*.png"))).save(lone)  # no competition name
    out = tmp_path / "out"
    assert main([str(scans), str(lone), "--out", str(out), "--weights", str(weights), "--device", "cpu",
                 "--no-progress", "--format", "png,nifti"]) == 0
    err = capsys.readouterr().err
    assert "note 1 slice(s): no neighbouring slice among the inputs" in err
    assert "This model reads neighbouring slices (offsets -2,0,2)" in err
    # The case-day's masks are those of the volume path, which feeds each slice its neighbours.
    segmenter = Segmenter.from_pretrained(weights, device="cpu")
    expected = segmenter.predict_volume(read_case_folder(scans, max_voxels=10**8)).labels
    labels = read_volume(out / scans.parent.name / "segmentation.nii.gz").voxels
    assert np.array_equal(labels, expected)
    masks = sorted((out / "masks").glob("slice_*.png"))
    assert np.array_equal(np.asarray(Image.open(masks[-1])), expected[0])


def test_a_zipped_case_day_folder_is_a_volume(tiny_segmenter, tmp_path: Path) -> None:
    """predict reads a zip of caseN_dayD/scans/ as the folder's volume (its NIfTI labels the same)."""
    generate_dataset(tmp_path / "raw", train=6, valid=0, seed=4, raw=True, progress=False)
    scans = sorted((tmp_path / "raw").rglob("scans"))[0]
    archive = tmp_path / "day.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(scans.glob("*.png")):
            zf.write(path, path.relative_to(scans.parents[1]).as_posix())
    summary = predict([archive], out=tmp_path / "out", formats=["nifti"], segmenter=tiny_segmenter, progress=False)
    assert summary.ok
    labels = read_volume(tmp_path / "out" / "day" / "segmentation.nii.gz").voxels
    expected = tiny_segmenter.predict_volume(read_volume(scans.parent)).labels
    assert np.array_equal(labels, expected)
    (row,) = _rows(tmp_path / "out" / "volumes.csv")
    assert row["kind"] == "png" and row["slice_mm"] == "3.0"
