"""Segmentation metrics for class-id masks: Dice, IoU and Hausdorff distance.

Masks hold one class id per pixel (0 background, 1 stomach, 2 small bowel,
3 large bowel; see :mod:`segapp.labels`). Every function accepts numpy arrays or
torch tensors and computes in torch, so masks already on a GPU stay there; the
per-slice results come back as float64 numpy arrays.

Conventions (those of the UW-Madison GI Tract competition):

* A class absent from both masks scores Dice 1, IoU 1 and Hausdorff 0.
* A class present in exactly one mask scores Dice 0, IoU 0 and, for Hausdorff,
  the image diagonal ``sqrt(H**2 + W**2)`` (in mm: ``sqrt((H*row_mm)**2 + (W*col_mm)**2)``),
  the normaliser of the competition's Hausdorff, so it normalises to exactly 1.
* Dataset scores are per-slice scores averaged over slices (:class:`MetricAccumulator`), plus
  a pooled Dice per class: ``2|P & T| / (|P| + |T|)`` over all pixels of all slices together.

Hausdorff distances are measured between the boundary pixels of the two class
regions, as medpy and MONAI do: a boundary pixel belongs to the region and has at
least one 4-neighbour outside it (the image border counts as outside), i.e. the
region minus its erosion by a 3x3 cross. Distances are exact Euclidean distances
between pixel centres, with anisotropic spacing when given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from segapp.labels import FOREGROUND, LABELS, NUM_LABELS

# The per-class entries of MetricAccumulator.compute(), in the order reports list them.
PER_CLASS_METRICS = ("dice", "pooled_dice", "iou", "hd95_px", "hd95_mm")

MaskLike = np.ndarray | torch.Tensor

# Rows of the (queries x columns) distance matrix evaluated at once: bounds memory
# to about 4M float32 values (16 MB) whatever the mask size.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class HausdorffResult:
    """Per-class Hausdorff distances of one slice; each array has shape (num_classes,), float64.

    Attributes:
        max_px: Symmetric Hausdorff distance (the largest surface distance), in pixels.
        p95_px: The ``percentile``-th percentile of the pooled surface distances, in pixels.
        max_mm: As ``max_px`` in millimetres; None when the spacing is unknown.
        p95_mm: As ``p95_px`` in millimetres; None when the spacing is unknown.
        percentile: The percentile behind ``p95_*`` (95 unless asked otherwise).
    """

    max_px: np.ndarray
    p95_px: np.ndarray
    max_mm: np.ndarray | None = None
    p95_mm: np.ndarray | None = None
    percentile: float = 95.0


@dataclass(frozen=True)
class SliceMetrics:
    """All metrics of one slice; arrays have shape (num_classes,), float64, indexed by class id.

    Attributes:
        dice: Dice per class, 0..1.
        iou: Intersection over union per class, 0..1.
        hd95_px: 95th-percentile Hausdorff distance per class, pixels.
        hd_max_px: Hausdorff distance per class, pixels.
        hd95_mm: As ``hd95_px`` in mm; None when the spacing is unknown.
        hd_max_mm: As ``hd_max_px`` in mm; None when the spacing is unknown.
    """

    dice: np.ndarray
    iou: np.ndarray
    hd95_px: np.ndarray
    hd_max_px: np.ndarray
    hd95_mm: np.ndarray | None = None
    hd_max_mm: np.ndarray | None = None

    @property
    def mean_foreground_dice(self) -> float:
        """Mean Dice over the organ classes (1..3)."""
        return mean_foreground_dice(self.dice)


def _as_ids(mask: MaskLike, device: torch.device | None = None) -> torch.Tensor:
    """A mask as an int64 tensor (on ``device`` when given); rejects floating-point masks."""
    tensor = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(mask))
    if tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"masks must hold integer class ids, got {tensor.dtype}; pass e.g. logits.argmax(1)")
    if device is not None:
        tensor = tensor.to(device)
    return tensor.long()


def _pair(pred: MaskLike, target: MaskLike, ndim: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (pred, target) pair and return both as int64 tensors on pred's device."""
    pred_t = _as_ids(pred)
    target_t = _as_ids(target, pred_t.device)
    if pred_t.shape != target_t.shape or pred_t.ndim != ndim:
        want = "(H, W)" if ndim == 2 else "(B, H, W)"
        raise ValueError(
            f"pred and target must both have shape {want}, got {tuple(pred_t.shape)} and {tuple(target_t.shape)}"
        )
    if pred_t.numel():
        # One host sync per call; out-of-range ids would otherwise land silently in other bins.
        low = torch.minimum(pred_t.min(), target_t.min()).item()
        high = torch.maximum(pred_t.max(), target_t.max()).item()
        if low < 0 or high >= num_classes:
            raise ValueError(f"class ids must lie in 0..{num_classes - 1}, found {low}..{high}")
    return pred_t, target_t


def _confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-slice confusion counts: (B, H, W) ids -> (B, C, C) int64, [b, target, pred]."""
    batch = pred.shape[0]
    offsets = torch.arange(batch, device=pred.device).view(batch, 1, 1) * num_classes * num_classes
    flat = (offsets + target * num_classes + pred).reshape(-1)
    counts = torch.bincount(flat, minlength=batch * num_classes * num_classes)
    return counts.view(batch, num_classes, num_classes)


def _overlap_scores(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU, each (B, C) float64, from (B, C, C) confusion counts; empty-empty scores 1."""
    confusion = confusion.double()
    inter = torch.diagonal(confusion, dim1=-2, dim2=-1)
    size_sum = confusion.sum(-1) + confusion.sum(-2)  # |target| + |pred|
    union = size_sum - inter
    dice = torch.where(size_sum > 0, 2 * inter / size_sum.clamp(min=1), torch.ones_like(inter))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    return dice, iou


def dice_per_class(pred: MaskLike, target: MaskLike, num_classes: int = NUM_LABELS) -> np.ndarray:
    """Dice ``2|P & T| / (|P| + |T|)`` per class for one slice.

    Args:
        pred: Predicted class ids, (H, W), integer dtype, values in 0..num_classes-1.
        target: Ground-truth class ids, same shape.
        num_classes: Number of classes C.

    Returns:
        (C,) float64 in 0..1; 1 for a class absent from both masks.
    """
    pred_t, target_t = _pair(pred, target, 2, num_classes)
    dice, _ = _overlap_scores(_confusion(pred_t[None], target_t[None], num_classes))
    return dice[0].cpu().numpy()


def iou_per_class(pred: MaskLike, target: MaskLike, num_classes: int = NUM_LABELS) -> np.ndarray:
    """Intersection over union ``|P & T| / |P | T|`` per class for one slice.

    Args:
        pred: Predicted class ids, (H, W), integer dtype, values in 0..num_classes-1.
        target: Ground-truth class ids, same shape.
        num_classes: Number of classes C.

    Returns:
        (C,) float64 in 0..1; 1 for a class absent from both masks.
    """
    pred_t, target_t = _pair(pred, target, 2, num_classes)
    _, iou = _overlap_scores(_confusion(pred_t[None], target_t[None], num_classes))
    return iou[0].cpu().numpy()


def mean_foreground_dice(dice: np.ndarray) -> float:
    """Mean of a per-class Dice vector over the organ classes (ids 1..3), background excluded.

    Args:
        dice: (C,) per-class scores indexed by class id, C >= 4.
    """
    dice = np.asarray(dice, dtype=np.float64)
    return float(dice[[label.id for label in FOREGROUND]].mean())


def _boundaries(masks: torch.Tensor) -> torch.Tensor:
    """Boundary pixels of boolean (..., H, W) masks: in the mask with a 4-neighbour outside it."""
    padded = torch.nn.functional.pad(masks, (1, 1, 1, 1), value=False)  # the border is outside
    interior = padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]
    return masks & ~interior


def _surface_distances(
    queries: torch.Tensor, surface: torch.Tensor, spacing: tuple[float, float]
) -> np.ndarray:
    """Exact distance from each query pixel to the nearest ``surface`` pixel.

    Separable squared Euclidean distance: first along rows, where the nearest surface pixel of a
    column is the closest one above or below (two cumulative scans), then an exact minimum over
    the columns that hold surface pixels. Cost O(H*W + N*W'), W' the number of such columns.

    Args:
        queries: (N, 2) int64 (row, col) coordinates.
        surface: (H, W) bool, at least one pixel set.
        spacing: (row, col) size of a pixel.

    Returns:
        (N,) float64 distances in the units of ``spacing``.
    """
    height = surface.shape[0]
    row_mm, col_mm = spacing
    columns = surface.any(0).nonzero()[:, 0]
    surface = surface[:, columns]  # (H, W')
    rows = torch.arange(height, device=surface.device, dtype=torch.float32)[:, None].expand_as(surface)
    above = torch.where(surface, rows, -math.inf).cummax(0).values
    below = torch.where(surface, rows, math.inf).flip(0).cummin(0).values.flip(0)
    # Squared distance along the column to its nearest surface pixel, (H, W'); integers stay
    # exact in float32 up to 2**24, far above 310**2 + 360**2.
    vertical = torch.minimum(rows - above, below - rows).square() * (row_mm * row_mm)
    columns_f = columns.to(torch.float32)
    best = torch.empty(queries.shape[0], device=surface.device, dtype=torch.float32)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, columns.numel()))
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        across = (q[:, 1:2].to(torch.float32) - columns_f).square() * (col_mm * col_mm)  # (n, W')
        best[start : start + chunk] = (vertical[q[:, 0]] + across).min(1).values
    return best.cpu().double().sqrt().numpy()


def hausdorff_per_class(
    pred: MaskLike,
    target: MaskLike,
    *,
    spacing_mm: tuple[float, float] | None = None,
    percentile: float = 95.0,
    num_classes: int = NUM_LABELS,
) -> HausdorffResult:
    """Symmetric Hausdorff distance and its percentile version per class for one slice.

    The surface distances are the distances from each boundary pixel of one region to the
    nearest boundary pixel of the other, in both directions. ``max`` is their maximum (the
    Hausdorff distance); ``p95`` is ``np.percentile`` (linear interpolation) of both directions
    pooled together, as medpy's ``hd95`` computes it. MONAI instead takes the larger of the two
    directed percentiles, which is never smaller than the pooled one.

    Args:
        pred: Predicted class ids, (H, W), integer dtype, values in 0..num_classes-1.
        target: Ground-truth class ids, same shape.
        spacing_mm: Pixel size (row, col) in mm; when given, the ``*_mm`` fields are filled,
            with distances measured under this anisotropic spacing.
        percentile: Percentile for ``p95_*``, 0..100.
        num_classes: Number of classes C.

    Returns:
        A :class:`HausdorffResult`; per class 0 when both regions are empty and the image
        diagonal when exactly one is.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in 0..100, got {percentile}")
    if spacing_mm is not None and (len(spacing_mm) != 2 or min(spacing_mm) <= 0):
        raise ValueError(f"spacing_mm must be (row_mm, col_mm), both > 0, got {spacing_mm!r}")
    pred_t, target_t = _pair(pred, target, 2, num_classes)
    height, width = pred_t.shape
    classes = torch.arange(num_classes, device=pred_t.device).view(-1, 1, 1)
    pred_edges = _boundaries(pred_t == classes)  # (C, H, W)
    target_edges = _boundaries(target_t == classes)
    pred_present = pred_edges.flatten(1).any(1).tolist()
    target_present = target_edges.flatten(1).any(1).tolist()

    spacings = {"px": (1.0, 1.0)}
    if spacing_mm is not None:
        spacings["mm"] = (float(spacing_mm[0]), float(spacing_mm[1]))
    hd_max = {unit: np.zeros(num_classes) for unit in spacings}
    hd_pct = {unit: np.zeros(num_classes) for unit in spacings}
    for c in range(num_classes):
        if not pred_present[c] and not target_present[c]:
            continue  # both empty: 0
        if pred_present[c] != target_present[c]:
            for unit, (row_mm, col_mm) in spacings.items():
                diagonal = math.hypot(height * row_mm, width * col_mm)
                hd_max[unit][c] = hd_pct[unit][c] = diagonal
            continue
        pred_points = pred_edges[c].nonzero()
        target_points = target_edges[c].nonzero()
        for unit, spacing in spacings.items():
            distances = np.concatenate(
                [
                    _surface_distances(pred_points, target_edges[c], spacing),
                    _surface_distances(target_points, pred_edges[c], spacing),
                ]
            )
            hd_max[unit][c] = distances.max()
            hd_pct[unit][c] = np.percentile(distances, percentile)
    return HausdorffResult(
        max_px=hd_max["px"],
        p95_px=hd_pct["px"],
        max_mm=hd_max.get("mm"),
        p95_mm=hd_pct.get("mm"),
        percentile=percentile,
    )


def slice_metrics(
    pred: MaskLike,
    target: MaskLike,
    spacing_mm: tuple[float, float] | None = None,
    num_classes: int = NUM_LABELS,
) -> SliceMetrics:
    """Dice, IoU and Hausdorff (95th percentile and max) per class for one (H, W) slice.

    Args:
        pred: Predicted class ids, (H, W), integer dtype.
        target: Ground-truth class ids, same shape.
        spacing_mm: Pixel size (row, col) in mm, or None to skip the mm distances.
        num_classes: Number of classes C.
    """
    pred_t, target_t = _pair(pred, target, 2, num_classes)
    dice, iou = _overlap_scores(_confusion(pred_t[None], target_t[None], num_classes))
    hd = hausdorff_per_class(pred_t, target_t, spacing_mm=spacing_mm, num_classes=num_classes)
    return SliceMetrics(
        dice=dice[0].cpu().numpy(),
        iou=iou[0].cpu().numpy(),
        hd95_px=hd.p95_px,
        hd_max_px=hd.max_px,
        hd95_mm=hd.p95_mm,
        hd_max_mm=hd.max_mm,
    )


class MetricAccumulator:
    """Collects per-slice metrics over a dataset and averages them over slices.

    Every slice weighs the same (competition style): the dataset Dice of a class is the mean of
    its per-slice Dice, where a slice without the class in either mask counts 1 and a slice
    with it in only one mask counts 0 (Hausdorff: 0 and the image diagonal). The pooled Dice
    counts all pixels of all slices together instead, so large regions weigh more and empty
    slices do not count.

    Args:
        num_classes: Number of classes C; class names come from :data:`segapp.labels.LABELS`
            when C equals their count, else they are the ids as strings.
        hausdorff: Compute Hausdorff distances; False keeps only the cheap Dice and IoU.

    Example:
        >>> acc = MetricAccumulator()
        >>> for pred, target in pairs:
        ...     acc.update(pred, target, spacing_mm=(1.5, 1.5))
        >>> json.dumps(acc.compute())
    """

    def __init__(self, num_classes: int = NUM_LABELS, *, hausdorff: bool = True) -> None:
        self.num_classes = num_classes
        self.hausdorff = hausdorff
        self._dice: list[np.ndarray] = []
        self._iou: list[np.ndarray] = []
        self._hd95_px: list[np.ndarray] = []
        self._hd95_mm: list[np.ndarray | None] = []
        self._pooled = np.zeros((num_classes, num_classes), dtype=np.int64)  # [target, pred] over all slices

    def __len__(self) -> int:
        """Number of slices seen."""
        return len(self._dice)

    def reset(self) -> None:
        """Forget every slice seen."""
        for values in (self._dice, self._iou, self._hd95_px, self._hd95_mm):
            values.clear()
        self._pooled[:] = 0

    def update(self, pred: MaskLike, target: MaskLike, spacing_mm: tuple[float, float] | None = None) -> None:
        """Add one slice (H, W) or a batch of same-size slices (B, H, W).

        Args:
            pred: Predicted class ids, integer dtype.
            target: Ground-truth class ids, same shape.
            spacing_mm: Pixel size (row, col) in mm, shared by every slice of a batch; None
                when unknown (then :meth:`compute` reports no mm distances).
        """
        pred_t = _as_ids(pred)
        target_t = _as_ids(target, pred_t.device)
        if pred_t.ndim == 2:
            pred_t, target_t = pred_t[None], target_t[None]
        pred_t, target_t = _pair(pred_t, target_t, 3, self.num_classes)
        confusion = _confusion(pred_t, target_t, self.num_classes)
        dice, iou = _overlap_scores(confusion)
        self._pooled += confusion.sum(0).cpu().numpy()
        self._dice.extend(dice.cpu().numpy())
        self._iou.extend(iou.cpu().numpy())
        if not self.hausdorff:
            return
        for p, t in zip(pred_t, target_t, strict=True):
            hd = hausdorff_per_class(p, t, spacing_mm=spacing_mm, num_classes=self.num_classes)
            self._hd95_px.append(hd.p95_px)
            self._hd95_mm.append(hd.p95_mm)

    def compute(self) -> dict:
        """Dataset metrics as a JSON-ready dict (plain floats, class names as keys).

        Returns:
            ``{"slices": n, "mean_foreground_dice": float, "dice": {name: float}, "pooled_dice":
            {...}, "iou": {...}, "hd95_px": {...}, "hd95_mm": {...}}``; the Hausdorff entries only when computed, and
            ``hd95_mm`` only when every slice came with a spacing.

        Raises:
            ValueError: No slice was added.
        """
        if not self._dice:
            raise ValueError("no slices to average: call update() first")
        if self.num_classes == NUM_LABELS:
            names = [label.name for label in LABELS]
        else:
            names = [str(c) for c in range(self.num_classes)]

        def per_class(values: Sequence[np.ndarray]) -> dict[str, float]:
            means = np.mean(np.stack(values), axis=0)
            return {name: float(v) for name, v in zip(names, means, strict=True)}

        dice = np.mean(np.stack(self._dice), axis=0)
        result: dict = {"slices": len(self._dice)}
        if self.num_classes == NUM_LABELS:
            result["mean_foreground_dice"] = mean_foreground_dice(dice)
        result["dice"] = per_class(self._dice)
        pooled, _ = _overlap_scores(torch.from_numpy(self._pooled)[None])
        result["pooled_dice"] = per_class([pooled[0].numpy()])
        result["iou"] = per_class(self._iou)
        if self._hd95_px:
            result["hd95_px"] = per_class(self._hd95_px)
        if self._hd95_mm and all(v is not None for v in self._hd95_mm):
            result["hd95_mm"] = per_class(self._hd95_mm)  # type: ignore[arg-type]
        return result
