"""Labelled data read for scoring: a split folder's slices with their true masks.

A split (``DIR/train``, ``DIR/valid``) is one of two layouts:

* **Slices** (the notebook's layout): ``SPLIT/{images,masks}/NAME.png``; an image and its mask
  share ``NAME``. Images are read with :func:`segapp.read_image` (the inference path's reader),
  masks are single-channel PNGs of class ids 0..3. A 2.5D model finds a slice's neighbours by
  the competition names (``caseN_dayD_slice_SSSS``).
* **Volumes**: labelled scans in ``SPLIT/`` as :mod:`segapp.io.labelled` finds them (NIfTI
  image + label pairs, DICOM series folders + label NIfTIs, nnU-Net's imagesTr/labelsTr).
  Every slice of every volume is used, each fed as the volume mode feeds it
  (:meth:`segapp.io.volume.ScanVolume.slices_uint8`), and a 2.5D model's neighbours are found by
  index in the volume.

:func:`load_valid_set` keeps the slices at their own size, so evaluation and training-time
validation score them exactly as the inference service would; :mod:`segapp.training.data` builds
the training set on the same readers (:func:`split_files`, :func:`labelled_slices`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from segapp.io.image import IMAGE_SUFFIXES, InvalidImageError, ScanImage
from segapp.io.labelled import LAYOUTS, LabelledVolumeFiles, find_labelled_volumes, read_labelled_volume
from segapp.io.readers import read_image
from segapp.io.volume import InvalidVolumeError
from segapp.labels import NUM_LABELS
from segapp.model.context import SlicePlace, slice_places, volume_places


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the file and the fix."""

@dataclass
class Pair:
    """An image file and its mask file."""

    image: Path
    mask: Path

def find_pairs(split_dir: str | Path) -> list[Pair]:
    """Image/mask pairs of one split folder (``.../train`` or ``.../valid``), sorted by name.

    Raises:
        DataError: folder or sub-folder missing, no images, an image without a mask.
    """
    split = Path(split_dir)
    images_dir, masks_dir = split / "images", split / "masks"
    for folder in (split, images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(
                f"Missing folder {folder}. Expected the layout {split}/images/*.png and "
                f"{split}/masks/*.png (see docs/training.md, 'Data layout'), which "
                "`python -m segapp.prepare` makes from the competition download, or labelled "
                f"volumes in {split}/ ({LAYOUTS})."
            )
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"No images in {images_dir} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} image(s) in {images_dir} have no mask of the same name in {masks_dir}: {shown}"
        )
    return [Pair(p, masks[p.stem]) for p in images]

def read_mask(path: Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A class-id mask PNG as (H, W) uint8, checked.

    Raises:
        DataError: unreadable, not single-channel, values outside 0..3, or size differing
            from ``expected_size`` (H, W).
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataError(
                    f"Mask {path.name} has mode {img.mode}; masks must be single-channel PNGs of class ids."
                )
            mask = np.asarray(img)
    except (OSError, SyntaxError) as exc:
        raise DataError(f"Mask {path.name} cannot be read: {exc}") from None
    if mask.max(initial=0) >= NUM_LABELS or mask.min(initial=0) < 0:
        values = sorted(set(np.unique(mask).tolist()) - set(range(NUM_LABELS)))
        raise DataError(
            f"Mask {path.name} has values {values[:8]} outside the class ids 0..{NUM_LABELS - 1} "
            "(0 background, 1 stomach, 2 small bowel, 3 large bowel). A mask saved as 0/255 "
            "or as colours must be converted to class ids."
        )
    if expected_size is not None and mask.shape != tuple(expected_size):
        raise DataError(
            f"Mask {path.name} is {mask.shape[1]} x {mask.shape[0]} pixels but its image is "
            f"{expected_size[1]} x {expected_size[0]}; image and mask must have the same size."
        )
    return mask.astype(np.uint8)

def _read_pair(pair: Pair) -> tuple[ScanImage, np.ndarray]:
    try:
        scan = read_image(pair.image)
    except InvalidImageError as exc:
        raise DataError(f"Image {pair.image.name}: {exc}") from None
    return scan, read_mask(pair.mask, scan.size)

@dataclass
class ValidSet:
    """Validation slices at their own size: what the inference service would receive.

    Attributes:
        scans: The slices as the service receives them.
        masks: (H, W) uint8 class ids, one per scan.
        names: File names (slices layout), or ``NAME:k`` for slice k of volume NAME.
        places: Where each slice lies in its scan, for a 2.5D model's neighbours
            (:data:`segapp.model.context.SlicePlace`; None where a name gives no place).
    """

    scans: list[ScanImage]
    masks: list[np.ndarray]
    names: list[str]
    places: list[SlicePlace | None]

    def __len__(self) -> int:
        return len(self.scans)

def is_volume_split(split_dir: str | Path) -> bool:
    """True when a split holds labelled volumes (:mod:`segapp.io.labelled`) and no ``images/``."""
    return bool(_volume_files(Path(split_dir)))

def _volume_files(split: Path) -> list[LabelledVolumeFiles]:
    """The split's labelled volumes; none when it has an ``images/`` folder (a slice split)."""
    return [] if (split / "images").is_dir() or not split.is_dir() else find_labelled_volumes(split)

LabelledSlice = tuple[str, SlicePlace | None, ScanImage, np.ndarray]  # name, place, scan, mask

def split_files(split_dir: str | Path) -> list[LabelledVolumeFiles] | list[Pair]:
    """What a split holds, looked up once: its labelled volumes, else its image/mask pairs.

    Raises:
        DataError: Neither (:func:`find_pairs`' message).
    """
    split = Path(split_dir)
    return _volume_files(split) or find_pairs(split)

def labelled_slices(files: list[LabelledVolumeFiles] | list[Pair], progress: bool, desc: str
                     ) -> Iterator[LabelledSlice]:
    """Every slice of :func:`split_files`' result, decoded one file at a time."""
    if files and isinstance(files[0], LabelledVolumeFiles):
        for volume in _progress(files, progress, desc, "volume"):
            yield from _volume_slices(volume)
        return
    pairs = [f for f in files if isinstance(f, Pair)]
    places = slice_places([p.image.name for p in pairs])
    for pair, place in zip(_progress(pairs, progress, desc, "slice"), places):
        scan, mask = _read_pair(pair)
        yield pair.image.name, place, scan, mask

def _volume_slices(files: LabelledVolumeFiles) -> list[LabelledSlice]:
    try:
        volume, labels = read_labelled_volume(files)
    except InvalidVolumeError as exc:
        raise DataError(f"Volume {files.name}: {exc}") from None
    planes, spacing = volume.slices_uint8(), (volume.spacing_mm[1], volume.spacing_mm[2])
    places = volume_places(files.name, volume.shape[0])
    return [(f"{files.name}:{k}", places[k], ScanImage(pixels=planes[k], spacing_mm=spacing, bit_depth=8,
                                                       original_mode=volume.kind), labels[k])
            for k in range(volume.shape[0])]

def load_valid_set(split_dir: str | Path, *, progress: bool = False) -> ValidSet:
    """Decode a validation split (either layout) at the slices' own sizes.

    Raises:
        DataError: The split is in neither layout, or a file in it is unusable.
    """
    items = list(labelled_slices(split_files(split_dir), progress, f"decoding {Path(split_dir).name}"))
    return ValidSet([scan for _, _, scan, _ in items], [mask for *_, mask in items],
                    [name for name, *_ in items], [place for _, place, _, _ in items])


def _progress(items: list, enabled: bool, desc: str, unit: str):
    if not enabled:
        return items
    return tqdm(items, desc=desc, unit=unit, leave=False)
