"""Phantom data: synthetic axial abdominal MRI slices with exact masks.

The real UW-Madison GI Tract data cannot be downloaded everywhere, so tests, demo weights
and the app's examples use this generator. It imitates that data's look (0.35 T MR-Linac,
balanced SSFP: fat and fluid bright, muscle and liver dark, dark "India ink" lines where fat
meets water, low-field noise) and its file layouts, and renders the same anatomy in two more
contrast families (``style``: T2 HASTE-like, T1) and an anatomy variant no standard case shows
(``anatomy="variant"``), for checks of how far a model generalises. Only vectorised numpy and
pillow; equal seeds and options give equal bytes.

What lives where, in the order the data takes:

- :mod:`~segapp.synthetic.anatomy`: one patient-day as a 3D anatomy in mm (:func:`make_case`
  -> :class:`PhantomCase`). Its parameters are frozen dataclasses: ``Body`` (outline, wall),
  ``Layout`` (z-levels and placement of the other structures, ``Kidneys``), ``Levels`` (tissue
  signals of the case's style), ``StomachLook`` (the day's filling), ``Scanner`` (acquisition); the target organs
  are ``Chain`` s of spheres.
- :mod:`~segapp.synthetic.rendering`: slice z of a case (:func:`render_slice` ->
  :class:`PhantomSlice`): painting the cut, then the acquisition (blur, gamma, bias, noise).
  Consecutive slices of one case form a coherent volume, so a volume writer (NIfTI, DICOM)
  makes one case and renders each z.
- :mod:`~segapp.synthetic.dataset`: seeds and files: :func:`generate_slice`,
  :func:`dataset_slice`, :func:`generate_dataset` (notebook layout, raw layout + train.csv).
- :mod:`~segapp.synthetic.geometry`: pixel grids in mm, blur, morphology, splines.

``python -m segapp.phantom`` is the command-line front over :func:`generate_dataset`.
"""

from segapp.synthetic.anatomy import (
    ANATOMIES,
    ORGANS,
    PROTOCOLS,
    SLICE_THICKNESS_MM,
    SLICES_PER_SCAN,
    STYLE_WEIGHTS,
    STYLES,
    Chain,
    PhantomCase,
    make_case,
)
from segapp.synthetic.dataset import CSV_CLASSES, dataset_slice, generate_dataset, generate_slice
from segapp.synthetic.rendering import PhantomSlice, minmax_uint8, render_slice

__all__ = [
    "ANATOMIES",
    "CSV_CLASSES",
    "ORGANS",
    "PROTOCOLS",
    "SLICES_PER_SCAN",
    "SLICE_THICKNESS_MM",
    "STYLES",
    "STYLE_WEIGHTS",
    "Chain",
    "PhantomCase",
    "PhantomSlice",
    "dataset_slice",
    "generate_dataset",
    "generate_slice",
    "make_case",
    "minmax_uint8",
    "render_slice",
]
