"""Our NIfTI, DICOM-SEG and RTSTRUCT opened with the readers our users' tools are built on.

- dcmqi's ``segimage2itkimage`` (3D Slicer's DICOM-SEG reader): labels, names, codes, colours;
- dcmjs (OHIF's DICOM-SEG loader, in node): segments, colours and the label map;
- rt-utils (TotalSegmentator's RTSTRUCT library): every ROI readable, masks against ours;
- SimpleITK (ITK: ITK-SNAP, 3D Slicer): our NIfTI lies exactly on the DICOM series it came from.

On small phantom series (8 slices of 117 x 117 or 117 x 100 px), one with every organ, some with organs absent
from the whole series. Each reader is a test dependency (requirements-dev.txt; dcmjs:
tests/io/dcmjs/package.json, installed by .ci/run); without it its tests skip and say what to install. What these readers return is written up in
docs/viewers.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage
from test_dicom_out import ALGORITHM, _validator_lines

from segapp.io.dicom_seg import read_dicom_seg_labels, write_dicom_seg
from segapp.io.label_table import write_label_tables
from segapp.io.nifti import write_label_nifti
from segapp.io.readers import read_volume
from segapp.io.rtstruct import read_rtstruct_labels, write_rtstruct
from segapp.io.volume import ScanVolume
from segapp.labels import FOREGROUND, LABELS
from segapp.synthetic.volume import PhantomVolume, phantom_volume
from segapp.synthetic.volume_files import ORIENTATIONS, write_dicom_series

# Organs left out of the labels: none; only stomach found (the case); a gap in the middle.
ABSENT = {"all-organs": (), "stomach-only": (2, 3), "no-small-bowel": (2,)}


def _small_phantom(columns: slice) -> PhantomVolume:
    """8 slices of a phantom with all three organs (small bowel on 3 of them), every other pixel
    (3 mm voxels) of rows 0..233 and of ``columns``."""
    full = phantom_volume(0, 1, 1, first=50, count=8, size=(234, 234))
    crop = (slice(None), slice(None, None, 2), columns)
    return dataclasses.replace(full, image16=full.image16[crop].copy(), labels=full.labels[crop].copy(),
                               spacing_mm=(3.0, 3.0, 3.0))


@pytest.fixture(scope="module")
def phantom() -> PhantomVolume:
    """117 x 100 px: not square, so a swapped row and column cannot pass."""
    return _small_phantom(slice(16, 216, 2))


@pytest.fixture(scope="module")
def square_phantom() -> PhantomVolume:
    """117 x 117 px: rt-utils 1.2.7 reads square images only (docs/viewers.md)."""
    return _small_phantom(slice(None, None, 2))


def _scan(phantom: PhantomVolume, folder: Path, absent: tuple[int, ...] = (), *, orientation: str = "flip-rows",
          reverse: bool = True) -> tuple[ScanVolume, np.ndarray]:
    """The phantom written as a DICOM series (a stored orientation, head first by default) and read
    back; its labels without the ``absent`` organs."""
    write_dicom_series(phantom, folder, orientation=orientation, reverse=reverse)
    volume = read_volume(folder)
    assert np.array_equal(volume.voxels, phantom.image16)
    labels = phantom.labels.copy()
    labels[np.isin(labels, absent)] = 0
    return volume, labels


@pytest.fixture(scope="module", params=sorted(ABSENT))
def exported(request, square_phantom, tmp_path_factory):
    """A series, its labels and our three exports of them (NIfTI, DICOM-SEG, RTSTRUCT)."""
    folder = tmp_path_factory.mktemp(request.param)
    volume, labels = _scan(square_phantom, folder / "series", ABSENT[request.param])
    files = {
        "nifti": write_label_nifti(labels, volume, folder / "segmentation.nii.gz"),
        "seg": write_dicom_seg(labels, volume, folder / "seg.dcm", algorithm=ALGORITHM),
        "rtstruct": write_rtstruct(labels, volume, folder / "rtstruct.dcm", algorithm=ALGORITHM),
    }
    return volume, labels, files, folder


def _reader(module: str, package: str):
    """Import a reader's module, or skip saying what to install (rt-utils also needs libGL for OpenCV)."""
    return pytest.importorskip(module, reason=f"{package} is not installed or does not import "
                                              f"(pip install {package}: requirements-dev.txt)")


def _resample_like(image: nib.Nifti1Image, reference: nib.Nifti1Image) -> np.ndarray:
    """``image``'s values at ``reference``'s voxel centres (both grids must share their voxel centres)."""
    index = np.indices(reference.shape[:3]).reshape(3, -1)
    world = reference.affine @ np.vstack([index, np.ones(index.shape[1])])
    theirs = (np.linalg.inv(image.affine) @ world)[:3]
    assert np.allclose(theirs, np.round(theirs), atol=1e-3), "the grids' voxel centres differ"
    theirs = np.round(theirs).astype(int)
    inside = np.all((theirs >= 0) & (theirs < np.array(image.shape[:3])[:, None]), axis=0)
    assert inside.all(), "part of the reference grid lies outside the image"
    data = np.asarray(image.dataobj)
    return data[tuple(theirs)].reshape(reference.shape[:3])


# ---------------------------------------------------------------------------
# dcmqi: segimage2itkimage, 3D Slicer's DICOM-SEG reader


def _dcmqi(seg: Path, out: Path) -> str:
    if shutil.which("segimage2itkimage") is None:
        pytest.skip("dcmqi is not installed (pip install dcmqi: requirements-dev.txt)")
    out.mkdir()
    result = subprocess.run(["segimage2itkimage", "--inputDICOM", str(seg), "--outputDirectory", str(out),
                             "-t", "nii"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_dcmqi_reads_our_seg(exported, tmp_path: Path) -> None:
    _check_dcmqi(exported[2]["seg"], exported[2]["nifti"], tmp_path)


def test_dcmqi_reads_our_seg_of_a_transposed_non_square_series(phantom, tmp_path: Path) -> None:
    volume, labels = _scan(phantom, tmp_path / "series", orientation="transposed-flip-columns", reverse=False)
    seg = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", algorithm=ALGORITHM)
    _check_dcmqi(seg, write_label_nifti(labels, volume, tmp_path / "segmentation.nii.gz"), tmp_path)


def _check_dcmqi(seg: Path, nifti: Path, tmp_path: Path) -> None:
    """dcmqi's reading of ``seg``: our names, codes and colours, and the voxels of ``nifti``."""
    log = _dcmqi(seg, tmp_path / "dcmqi")
    assert "Failed to get CIELab" not in log
    ours = nib.load(nifti)
    meta = json.loads((tmp_path / "dcmqi" / "meta.json").read_text())
    segments = [entry[0] for entry in meta["segmentAttributes"]]
    # Every segment, absent organs included (empty), with our names, codes and colours.
    assert [s["labelID"] for s in segments] == [label.id for label in FOREGROUND]
    assert [s["SegmentLabel"] for s in segments] == [label.display for label in FOREGROUND]
    assert [s["SegmentedPropertyTypeCodeSequence"]["CodeValue"] for s in segments] == [label.snomed[0] for label in FOREGROUND]
    assert all(s["SegmentedPropertyCategoryCodeSequence"]["CodeValue"] == "91723000" for s in segments)
    colours = [tuple(s["recommendedDisplayRGBValue"]) for s in segments]
    assert len(set(colours)) == 3
    for colour, label in zip(colours, FOREGROUND):  # through CIELab and back: within rounding
        assert np.abs(np.subtract(colour, label.color)).max() <= 1
    # Each segment's voxels are exactly ours, in physical space.
    for label in FOREGROUND:
        theirs = _resample_like(nib.load(tmp_path / "dcmqi" / f"{label.id}.nii.gz"), ours)
        assert np.array_equal(theirs > 0, np.asarray(ours.dataobj) == label.id), label.name


# ---------------------------------------------------------------------------
# dcmjs: the library OHIF loads DICOM-SEG with (node; npm ci --prefix tests/io/dcmjs)

DCMJS = Path(__file__).parent / "dcmjs"


def test_dcmjs_reads_our_seg(exported) -> None:
    if shutil.which("node") is None or not (DCMJS / "node_modules" / "dcmjs").is_dir():
        pytest.skip("dcmjs is not installed (node and npm: npm ci --prefix tests/io/dcmjs)")
    volume, labels, files, folder = exported
    sources = sorted((folder / "series").iterdir())
    result = subprocess.run(["node", str(DCMJS / "read_seg.js"), str(files["seg"]), *map(str, sources)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    segments = read["segments"]
    assert [(s["number"], s["label"], s["code"]) for s in segments] == [
        (label.id, label.display, label.snomed[0]) for label in FOREGROUND]
    # dcmjs turns CIELab into RGB with its own approximation: distinct, near ours (docs/viewers.md).
    assert len({tuple(s["rgb"]) for s in segments}) == 3
    for segment, label in zip(segments, FOREGROUND):
        assert np.abs(np.subtract(segment["rgb"], label.color)).max() <= 25, (segment, label.color)
    # Its label map, image by image, is ours.
    by_uid = {str(h.SOPInstanceUID): k for k, h in enumerate(volume.headers)}
    source = np.zeros(volume.source_shape, dtype=np.uint8)
    for path, frame in zip(sources, read["slices"]):
        plane = source[by_uid[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)]].reshape(-1)
        for value, indices in frame["pixels"].items():
            plane[indices] = int(value)
    assert np.array_equal(volume.from_source_order(source), labels)


# ---------------------------------------------------------------------------
# rt-utils: RTSTRUCT to masks, as TotalSegmentator's users read it


def _rt_utils_masks(rtstruct: Path, volume: ScanVolume, series: Path) -> dict[str, np.ndarray]:
    """Each ROI's rt-utils mask, as (Z, H, W) bool in our display order (matched by image UID)."""
    rt_utils = _reader("rt_utils", "rt-utils")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rt-utils 1.2.7 uses pydicom names deprecated in pydicom 3
        rt = rt_utils.RTStructBuilder.create_from(dicom_series_path=str(series), rt_struct_path=str(rtstruct))
        by_uid = {str(h.SOPInstanceUID): k for k, h in enumerate(volume.headers)}
        order = [by_uid[str(ds.SOPInstanceUID)] for ds in rt.series_data]
        masks = {}
        for name in rt.get_roi_names():
            stacked = rt.get_roi_mask_by_name(name)  # [row, column, slice], slices in rt-utils' order
            source = np.zeros(volume.source_shape, dtype=bool)
            source[order] = np.moveaxis(stacked, 2, 0)
            masks[name] = volume.from_source_order(source)
    return masks


# One pixel step within a slice (4-neighbourhood): the bound of rt-utils' rasterisation.
EDGE = np.zeros((3, 3, 3), dtype=bool)
EDGE[1] = ndimage.generate_binary_structure(2, 1)


def test_rt_utils_reads_every_roi(exported) -> None:
    volume, labels, files, folder = exported
    masks = _rt_utils_masks(files["rtstruct"], volume, folder / "series")
    present = [label for label in FOREGROUND if (labels == label.id).any()]
    assert list(masks) == [label.display for label in present]  # absent organs have no ROI
    for label in present:
        ours, theirs = labels == label.id, masks[label.display]
        # rt-utils fills the polygon with OpenCV on rounded vertices: our contours run along pixel
        # edges, so it takes every pixel of ours plus part of the one-pixel ring around it.
        assert not (ours & ~theirs).any(), label.name
        assert not (theirs & ~ndimage.binary_dilation(ours, EDGE)).any(), label.name
        dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
        assert dice > 0.85, (label.name, dice)
    rt = pydicom.dcmread(files["rtstruct"])
    assert [roi.ROINumber for roi in rt.StructureSetROISequence] == [label.id for label in present]
    assert [list(roi.ROIDisplayColor) for roi in rt.ROIContourSequence] == [list(label.color) for label in present]
    absent = [label.display for label in FOREGROUND if label not in present]
    assert rt.get("StructureSetDescription", "") == (f"Not found in this series: {', '.join(absent)}" if absent else "")


def test_exports_read_back_and_validate(exported) -> None:
    """Absent organs included: an empty SEG segment and a missing ROI are what highdicom, our
    reader and the DICOM validator accept."""
    volume, labels, files, _ = exported
    assert np.array_equal(read_dicom_seg_labels(files["seg"], volume), labels)
    assert np.array_equal(read_rtstruct_labels(files["rtstruct"], volume), labels)
    assert [line for line in _validator_lines(files["seg"]) if line.startswith("Error")] == []
    assert _validator_lines(files["rtstruct"]) == []


def test_rtstruct_with_no_organ_found_stays_valid(square_phantom, tmp_path: Path) -> None:
    """A structure set needs an ROI: with nothing found the three ROIs come without contours, which
    the validator accepts and rt-utils lists (its masks of them raise: documented)."""
    volume, labels = _scan(square_phantom, tmp_path / "series", (1, 2, 3))
    path = write_rtstruct(labels, volume, tmp_path / "rtstruct.dcm", algorithm=ALGORITHM)
    rt = pydicom.dcmread(path)
    assert [roi.ROIName for roi in rt.StructureSetROISequence] == [label.display for label in FOREGROUND]
    assert not any("ContourSequence" in roi for roi in rt.ROIContourSequence)
    assert _validator_lines(path) == []
    rt_utils = _reader("rt_utils", "rt-utils")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = rt_utils.RTStructBuilder.create_from(dicom_series_path=str(tmp_path / "series"), rt_struct_path=str(path))
        assert reader.get_roi_names() == [label.display for label in FOREGROUND]


# ---------------------------------------------------------------------------
# SimpleITK: the NIfTI from a DICOM series lies on the series


@pytest.mark.parametrize("reverse", [False, True], ids=["feet-first", "head-first"])
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_simpleitk_nifti_lies_on_the_series(phantom, tmp_path: Path, orientation: str, reverse: bool) -> None:
    sitk = _reader("SimpleITK", "SimpleITK")
    volume, labels = _scan(phantom, tmp_path / "series", orientation=orientation, reverse=reverse)
    nifti = write_label_nifti(labels, volume, tmp_path / "segmentation.nii.gz")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    series = reader.Execute()
    # Our labels resampled onto the series' own grid (nearest neighbour; 255 outside it).
    resampled = sitk.Resample(sitk.ReadImage(str(nifti)), series, sitk.Transform(), sitk.sitkNearestNeighbor, 255)
    # Where SimpleITK puts each voxel of the series (LPS mm), and which phantom voxel lies there:
    # the phantom's display voxel (k, i, j) was written at (j dx, i dy, k dz).
    size = np.array(series.GetSize())
    index = np.indices(size[::-1]).reshape(3, -1)[::-1]  # (x, y, z) of each voxel, in array order
    direction = np.array(series.GetDirection()).reshape(3, 3)
    points = np.array(series.GetOrigin())[:, None] + direction @ (np.array(series.GetSpacing())[:, None] * index)
    kij = np.round(points[::-1] / np.array(phantom.spacing_mm)[:, None]).astype(int)
    expected_image = phantom.image16[tuple(kij)].reshape(size[::-1])
    expected_labels = labels[tuple(kij)].reshape(size[::-1])
    assert np.array_equal(sitk.GetArrayFromImage(series), expected_image)  # SimpleITK reads the series as written
    assert np.array_equal(sitk.GetArrayFromImage(resampled), expected_labels)


@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "RPI"])
def test_simpleitk_nifti_in_nifti_out_same_grid(tmp_path: Path, phantom, axcodes: str) -> None:
    sitk = _reader("SimpleITK", "SimpleITK")
    from segapp.synthetic.volume_files import write_nifti_pair

    image_path, _ = write_nifti_pair(phantom, tmp_path, axcodes=axcodes)
    volume = read_volume(image_path)
    out = write_label_nifti(phantom.labels, volume, tmp_path / "segmentation.nii.gz")
    source, written = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(out))
    assert written.GetSize() == source.GetSize()
    assert np.allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    assert np.allclose(written.GetSpacing(), source.GetSpacing(), atol=1e-5)
    assert np.allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)


# ---------------------------------------------------------------------------
# One label table: the colours, names and codes every output carries


def test_every_output_takes_colours_names_and_codes_from_the_label_table(exported, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    files = exported[2]
    table = {label.id: label for label in FOREGROUND}
    seg = pydicom.dcmread(files["seg"])
    for segment in seg.SegmentSequence:
        label = table[segment.SegmentNumber]
        lab = hd.color.CIELabColor.from_dicom_value(tuple(segment.RecommendedDisplayCIELabValue))
        assert lab.to_rgb() == label.color and segment.SegmentLabel == label.display
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == label.snomed[0]
    rt = pydicom.dcmread(files["rtstruct"])
    for roi, contour, observation in zip(rt.StructureSetROISequence, rt.ROIContourSequence, rt.RTROIObservationsSequence):
        label = table[roi.ROINumber]
        assert (roi.ROIName, tuple(contour.ROIDisplayColor)) == (label.display, label.color)
        assert observation.RTROIIdentificationCodeSequence[0].CodeValue == label.snomed[0]
    write_label_tables(tmp_path)
    json_rows = json.loads((tmp_path / "labels.json").read_text())["labels"]
    assert [(row["id"], row["name"], tuple(row["color"])) for row in json_rows] == [(label.id, label.name, label.color) for label in LABELS]
    itksnap = [line.split() for line in (tmp_path / "labels.itksnap.txt").read_text().splitlines() if not line.startswith("#")]
    assert [(int(r[0]), tuple(map(int, r[1:4]))) for r in itksnap] == [(label.id, label.color) for label in LABELS]
    slicer = [line.split() for line in (tmp_path / "labels.ctbl").read_text().splitlines() if not line.startswith("#")]
    assert [(int(r[0]), r[1], tuple(map(int, r[2:5]))) for r in slicer] == [(label.id, label.name, label.color) for label in LABELS]
