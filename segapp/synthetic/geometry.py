"""Small geometry shared by the anatomy and the renderer: pixel grids in mm, boxes, blur,
4-neighbour morphology, smooth fields and curves.

Everything works in float32 where an image is involved (the generator's bytes depend on it),
and on (H, W) arrays with rows = y (posterior is down) and columns = x (the patient's left is
to the right), 0 mm at the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

F32 = np.float32

Box = tuple[slice, slice]
"""(rows, columns) of a rectangle of pixels."""


@dataclass(frozen=True)
class Grid:
    """Pixel centres of one image size and spacing, in mm (read-only, shared via a cache)."""

    xs: np.ndarray  # (W,) column centres in mm
    ys: np.ndarray  # (H,) row centres in mm
    X: np.ndarray  # (H, W)
    Y: np.ndarray  # (H, W)


@lru_cache(maxsize=16)
def pixel_grid(width: int, height: int, row_mm: float, col_mm: float) -> Grid:
    """The grid of a (height, width) image with the given pixel spacing (mm)."""
    xs = ((np.arange(width) + 0.5 - width / 2) * col_mm).astype(F32)
    ys = ((np.arange(height) + 0.5 - height / 2) * row_mm).astype(F32)
    X, Y = np.meshgrid(xs, ys)
    for array in (xs, ys, X, Y):
        array.flags.writeable = False  # cached and shared
    return Grid(xs, ys, X, Y)


def box_of(g: Grid, x0: float, x1: float, y0: float, y1: float) -> Box | None:
    """Rows and columns whose centres lie in [x0, x1] x [y0, y1] mm; None if none do."""
    c0, c1 = np.searchsorted(g.xs, [x0, x1])
    r0, r1 = np.searchsorted(g.ys, [y0, y1])
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def blur(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 binomial blur of an (H, W) float32 image, edges replicated,
    ``passes`` times (0: the image itself)."""
    out = image
    for _ in range(passes):
        p = np.pad(out, 1, mode="edge")
        rows = p[:-2] + 2 * p[1:-1] + p[2:]
        out = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) * F32(1 / 16)
    return out


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by the 4-neighbourhood; the image border counts as outside."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by the 4-neighbourhood."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def upsample(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Low-resolution float grid -> smooth (height, width) float32 field (bicubic)."""
    image = Image.fromarray(np.ascontiguousarray(grid, dtype=F32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=F32)


def catmull_rom(ctrl: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom curve through the rows of ``ctrl`` (M, D), resampled every ``step`` mm
    of arc length in the first three columns (x, y, z); further columns are carried
    along. Returns (points (N, D) float64, arc length (N,) in mm)."""
    pts = np.vstack([ctrl[:1], ctrl, ctrl[-1:]]).astype(np.float64)
    t = np.linspace(0.0, 1.0, 24, endpoint=False)[:, None]
    pieces = []
    for p0, p1, p2, p3 in zip(pts[:-3], pts[1:-2], pts[2:-1], pts[3:]):
        a, b, c = p2 - p0, 2 * p0 - 5 * p1 + 4 * p2 - p3, 3 * p1 - p0 - 3 * p2 + p3
        pieces.append(p1 + 0.5 * (a * t + b * t**2 + c * t**3))
    pieces.append(pts[-2][None])
    dense = np.vstack(pieces)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense[:, :3], axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 1e-6, step)
    return np.stack([np.interp(s, arc, column) for column in dense.T], axis=1), s


def ellipsoid_profile(z: float, z0: float, z1: float) -> float:
    """An ellipsoid's cross-section scale along z: 0 outside (z0, z1), 1 in the middle."""
    if z1 <= z0 or not z0 < z < z1:
        return 0.0
    u = (2 * z - z0 - z1) / (z1 - z0)
    return math.sqrt(1 - u * u)
