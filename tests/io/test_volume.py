"""read_volume: NIfTI, DICOM series and case-day folders into one display convention.

Real files others wrote (pydicom's and nibabel's test data) and series made here from them;
every refusal is a readable InvalidVolumeError without patient data.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from segapp.io.readers import read_volume
from segapp.io.volume import InvalidVolumeError, plane_name

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
DICOMDIR_TESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
MR_SMALL_ENCODINGS = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                      "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                      "MR_small_padded.dcm"]
PATIENT_NAME = "Doe^Jane"


# ---------------------------------------------------------------------------
# A series made from MR_small: known pixels per slice, any orientation and slice order


def _series(folder: Path, *, slices: int = 5, step: float = 2.5, flip_rows: bool = False,
            flip_cols: bool = False, reverse: bool = False, positions: list[float] | None = None,
            iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0)) -> np.ndarray:
    """Write an axial series whose slice k (foot to head) holds ``base + 100 k`` in the display
    convention; the files store it with the given flips and order. Returns (Z, H, W) expected."""
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    base = template.pixel_array.astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, frame_uid = generate_uid(), generate_uid()
    expected = np.stack([base + 100 * k for k in range(slices)])
    row_cos = np.array(iop[:3], dtype=float) * (-1 if flip_cols else 1)
    col_cos = np.array(iop[3:], dtype=float) * (-1 if flip_rows else 1)
    dy, dx = (float(v) for v in template.PixelSpacing)
    z_positions = positions if positions is not None else [step * k for k in range(slices)]
    for k, z in enumerate(z_positions):
        pixels = expected[min(k, slices - 1)]
        if flip_rows:
            pixels = pixels[::-1]
        if flip_cols:
            pixels = pixels[:, ::-1]
        # The display voxel (i, j) of slice k lies at (j dx, i dy, z); the stored first pixel is
        # wherever the flips put it.
        origin = np.array([dx * (base.shape[1] - 1) if flip_cols else 0.0,
                           dy * (base.shape[0] - 1) if flip_rows else 0.0, z])
        ds = template.copy()
        ds.PatientName, ds.PatientID = PATIENT_NAME, "ID-12345"
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series_uid, frame_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = [*row_cos.tolist(), *col_cos.tolist()]
        ds.ImagePositionPatient = origin.tolist()
        ds.InstanceNumber = k + 1
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
        index = slices - 1 - k if reverse else k
        ds.save_as(folder / f"{PATIENT_NAME.replace('^', '_')}_{index:03d}", enforce_file_format=True)
    return expected


# ---------------------------------------------------------------------------
# DICOM


@pytest.mark.parametrize("name", MR_SMALL_ENCODINGS)
def test_every_encoding_of_mr_small_reads_the_same_pixels(name: str) -> None:
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    volume = read_volume(get_testdata_file(name))
    assert volume.shape == (1, 64, 64) and volume.kind == "dicom"
    # MR_small is axial with IOP (1,0,0,0,1,0): already the display convention.
    assert np.array_equal(volume.voxels[0], reference)
    assert volume.spacing_mm[1:] == (0.3125, 0.3125)


@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("reverse", [False, True])
def test_every_in_plane_orientation_and_slice_order_gives_the_display_convention(tmp_path: Path, flips, reverse) -> None:
    expected = _series(tmp_path, flip_rows=flips[0], flip_cols=flips[1], reverse=reverse)
    volume = read_volume(tmp_path)
    assert np.array_equal(volume.voxels, expected)
    assert volume.spacing_mm == pytest.approx((2.5, 0.3125, 0.3125))
    # Voxel (k, i, j) -> LPS: columns toward the left (+x), rows toward posterior (+y), k toward the head (+z).
    assert np.allclose(volume.affine_lps[:3, :3], np.diag([2.5, 0.3125, 0.3125])[[2, 1, 0]])
    assert np.allclose(volume.affine_lps[:3, 3], [0, 0, 0])
    # Header k describes slice k in the source order: where that slice lies in display order.
    source_z = volume.to_source_order(np.indices(volume.shape)[0])[:, 0, 0]
    assert [float(h.ImagePositionPatient[2]) for h in volume.headers] == pytest.approx(list(2.5 * source_z))


def test_slices_back_in_source_order(tmp_path: Path) -> None:
    _series(tmp_path, flip_rows=True, reverse=True)
    volume = read_volume(tmp_path)
    labels = (volume.voxels > volume.voxels.mean()).astype(np.uint8)
    assert labels.any() and not labels.all()
    back = volume.to_source_order(labels)
    # Source order: rows as stored (flipped) and slices sorted along the files' normal,
    # cross(row direction, column direction) = (1,0,0) x (0,-1,0), toward the feet: head first.
    assert np.array_equal(back, labels[::-1, ::-1, :])


def test_a_list_of_files_and_a_zip_read_like_the_folder(tmp_path: Path) -> None:
    expected = _series(tmp_path / "series", reverse=True)
    files = sorted((tmp_path / "series").iterdir())
    assert np.array_equal(read_volume(files).voxels, expected)
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, f"nested/folder/{path.name}")
    assert np.array_equal(read_volume(archive).voxels, expected)


def test_non_image_objects_and_stray_files_are_skipped_and_counted(tmp_path: Path) -> None:
    expected = _series(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    rtstruct = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    rtstruct.save_as(tmp_path / "rs")
    volume = read_volume(tmp_path)
    assert np.array_equal(volume.voxels, expected)
    assert any("1 RTSTRUCT object" in n and "1 not DICOM" in n for n in volume.notes)


def test_several_series_are_listed_and_one_can_be_picked(tmp_path: Path) -> None:
    expected = _series(tmp_path / "a", slices=3)
    _series(tmp_path / "b", slices=4)
    with pytest.raises(InvalidVolumeError, match=r"2 series; choose one") as error:
        read_volume(tmp_path)
    listing = str(error.value)
    assert "3 slices of 64 x 64, axial" in listing and "4 slices of 64 x 64, axial" in listing
    uid = next(line for line in listing.splitlines() if "3 slices" in line).rsplit(" ", 1)[-1]
    assert np.array_equal(read_volume(tmp_path, series=uid).voxels, expected)
    with pytest.raises(InvalidVolumeError, match="is not in the files"):
        read_volume(tmp_path, series="1.2.3")


def test_real_tri_plane_pilots_are_listed_as_mixed_and_refused() -> None:
    with pytest.raises(InvalidVolumeError, match=r"3 series; choose one") as error:
        read_volume(DICOMDIR_TESTS / "98892003" / "MR2")
    assert "mixed planes (axial, coronal, sagittal)" in str(error.value)
    uid = str(error.value).splitlines()[-1].rsplit(" ", 1)[-1]
    with pytest.raises(InvalidVolumeError, match="mixes slice orientations"):
        read_volume(DICOMDIR_TESTS / "98892003" / "MR2", series=uid)


@pytest.mark.parametrize("sub, message", [
    ("98892003/MR700", "mixes slice orientations"),
    ("98892001", "2 series"),
])
def test_mixed_real_folders_are_refused(sub: str, message: str) -> None:
    with pytest.raises(InvalidVolumeError, match=message):
        read_volume(DICOMDIR_TESTS / sub)


def test_a_sagittal_series_is_refused_with_its_plane(tmp_path: Path) -> None:
    _series(tmp_path, iop=(0, 1, 0, 0, 0, -1))
    with pytest.raises(InvalidVolumeError, match="sagittal"):
        read_volume(tmp_path)


def test_truncated_pixel_data_is_refused() -> None:
    with pytest.raises(InvalidVolumeError, match="truncated or damaged"):
        read_volume(get_testdata_file("MR_truncated.dcm"))


def test_a_missing_slice_is_refused_with_the_gap(tmp_path: Path) -> None:
    _series(tmp_path, positions=[0, 2.5, 5, 10, 12.5])
    with pytest.raises(InvalidVolumeError, match=r"5.00 -> 10.00 mm"):
        read_volume(tmp_path)


def test_duplicate_positions_are_refused(tmp_path: Path) -> None:
    _series(tmp_path, positions=[0, 2.5, 2.5, 5, 7.5])
    with pytest.raises(InvalidVolumeError, match="share the position 2.50"):
        read_volume(tmp_path)


def test_mixed_sizes_are_refused(tmp_path: Path) -> None:
    _series(tmp_path)
    odd = pydicom.dcmread(next(tmp_path.iterdir()))
    odd.Rows, odd.Columns = 32, 32
    odd.PixelData = np.zeros((32, 32), np.int16).tobytes()
    odd.ImagePositionPatient = [0, 0, 12.5]
    odd.SOPInstanceUID = generate_uid()
    odd.save_as(tmp_path / "odd")
    with pytest.raises(InvalidVolumeError, match="mixes image sizes"):
        read_volume(tmp_path)


def test_a_huge_rows_columns_header_is_refused_before_decoding(tmp_path: Path) -> None:
    _series(tmp_path, slices=2)
    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 60_000  # the pixel data is far shorter: never decoded
        ds.save_as(path)
    with pytest.raises(InvalidVolumeError, match="voxels, more than"):
        read_volume(tmp_path)


def test_non_mr_is_accepted_with_a_note() -> None:
    volume = read_volume(get_testdata_file("CT_small.dcm"))
    assert volume.voxels.dtype == np.float32  # rescale slope/intercept applied
    assert any("modality CT" in note for note in volume.notes)


def test_patient_data_never_reaches_messages_or_description(tmp_path: Path) -> None:
    _series(tmp_path / "a")
    _series(tmp_path / "b")
    with pytest.raises(InvalidVolumeError) as error:
        read_volume(tmp_path)
    text = str(error.value) + repr(read_volume(tmp_path / "a").description)
    assert "Doe" not in text and "Jane" not in text and "12345" not in text


# ---------------------------------------------------------------------------
# Zips: bounded and contained


def test_zip_path_traversal_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.dcm", b"x" * 10)
    with pytest.raises(InvalidVolumeError, match="outside its folder"):
        read_volume(archive)
    assert not (tmp_path.parent / "outside.dcm").exists()


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (50 * 2**20))
    with pytest.raises(InvalidVolumeError, match="zip bomb"):
        read_volume(archive)


def test_thousands_of_tiny_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(5_001):
        (folder / str(index)).write_bytes(b"")
    with pytest.raises(InvalidVolumeError, match="more than 5,000 files"):
        read_volume(folder)


def test_unpacked_files_are_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    _series(tmp_path / "series")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "series").iterdir():
            zf.write(path, path.name)
    read_volume(archive)
    assert list((tmp_path / "tmp").iterdir()) == []


# ---------------------------------------------------------------------------
# NIfTI


@pytest.mark.parametrize("name", ["anatomical.nii", "reoriented_anat_moved.nii", "standard.nii.gz"])
def test_nibabel_files_keep_their_world_coordinates(name: str) -> None:
    image = nib.load(NIBABEL_DATA / name)
    volume = read_volume(NIBABEL_DATA / name)
    data = np.asarray(image.dataobj)
    # Every source voxel lands where the source affine puts it.
    rng = np.random.default_rng(0)
    for _ in range(20):
        src = tuple(int(rng.integers(0, s)) for s in data.shape)
        world_ras = image.affine @ [*src, 1]
        k, i, j = np.rint(np.linalg.solve(volume.affine_ras, world_ras)[:3]).astype(int)
        assert volume.voxels[k, i, j] == data[src]
    assert volume.kind == "nifti"
    assert np.array_equal(volume.to_source_order(volume.voxels), data)


def test_the_same_volume_in_ras_and_lps_reads_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    display = rng.integers(0, 1000, size=(6, 8, 10)).astype(np.int16)  # (k, i, j)
    spacing = (3.0, 1.5, 1.5)
    # RAS storage (x toward R = reversed columns, y toward A = reversed rows, z up): axes (j, i, k).
    ras = np.transpose(display, (2, 1, 0))[::-1, ::-1, :]
    affine_ras = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(ras, affine_ras), tmp_path / "ras.nii.gz")
    # LPS-like storage (x toward L, y toward P): RAS affine with negative x and y steps.
    lps = np.transpose(display, (2, 1, 0))
    affine_lps_storage = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])
    affine_lps_storage[:3, 3] = [spacing[2] * 9, spacing[1] * 7, 0]
    nib.save(nib.Nifti1Image(lps, affine_lps_storage), tmp_path / "lps.nii")
    a, b = read_volume(tmp_path / "ras.nii.gz"), read_volume(tmp_path / "lps.nii")
    assert np.array_equal(a.voxels, display) and np.array_equal(b.voxels, display)
    assert a.spacing_mm == b.spacing_mm == spacing


def test_4d_needs_an_index_and_nifti2_reads() -> None:
    with pytest.raises(InvalidVolumeError, match="4D"):
        read_volume(NIBABEL_DATA / "example4d.nii.gz")
    first = read_volume(NIBABEL_DATA / "example_nifti2.nii.gz", volume_index=1)
    assert first.description["format"] == "NIfTI-2"
    with pytest.raises(InvalidVolumeError, match="outside 0..1"):
        read_volume(NIBABEL_DATA / "example4d.nii.gz", volume_index=2)


def test_a_nifti_shorter_than_its_header_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((40, 40, 20), np.int16), np.eye(4)), tmp_path / "full.nii")
    data = (tmp_path / "full.nii").read_bytes()
    (tmp_path / "short.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidVolumeError, match="less data than its header"):
        read_volume(tmp_path / "short.nii")


def test_not_a_nifti_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fake.nii.gz").write_bytes(b"hello")
    with pytest.raises(InvalidVolumeError, match="not a readable NIfTI"):
        read_volume(tmp_path / "fake.nii.gz")


# ---------------------------------------------------------------------------
# Case-day folders


def test_a_case_day_folder_reads_in_slice_order(tmp_path: Path) -> None:
    from PIL import Image

    scans = tmp_path / "case7_day3" / "scans"
    scans.mkdir(parents=True)
    rng = np.random.default_rng(2)
    planes = [rng.integers(0, 4000, size=(10, 12)).astype(np.uint16) for _ in range(4)]
    for number, plane in zip([3, 1, 4, 2], planes):
        Image.fromarray(plane).save(scans / f"slice_{number:04d}_12_10_1.50_1.63.png")
    volume = read_volume(tmp_path / "case7_day3")
    assert volume.shape == (4, 10, 12) and volume.spacing_mm == (3.0, 1.63, 1.50)
    # Slice numbers grow toward the feet: volume slice 0 (most inferior) is slice 4, the last
    # is slice 1; each slice min-max scaled to 8 bits.
    from segapp.io.readers import read_image

    assert np.array_equal(volume.voxels[0], read_image(scans / "slice_0004_12_10_1.50_1.63.png").pixels)
    assert np.array_equal(volume.voxels[3], read_image(scans / "slice_0001_12_10_1.50_1.63.png").pixels)
    assert np.array_equal(volume.slices_uint8(), volume.voxels)


def test_plane_names() -> None:
    assert plane_name([0, 0, 1]) == "axial"
    assert plane_name([1, 0, 0]) == "sagittal"
    assert plane_name([0, -1, 0]) == "coronal"
    assert plane_name([0, np.sin(np.radians(30)), np.cos(np.radians(30))]) == "oblique"


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidVolumeError, match="does not exist"):
        read_volume(tmp_path / "nothing")


def test_undecodable_pixel_data_names_the_package(monkeypatch) -> None:
    """A compressed series without its decoder: the message says what to install."""
    def no_decoder(self):
        raise RuntimeError("Unable to decode the pixel data: no plugin is available for this transfer syntax")

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(InvalidVolumeError, match=r"cannot decode \(JPEG 2000: pip install pylibjpeg pylibjpeg-openjpeg\)"):
        read_volume(get_testdata_file("MR_small_jp2klossless.dcm"))


def test_jpeg_lossless_decodes(tmp_path: Path) -> None:
    """JPEG Lossless (process 14, the archives' usual lossless format) decodes through pylibjpeg:
    pydicom's only such file is a colour secondary capture, which decodes and is then refused as
    not grayscale, once it is given the geometry of an axial slice."""
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    assert ds.pixel_array.shape == (100, 100, 3)
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [0, 0, 0], [1, 0, 0, 0, 1, 0], [1, 1]
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(tmp_path / "colour.dcm")
    with pytest.raises(InvalidVolumeError, match="not a grayscale image"):
        read_volume(tmp_path / "colour.dcm")


def _case_day_slices(scans: Path) -> list[Path]:
    from PIL import Image

    scans.mkdir(parents=True)
    rng = np.random.default_rng(3)
    paths = []
    for number in (3, 1, 2):
        path = scans / f"slice_{number:04d}_12_10_1.50_1.63.png"
        Image.fromarray(rng.integers(0, 4000, size=(10, 12)).astype(np.uint16)).save(path)
        paths.append(path)
    return paths


def test_a_zipped_case_day_folder_reads_like_the_folder(tmp_path: Path) -> None:
    """A zip of caseN_dayD/scans/ (names as the competition has them), or of the prepared names
    flat, is the volume the folder is; macOS metadata entries are ignored."""
    from segapp.io.casefolder import is_slice_zip

    paths = _case_day_slices(tmp_path / "case7_day3" / "scans")
    folder = read_volume(tmp_path / "case7_day3")
    nested, flat = tmp_path / "nested.zip", tmp_path / "flat.zip"
    with zipfile.ZipFile(nested, "w") as zf, zipfile.ZipFile(flat, "w") as zf_flat:
        for path in paths:
            zf.write(path, f"case7_day3/scans/{path.name}")
            zf.writestr(f"__MACOSX/case7_day3/scans/._{path.name}", b"\x00\x05\x16\x07")
            zf_flat.write(path, f"case7_day3_{path.name}")
    for archive in (nested, flat):
        assert is_slice_zip(archive)
        volume = read_volume(archive)
        assert volume.kind == "png" and volume.spacing_mm == folder.spacing_mm
        assert np.array_equal(volume.voxels, folder.voxels)


def test_a_zip_of_other_pngs_is_refused_with_the_naming_rule(tmp_path: Path) -> None:
    from PIL import Image

    archive = tmp_path / "pngs.zip"
    Image.fromarray(np.arange(120, dtype=np.uint8).reshape(10, 12)).save(tmp_path / "scan.png")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "scan.png", "scan.png")
    with pytest.raises(InvalidVolumeError, match="competition name"):
        read_volume(archive)


def test_zip_entries_keep_only_competition_slice_names(tmp_path: Path) -> None:
    """The unzipper keeps a competition slice's name (with case and day from its folder) and gives
    every other entry a neutral name; a slice name cannot carry a path out of the folder."""
    from segapp.io.dicom import unpacked

    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("case2_day4/scans/slice_0005_12_10_1.50_1.50.png", b"png")
        zf.writestr("Doe_Jane/IM_0001.dcm", b"dicom")
        zf.writestr("notes/slice_0001_12_10_1.50_1.50.png.exe", b"x")
    with unpacked(archive) as paths:
        names = sorted(p.name for p in paths)
        inside = Path(os.path.commonpath(paths)).name.startswith("segapp-zip-")  # the temporary folder
    assert names == ["000001", "000002", "case2_day4_slice_0005_12_10_1.50_1.50.png"] and inside
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../case1_day1_slice_0001_12_10_1.50_1.50.png", b"png")
    with pytest.raises(InvalidVolumeError, match="outside its folder"):
        read_volume(evil)
