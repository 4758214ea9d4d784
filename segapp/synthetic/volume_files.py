"""Phantom volumes written as files others write: DICOM MR series and NIfTI image + label pairs.

The DICOM series carry the modules a scanner's export has (patient with a made-up name, id and
birth date; study; series; frame of reference; equipment; image plane; MR image; SOP common) and
pass the DICOM validator. On request they are stored in any of the eight in-plane orientations and
either slice order, and the NIfTI files in any axis order, so tests can prove that every geometry
reads back to the same organs.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segapp.io.files import atomic_path
from segapp.io.nifti import write_label_nifti
from segapp.io.readers import read_volume
from segapp.io.volume import DISPLAY_AXCODES, LPS_TO_RAS
from segapp.synthetic.anatomy import SLICES_PER_SCAN
from segapp.synthetic.volume import PhantomVolume, phantom_volume

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# In-plane storage orientations: (transpose, flip rows, flip columns) of the display slice.
ORIENTATIONS: dict[str, tuple[bool, bool, bool]] = {
    "standard": (False, False, False),  # IOP (1,0,0, 0,1,0): the display convention itself
    "flip-rows": (False, True, False),
    "flip-columns": (False, False, True),
    "rotated-180": (False, True, True),
    "transposed": (True, False, False),
    "transposed-flip-rows": (True, True, False),
    "transposed-flip-columns": (True, False, True),
    "transposed-rotated-180": (True, True, True),
}



@dataclass(frozen=True)
class _Sequence:
    """The acquisition a contrast family stands for, as the MR headers state it."""

    description: str
    scanning: str  # ScanningSequence: GR gradient echo, SE spin echo
    variant: str  # SequenceVariant: SS steady state, SK segmented k-space, SP spoiled
    acquisition: str  # MRAcquisitionType
    repetition_ms: str
    echo_ms: str
    echo_train: int
    flip_deg: str


# bSSFP (TrueFISP), single-shot fast spin echo (HASTE) and spoiled 3D gradient echo (VIBE):
# the three families of segapp.synthetic.STYLES, with typical 1.5 T parameters.
SEQUENCES: dict[str, _Sequence] = {
    "bssfp": _Sequence("T2 TRUFI", "GR", "SS", "2D", "4.2", "2.1", 1, "60"),
    "t2": _Sequence("T2 HASTE", "SE", "SK", "2D", "1000", "90", 128, "150"),
    "t1": _Sequence("T1 VIBE", "GR", "SP", "3D", "4.0", "1.3", 1, "10"),
}

def _stored(plane: np.ndarray, how: tuple[bool, bool, bool]) -> np.ndarray:
    transpose, flip_rows, flip_cols = how
    if transpose:
        plane = plane.T
    if flip_rows:
        plane = plane[::-1]
    if flip_cols:
        plane = plane[:, ::-1]
    return np.ascontiguousarray(plane)


def _plane_geometry(shape: tuple[int, int], spacing: tuple[float, float], how: tuple[bool, bool, bool],
                    z_mm: float) -> tuple[list[float], list[float], list[float]]:
    """IOP, IPP and PixelSpacing of a display slice stored with ``how``.

    Display voxel (i, j) lies at LPS (j * col_mm, i * row_mm, z). The stored image's first pixel
    and its row / column directions follow from the transpose and flips.
    """
    rows, cols = shape
    row_mm, col_mm = spacing
    # Directions (in LPS) and steps of the stored image's column index and row index.
    right, down = np.array([1.0, 0, 0]) * col_mm, np.array([0, 1.0, 0]) * row_mm  # display j, i
    extent_j, extent_i = (cols - 1) * right, (rows - 1) * down
    transpose, flip_rows, flip_cols = how
    col_dir, row_dir, col_extent, row_extent = (down, right, extent_i, extent_j) if transpose else (right, down, extent_j, extent_i)
    origin = np.array([0.0, 0.0, z_mm])
    if flip_rows:
        origin, row_dir = origin + row_extent, -row_dir
    if flip_cols:
        origin, col_dir = origin + col_extent, -col_dir
    col_step, row_step = float(np.linalg.norm(col_dir)), float(np.linalg.norm(row_dir))
    iop = [*(col_dir / col_step).tolist(), *(row_dir / row_step).tolist()]
    return iop, origin.tolist(), [row_step, col_step]


def write_dicom_series(volume: PhantomVolume, folder: str | Path, *, orientation: str = "standard",
                       reverse: bool = False, seed: int = 0) -> list[Path]:
    """Write ``volume`` as an MR series, one file per slice (no file extension, as many exports).

    Args:
        volume: The phantom volume.
        folder: Destination folder (created).
        orientation: One of :data:`ORIENTATIONS`: how each slice is stored in-plane.
        reverse: Write (and number) the slices head first instead of feet first.
        seed: Makes the UIDs, the made-up patient and the dates deterministic.

    Returns:
        The written files, in instance order.
    """
    # pydicom (about 0.4 s) loads only when DICOM is written: `segapp.phantom --help` stays fast.
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation {orientation!r} is not one of {sorted(ORIENTATIONS)}")
    how = ORIENTATIONS[orientation]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"phantom-{seed}-{volume.case}-{volume.day}-{orientation}-{int(reverse)}"
    uid = lambda name: generate_uid(entropy_srcs=[prefix, name])  # noqa: E731 - deterministic UIDs
    rng = np.random.default_rng([seed, volume.case, volume.day, 0xD1C0])
    birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 60 * 365)))
    study_date = datetime.date(2024, 1, 1) + datetime.timedelta(days=volume.day)
    order = list(range(volume.image16.shape[0]))
    if reverse:
        order.reverse()
    paths = []
    for instance, k in enumerate(order, start=1):
        pixels = _stored(volume.image16[k], how)
        iop, ipp, spacing = _plane_geometry(volume.image16.shape[1:], volume.spacing_mm[1:], how,
                                            k * volume.spacing_mm[0])
        ds = Dataset()
        # Patient and study: made up, but shaped like a real export (the tests check none leaks).
        ds.PatientName = f"Phantom^Case{volume.case}"
        ds.PatientID = f"PH{volume.case:05d}"
        ds.PatientBirthDate = birth.strftime("%Y%m%d")
        ds.PatientSex = "O"
        ds.StudyInstanceUID = uid("study")
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
        ds.StudyID = f"{volume.day}"
        ds.AccessionNumber = f"A{volume.case:05d}{volume.day:02d}"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Phantom abdomen MRI"
        # Series and equipment.
        ds.Modality = "MR"
        ds.SeriesInstanceUID = uid("series")
        ds.SeriesNumber = 3
        sequence = SEQUENCES[volume.style]
        ds.SeriesDescription = f"{sequence.description} AX (phantom)"
        ds.BodyPartExamined = "ABDOMEN"
        ds.PatientPosition = "HFS"
        ds.Manufacturer = "segapp phantom"
        ds.FrameOfReferenceUID = uid("frame")
        ds.PositionReferenceIndicator = ""
        # Image.
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = uid(f"image-{instance}")
        ds.InstanceNumber = instance
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.PixelSpacing = [f"{v:.4f}" for v in spacing]
        ds.SliceThickness = f"{volume.spacing_mm[0]:.2f}"
        ds.SpacingBetweenSlices = f"{volume.spacing_mm[0]:.2f}"
        ds.SliceLocation = f"{ipp[2]:.4f}"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = sequence.scanning, sequence.variant, ""
        ds.MRAcquisitionType = sequence.acquisition
        ds.RepetitionTime, ds.EchoTime = sequence.repetition_ms, sequence.echo_ms
        ds.EchoTrainLength = sequence.echo_train
        ds.MagneticFieldStrength = "1.5"
        ds.ImagedNucleus = "1H"
        ds.FlipAngle = sequence.flip_deg
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"IM{instance:05d}"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_nifti_pair(volume: PhantomVolume, folder: str | Path, *, axcodes: str = "LPS",
                     name: str = "phantom") -> tuple[Path, Path]:
    """Write ``volume`` as ``NAME_image.nii.gz`` (uint16) and ``NAME_labels.nii.gz`` (uint8).

    Args:
        volume: The phantom volume.
        folder: Destination folder (created).
        axcodes: The stored axis order as nibabel axis codes of the three voxel axes (e.g. "LPS",
            "RAS", "LAS"; the third must be S or I: NIfTI slices are along the third axis).
        name: File name stem.
    """
    # nibabel loads only when NIfTI is written (as pydicom in write_dicom_series).
    import nibabel as nib
    import nibabel.orientations as ornt

    if len(axcodes) != 3 or axcodes[2] not in "SI":
        raise ValueError(f"axcodes {axcodes!r}: three axis codes, the third S or I")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine_lps = np.zeros((4, 4))
    affine_lps[2, 0], affine_lps[1, 1], affine_lps[0, 2], affine_lps[3, 3] = (*volume.spacing_mm, 1.0)
    display = ornt.axcodes2ornt(DISPLAY_AXCODES)
    target = ornt.axcodes2ornt(tuple(axcodes))
    transform = ornt.ornt_transform(display, target)
    shape = volume.labels.shape
    affine_ras = LPS_TO_RAS @ affine_lps @ ornt.inv_ornt_aff(transform, shape)
    paths = []
    for suffix, data in (("image", volume.image16), ("labels", volume.labels)):
        stored = ornt.apply_orientation(data, transform)
        image = nib.Nifti1Image(np.ascontiguousarray(stored), affine_ras)
        image.set_qform(affine_ras, code=1)
        image.set_sform(affine_ras, code=1)
        image.header.set_xyzt_units("mm")
        path = folder / f"{name}_{suffix}.nii.gz"
        with atomic_path(path, suffix=".nii.gz") as temp:  # nibabel picks gzip by the ending
            nib.save(image, str(temp))
        paths.append(path)
    return paths[0], paths[1]


def generate_volumes(out: str | Path, *, cases: int, seed: int, file_format: str, slices: int = 144,
                     orientation: str = "standard", reverse: bool = False, style: str = "mixed",
                     anatomy: str = "standard") -> list[Path]:
    """Write ``cases`` phantom patient-days as volumes.

    Args:
        out: Output folder (created).
        cases: How many patient-days (case 1..cases, day 0).
        seed: The data set's seed.
        file_format: ``nifti``: ``OUT/caseN_day0_image.nii.gz`` + ``_labels.nii.gz`` (the pairs
            ``segapp.evaluate`` reads); ``dicom``: ``OUT/caseN_day0/`` MR series plus
            ``OUT/caseN_day0_labels.nii.gz`` on its grid.
        slices: Consecutive slices per volume, centred on the scan (the organs' region).
        orientation: DICOM in-plane storage (:data:`ORIENTATIONS`), or ``mixed`` to cycle
            through them case by case.
        reverse: DICOM slices written head first.
        style: Contrast family (:data:`segapp.synthetic.STYLES`) or ``"mixed"``.
        anatomy: ``"standard"`` or ``"variant"``.

    Returns:
        The written series folders or image files.
    """
    if file_format not in ("nifti", "dicom"):
        raise ValueError(f"file_format must be nifti or dicom, got {file_format!r}")
    if orientation != "mixed" and orientation not in ORIENTATIONS:
        raise ValueError(f"orientation {orientation!r} is not one of {sorted(ORIENTATIONS)} or mixed")
    slices = max(1, min(slices, SLICES_PER_SCAN))
    first = 1 + (SLICES_PER_SCAN - slices) // 2
    out = Path(out)
    written = []
    for case in range(1, cases + 1):
        volume = phantom_volume(seed, case, 0, first=first, count=slices, style=style, anatomy=anatomy)
        name = f"case{case}_day0"
        if file_format == "nifti":
            written.append(write_nifti_pair(volume, out, name=name)[0])
            continue
        how = sorted(ORIENTATIONS)[(case - 1) % len(ORIENTATIONS)] if orientation == "mixed" else orientation
        write_dicom_series(volume, out / name, orientation=how, reverse=reverse, seed=seed)
        write_label_nifti(volume.labels, read_volume(out / name), out / f"{name}_labels.nii.gz")
        written.append(out / name)
    return written


def write_enhanced_mr(volume: PhantomVolume, path: str | Path, *, orientation: str = "standard",
                      frame_order: list[int] | None = None, seed: int = 0) -> Path:
    """Write ``volume`` as one enhanced (multi-frame) MR file: orientation and pixel spacing in the
    shared functional groups, each frame's position in its own.

    Args:
        volume: The phantom volume.
        path: Destination file.
        orientation: One of :data:`ORIENTATIONS`.
        frame_order: Display slice index of each stored frame (default feet first); readers must
            sort by position, not by frame number.
        seed: Makes the UIDs deterministic.
    """
    # pydicom only when DICOM is written (see write_dicom_series).
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    how = ORIENTATIONS[orientation]
    order = list(range(volume.image16.shape[0])) if frame_order is None else list(frame_order)
    prefix = f"enhanced-{seed}-{volume.case}-{volume.day}-{orientation}"
    ds = Dataset()
    ds.PatientName, ds.PatientID = f"Phantom^Case{volume.case}", f"PH{volume.case:05d}"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[prefix, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[prefix, "series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[prefix, "frame"])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[prefix, "image"])
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "MR", "T2 AX enhanced (phantom)", 4, 1
    iop = None
    per_frame = Sequence()
    planes = []
    for k in order:
        plane = _stored(volume.image16[k], how)
        iop, ipp, spacing = _plane_geometry(volume.image16.shape[1:], volume.spacing_mm[1:], how,
                                            k * volume.spacing_mm[0])
        position = Dataset()
        position.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        group = Dataset()
        group.PlanePositionSequence = Sequence([position])
        per_frame.append(group)
        planes.append(plane)
    orientation_item = Dataset()
    orientation_item.ImageOrientationPatient = [f"{v:.6f}" for v in iop or []]
    measures = Dataset()
    measures.PixelSpacing = [f"{v:.4f}" for v in spacing]
    measures.SliceThickness = f"{volume.spacing_mm[0]:.2f}"
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([orientation_item])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.NumberOfFrames = len(planes)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(planes[0].shape[0]), int(planes[0].shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.stack(planes).astype("<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(destination, ds, enforce_file_format=True)
    return destination
