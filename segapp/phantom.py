"""Phantom data: synthetic axial abdominal MRI slices with exact masks.

The real UW-Madison GI Tract data cannot be downloaded everywhere, so tests, demo
weights and the app's examples use this generator. It imitates that data's look
(0.35 T MR-Linac, balanced SSFP: fat and fluid bright, muscle and liver dark, dark
"India ink" lines where fat meets water, low-field noise) and its file layouts.

Design: :func:`make_case` draws one patient-day as a 3D anatomy in millimetres:
body outline, solid organs, spine and pelvis as z-dependent ellipses, and the
stomach, small bowel and large bowel as chains of spheres along 3D paths.
:func:`render_slice` cuts that anatomy at one slice, so consecutive slices form a
coherent volume (organs grow, shrink, move and vanish smoothly along z). Only
vectorised numpy and pillow; equal seeds give equal bytes.

Coordinates: x in mm grows to the image right (the patient's left), y in mm grows
down (posterior), 0 at the image centre; slice ``k`` (0-based) lies at
``z = 3 k`` mm, towards the feet (3 mm slices, 144 per scan, as in the real data).

Masks: the class-id mask holds one id per pixel. Organs are drawn in id order
(stomach, small bowel, large bowel) and a later organ overwrites an earlier one,
in the image and the mask alike: on overlap the higher id wins. The per-organ
masks (``PhantomSlice.organ_masks``, the raw layout's CSV) are the drawn regions;
in about one case in seven they keep a one-pixel rim under the later organ where
organs touch, as the real annotations sometimes overlap. Either way ``mask`` is
the highest id whose organ mask holds the pixel (0 where none does).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from segapp.cli import non_negative_int
from segapp.io.rle import rle_encode
from segapp.labels import FOREGROUND, LABEL2ID

SLICE_THICKNESS_MM = 3.0
SLICES_PER_SCAN = 144
# The real data's protocols, (width, height, pixel spacing in mm), and how often we draw each.
PROTOCOLS: tuple[tuple[int, int, float], ...] = (
    (266, 266, 1.50),
    (360, 310, 1.50),
    (234, 234, 1.50),
    (276, 276, 1.63),
)
PROTOCOL_WEIGHTS: tuple[float, ...] = (0.55, 0.25, 0.10, 0.10)
ORGANS: tuple[str, ...] = tuple(label.name for label in FOREGROUND)  # draw order = id order
CSV_CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")  # the real CSV's row order
RAW_VOLUME_SLICES = (20, 40)  # consecutive slices per case-day in the raw layout
NOTEBOOK_CASE_SLICES = (8, 16)  # slices per case-day in the notebook layout

_F32 = np.float32
_SPAN_MM = SLICES_PER_SCAN * SLICE_THICKNESS_MM


# --------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class Chain:
    """A tube or sac as a chain of overlapping spheres along a 3D path.

    Attributes:
        points: (N, 3) float32 sphere centres (x, y, z) in mm.
        radii: (N,) float32 sphere radii in mm.
        content: (N,) float32 lumen signal at each sphere (relative; subcutaneous fat = 1).
    """

    points: np.ndarray
    radii: np.ndarray
    content: np.ndarray

    def z_range(self) -> tuple[float, float]:
        """(first, last) z in mm that the chain reaches."""
        z = self.points[:, 2]
        return float((z - self.radii).min()), float((z + self.radii).max())


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class PhantomCase:
    """One synthetic patient-day: a 3D anatomy plus scanner settings (lengths in mm).

    Attributes:
        case_id: Patient number (``caseN``).
        day: Scan day (``dayD``).
        width: Image width in pixels.
        height: Image height in pixels.
        spacing_mm: (row, column) pixel spacing.
        n_slices: Slices in the whole scan; slice k lies at z = 3 k.
        body: Body outline and wall: centre, half-axes, fat and muscle thickness.
        anatomy: Positions, sizes and z-levels of the other structures.
        levels: Signal of each tissue (relative; subcutaneous fat = 1).
        scan: Gamma, bias field, noise, blur and artefact settings.
        stomach: The stomach, fundus to pylorus.
        small_bowel: The small-bowel loops, one after another in one chain.
        large_bowel: The colon, caecum to rectum.
        vessels: (K, 6) float32 vessels running along z: x, y at z0, dx/dz, dy/dz, radius, z0;
            the first ``anatomy["n_liver_vessels"]`` lie in the liver, the rest in the mesentery.
        texture: Two low-resolution noise volumes (knots along z, rows, cols) for texture
            that stays coherent from slice to slice.
        overlap: Whether the per-organ masks keep a one-pixel overlap where organs touch.
    """

    case_id: int
    day: int
    width: int
    height: int
    spacing_mm: tuple[float, float]
    n_slices: int
    body: dict[str, float]
    anatomy: dict[str, float]
    levels: dict[str, float]
    scan: dict[str, float]
    stomach: Chain
    small_bowel: Chain
    large_bowel: Chain
    vessels: np.ndarray
    texture: tuple[np.ndarray, np.ndarray]
    overlap: bool

    def organ_z_ranges(self) -> dict[str, tuple[float, float]]:
        """Organ name -> (first, last) z in mm where it can appear."""
        return {name: getattr(self, name).z_range() for name in ORGANS}


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class PhantomSlice:
    """One rendered slice.

    Attributes:
        image16: (H, W) uint16 raw-scan-like signal.
        mask: (H, W) uint8 class ids 0..3 (see :mod:`segapp.labels`).
        organ_masks: ``stomach``, ``small_bowel``, ``large_bowel`` -> (H, W) bool; may
            overlap by a pixel where organs touch (see the module docstring).
        spacing_mm: (row, column) pixel spacing in mm.
        case: Patient number.
        day: Scan day.
        slice_index: Slice number as in the file names (1-based).
    """

    image16: np.ndarray
    mask: np.ndarray
    organ_masks: dict[str, np.ndarray]
    spacing_mm: tuple[float, float]
    case: int
    day: int
    slice_index: int

    @property
    def image8(self) -> np.ndarray:
        """(H, W) uint8, min-max scaled per image as the notebook made its PNGs."""
        return minmax_uint8(self.image16)

    @property
    def id(self) -> str:
        """The competition id, ``caseN_dayD_slice_SSSS``."""
        return f"case{self.case}_day{self.day}_slice_{self.slice_index:04d}"

    @property
    def file_name(self) -> str:
        """The notebook layout's name, ``caseN_dayD_slice_SSSS_W_H_PW_PH.png`` (width first)."""
        height, width = self.mask.shape
        row_mm, col_mm = self.spacing_mm
        return f"{self.id}_{width}_{height}_{col_mm:.2f}_{row_mm:.2f}.png"


def minmax_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an image by its own range: round((x - min) / (max - min) * 255).

    Args:
        image: (H, W) array, any real dtype.

    Returns:
        (H, W) uint8; all zeros for a constant image.
    """
    data = np.asarray(image, dtype=np.float64)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.rint((data - low) / (high - low) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Geometry helpers

Box = tuple[slice, slice]


@dataclass(frozen=True)
class _Grid:
    xs: np.ndarray  # (W,) column centres in mm
    ys: np.ndarray  # (H,) row centres in mm
    X: np.ndarray  # (H, W)
    Y: np.ndarray  # (H, W)


@lru_cache(maxsize=16)
def _grid(width: int, height: int, row_mm: float, col_mm: float) -> _Grid:
    xs = ((np.arange(width) + 0.5 - width / 2) * col_mm).astype(_F32)
    ys = ((np.arange(height) + 0.5 - height / 2) * row_mm).astype(_F32)
    X, Y = np.meshgrid(xs, ys)
    for array in (xs, ys, X, Y):
        array.flags.writeable = False  # cached and shared
    return _Grid(xs, ys, X, Y)


def _box(g: _Grid, x0: float, x1: float, y0: float, y1: float) -> Box | None:
    """Rows and columns whose centres lie in [x0, x1] x [y0, y1] mm; None if none do."""
    c0, c1 = np.searchsorted(g.xs, [x0, x1])
    r0, r1 = np.searchsorted(g.ys, [y0, y1])
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def _blur(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 binomial blur, edges replicated, ``passes`` times."""
    out = image
    for _ in range(passes):
        p = np.pad(out, 1, mode="edge")
        rows = p[:-2] + 2 * p[1:-1] + p[2:]
        out = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) * _F32(1 / 16)
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by the 4-neighbourhood; the image border counts as outside."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by the 4-neighbourhood."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _upsample(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Low-resolution float grid -> smooth (height, width) float32 field (bicubic)."""
    image = Image.fromarray(np.ascontiguousarray(grid, dtype=_F32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=_F32)


def _spline(ctrl: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom curve through the rows of ``ctrl`` (M, D), resampled every ``step`` mm
    of arc length in the first three columns (x, y, z); further columns are carried
    along. Returns (points (N, D), arc length (N,))."""
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


def _profile(z: float, z0: float, z1: float) -> float:
    """An ellipsoid's cross-section scale along z: 0 outside (z0, z1), 1 in the middle."""
    if z1 <= z0 or not z0 < z < z1:
        return 0.0
    u = (2 * z - z0 - z1) / (z1 - z0)
    return math.sqrt(1 - u * u)


# --------------------------------------------------------------------------------------------
# Anatomy of one case


def _protocol(rng: np.random.Generator, size: tuple[int, int] | None) -> tuple[int, int, float]:
    if size is None:
        return PROTOCOLS[int(rng.choice(len(PROTOCOLS), p=PROTOCOL_WEIGHTS))]
    for width, height, spacing in PROTOCOLS:
        if (width, height) == tuple(size):
            return width, height, spacing
    known = ", ".join(f"{w}x{h}" for w, h, _ in PROTOCOLS)
    raise ValueError(f"size {size!r} is not one of the real data's (width, height): {known}")


def _small_bowel(rng: np.random.Generator, region: dict[str, float], levels: dict[str, float]) -> Chain:
    """Self-avoiding random-walk tubes filling an ellipsoid (the mesenteric small bowel),
    joined one after another into one chain."""
    cx0, cx1, cy, ax, ay = (region[k] for k in ("cx_top", "cx_bottom", "cy", "ax", "ay"))
    z0, z1 = region["z0"], region["z1"]
    zc, az = (z0 + z1) / 2, (z1 - z0) / 2

    def outside(x: float, y: float, z: float) -> float:  # > 0 outside the (sloping) ellipsoid
        ex = (x - cx0 - (cx1 - cx0) * (z - z0) / (z1 - z0)) / ax
        return ex * ex + ((y - cy) / ay) ** 2 + ((z - zc) / az) ** 2 - 1.0

    cell = 9.0  # occupancy grid (mm): the walk prefers empty cells, so loops pack without merging
    occupied: dict[tuple[int, int, int], int] = {}
    n_tubes = int(rng.integers(3, 6))
    length = rng.uniform(0.5, 0.75) * (4 / 3 * math.pi * ax * ay * az) / n_tubes  # mm^3 per tube
    parts = []
    for _ in range(n_tubes):
        radius = float(rng.uniform(10, 14))
        step = 0.5 * radius
        n_steps = max(8, int(length / (math.pi * radius**2) / step))
        while True:
            p = [cx0 + rng.uniform(-1, 1) * ax, cy + rng.uniform(-1, 1) * ay, zc + rng.uniform(-1, 1) * az]
            if outside(*p) < -0.2:
                break
        d = (lambda v: (v / np.linalg.norm(v)).tolist())(rng.normal(size=3))
        jitter = (0.5 * rng.normal(size=(n_steps, 5, 3))).tolist()
        tie = rng.uniform(0, 0.5, size=(n_steps, 5)).tolist()
        pts = [p]
        for i in range(n_steps):
            # Five candidate headings; take the one looking into the emptiest cell inside.
            best, best_score = d, math.inf
            for j, (jx, jy, jz) in enumerate(jitter[i]):
                c = [d[0] + jx, d[1] + jy, d[2] + jz]
                norm = math.sqrt(c[0] ** 2 + c[1] ** 2 + c[2] ** 2) or 1.0
                c = [v / norm for v in c]
                ahead = [p[k] + c[k] * 2.5 * radius for k in range(3)]
                key = (int(ahead[0] // cell), int(ahead[1] // cell), int(ahead[2] // cell))
                score = occupied.get(key, 0) + tie[i][j] + 20.0 * max(0.0, outside(*ahead) + 0.15)
                if score < best_score:
                    best, best_score = c, score
            d = best
            p = [p[k] + d[k] * step for k in range(3)]
            if outside(*p) > 0.1:  # strayed out: head back towards the centre
                home = [(cx0 + cx1) / 2 - p[0], cy - p[1], zc - p[2]]
                norm = math.sqrt(sum(v * v for v in home)) or 1.0
                d = [v / norm for v in home]
                p = [p[k] + d[k] * step for k in range(3)]
            pts.append(p)
            key = (int(p[0] // cell), int(p[1] // cell), int(p[2] // cell))
            occupied[key] = occupied.get(key, 0) + 2
        n = len(pts)
        # Calibre and content drift along the loop: fluid-filled stretches and collapsed ones.
        wobble = np.convolve(rng.normal(size=n + 8), np.ones(9) / 9, mode="valid")[:n]
        fluid = np.repeat(rng.random(n // 12 + 1) < levels["sb_fluid_share"], 12)[:n]
        content = np.where(fluid, levels["sb_fluid"], levels["sb_chyme"]) * (1 + 0.1 * rng.normal(size=n))
        parts.append((np.asarray(pts), radius * (1 + 0.25 * wobble), content))
    return Chain(*(np.concatenate([part[k] for part in parts]).astype(_F32) for k in range(3)))


def make_case(
    rng: np.random.Generator,
    *,
    case_id: int = 1,
    day: int = 0,
    size: tuple[int, int] | None = None,
) -> PhantomCase:
    """Draw one patient-day's anatomy and scanner settings.

    The patient (size, body, solid organs, organ routes) comes from ``rng``; the day
    (bowel loops, fillings, contrast, noise) from a stream seeded by ``rng`` and
    ``day``. So equally seeded ``rng`` with different days give one patient on two days.

    Args:
        rng: Random source; its state decides the case.
        case_id: Patient number, for names.
        day: Scan day, for names and the day-to-day changes.
        size: (width, height) in pixels, one of :data:`PROTOCOLS`; drawn when None.

    Returns:
        The case, ready for :func:`render_slice`.

    Raises:
        ValueError: ``size`` is not one of the real data's sizes.
    """
    width, height, spacing = _protocol(rng, size)

    # Body: an ellipse wider than tall, flatter at the back (the patient lies on it);
    # sizes in mm, so its size in pixels follows the pixel spacing.
    a = min(rng.uniform(148, 192), 0.485 * width * spacing)
    b_ant, b_post = rng.uniform(105, 135), rng.uniform(92, 115)
    squeeze = min(1.0, 0.94 * height * spacing / (b_ant + b_post))
    b_ant, b_post = b_ant * squeeze, b_post * squeeze
    fat = rng.uniform(8, 32) * min(1.0, a / 150)
    body = {
        "cx": rng.normal(0, 6),
        "cy": (b_ant - b_post) / 2 + rng.normal(0, 5),
        "a": a,
        "b_ant": b_ant,
        "b_post": b_post,
        "p_post": rng.uniform(2.3, 3.2),  # superellipse exponent of the back
        "fat": fat,
        "fat_ant": rng.uniform(0.1, 0.6),  # extra fat in front, on the flanks
        "fat_lat": rng.uniform(0.0, 0.5),
        "muscle": rng.uniform(7, 12),
        "z_amp": rng.uniform(0.02, 0.05),
        "z_phase": rng.uniform(0, 2 * math.pi),
    }
    for k in range(2, 6):  # gentle lobes on the outline
        body[f"h{k}"] = rng.uniform(0, 0.022) / (k - 1) ** 0.5
        body[f"p{k}"] = rng.uniform(0, 2 * math.pi)
    cx, cy = body["cx"], body["cy"]
    a_c = a - fat * (1 + body["fat_lat"]) - body["muscle"]  # cavity half-axes
    b_ca = b_ant - fat * (1 + body["fat_ant"]) - body["muscle"]
    b_cp = b_post - 0.7 * fat - body["muscle"]

    # z-levels as fractions of the scan (lung bases at the top, hips at the bottom),
    # set so that about half of all slices show no target organ, as in the real data.
    t_st = 0.2 + rng.uniform(-0.07, 0.07) + rng.normal(0, 0.015)
    t_lb0 = t_st + rng.uniform(0.05, 0.1)
    t_lb1 = t_lb0 + rng.uniform(0.36, 0.45)
    r_vb = rng.uniform(16, 21)
    y_vb = cy + b_post - rng.uniform(48, 62) - 0.7 * fat  # vertebral body centre
    an = {
        "a_c": a_c,
        "b_ca": b_ca,
        "b_cp": b_cp,
        "r_vb": r_vb,
        "y_vb": y_vb,
        "z_st": t_st * _SPAN_MM,
        "st_len": rng.uniform(0.15, 0.21) * _SPAN_MM,
        "z_lb0": t_lb0 * _SPAN_MM,
        "z_lb1": t_lb1 * _SPAN_MM,
        "z_liver0": (t_st - rng.uniform(0.08, 0.12)) * _SPAN_MM,
        "z_liver1": (t_st + rng.uniform(0.2, 0.27)) * _SPAN_MM,
        "z_spleen0": (t_st - rng.uniform(0.0, 0.05)) * _SPAN_MM,
        "z_spleen1": (t_st + rng.uniform(0.12, 0.17)) * _SPAN_MM,
        "z_kid_r": (t_st + rng.uniform(0.2, 0.24)) * _SPAN_MM,  # image left, lower
        "z_kid_l": (t_st + rng.uniform(0.17, 0.21)) * _SPAN_MM,
        "kid_half": rng.uniform(48, 60),
        "kid_x": r_vb + rng.uniform(38, 50),
        "kid_ax": rng.uniform(26, 33),
        "kid_by": rng.uniform(18, 23),
        "kid_angle": rng.uniform(0.5, 0.9),
        "z_lung1": (t_st - rng.uniform(0.0, 0.03)) * _SPAN_MM,
        "z_heart1": (t_st - rng.uniform(0.06, 0.1)) * _SPAN_MM,
        "z_bif": (t_lb0 + rng.uniform(0.22, 0.28)) * _SPAN_MM,  # aortic bifurcation
        "z_ilium0": (t_lb1 - rng.uniform(0.14, 0.18)) * _SPAN_MM,
        "z_sacrum": (t_lb1 - rng.uniform(0.1, 0.13)) * _SPAN_MM,
        "z_femur": (t_lb1 + rng.uniform(0.03, 0.07)) * _SPAN_MM,
        "z_bladder": (t_lb1 - rng.uniform(0.03, 0.07)) * _SPAN_MM,
        "z_disc": rng.uniform(0, 33),  # phase of the 33 mm vertebral period
        "gallbladder": float(rng.random() < 0.6),
        "bladder": rng.uniform(15, 45),  # half-width when full
    }

    # Vessels running along z: veins in the liver, mesenteric vessels among the loops.
    n_liver, n_mes = int(rng.integers(4, 9)), int(rng.integers(4, 10))
    an["n_liver_vessels"] = n_liver
    vessels = np.zeros((n_liver + n_mes, 6), dtype=_F32)
    vessels[:n_liver, 0] = cx - a_c * rng.uniform(0.2, 0.75, n_liver)
    vessels[:n_liver, 1] = cy + b_cp * rng.uniform(-0.6, 0.4, n_liver)
    vessels[:n_liver, 4] = rng.uniform(2.5, 6, n_liver)
    vessels[:n_liver, 5] = an["z_liver0"] + rng.uniform(0, 0.5, n_liver) * (an["z_liver1"] - an["z_liver0"])
    vessels[n_liver:, 0] = cx + a_c * rng.uniform(-0.4, 0.4, n_mes)
    vessels[n_liver:, 1] = cy + b_ca * rng.uniform(-0.6, 0.1, n_mes)
    vessels[n_liver:, 4] = rng.uniform(2.0, 3.5, n_mes)
    vessels[n_liver:, 5] = an["z_lb0"]
    vessels[:, 2:4] = rng.normal(0, 0.25, (n_liver + n_mes, 2))

    # Stomach route, fundus (high, posterior, image right) -> body -> antrum -> pylorus
    # (front, across the midline): x, y as fractions of the cavity, z of its length, radius.
    st_route = np.array(
        [
            [0.42, 0.25, 0.0, 1.0],
            [0.42, 0.0, 0.3, 0.95],
            [0.30, -0.35, 0.6, 0.8],
            [0.10, -0.55, 0.85, 0.6],
            [-0.12, -0.6, 0.8, 0.45],
            [-0.28, -0.45, 0.72, 0.3],
        ]
    )
    st_route[:, :2] += rng.normal(0, 0.04, (len(st_route), 2))
    st_radius = rng.uniform(30, 42)
    # Colon route: caecum -> ascending -> transverse (sagging) -> descending -> sigmoid ->
    # rectum: x, y as fractions of the cavity, z in mm, radius factor, haustra depth.
    z0, z1, sag = an["z_lb0"], an["z_lb1"], rng.uniform(0.0, 0.12) * _SPAN_MM
    y_rectum = (y_vb - r_vb - 22 - cy) / b_cp
    zs = _SPAN_MM
    lb_route = np.array(
        [
            [-0.60, 0.10, z1 - 0.13 * zs, 1.15, 1],
            [-0.66, 0.05, (z0 + z1) / 2, 1.0, 1],
            [-0.60, -0.20, z0 + 0.06 * zs, 1.0, 1],
            [-0.30, -0.70, z0 + 0.08 * zs + 0.5 * sag, 0.9, 1],
            [0.00, -0.78, z0 + 0.10 * zs + sag, 0.9, 1],
            [0.30, -0.70, z0 + 0.06 * zs + 0.4 * sag, 0.9, 1],
            [0.62, -0.15, z0 + 0.03 * zs, 0.9, 1],
            [0.68, 0.08, (z0 + z1) / 2, 0.85, 1],
            [0.62, 0.0, z1 - 0.15 * zs, 0.8, 1],
            [0.35, -0.35, z1 - 0.10 * zs, 0.7, 0.4],
            [0.00, -0.40, z1 - 0.12 * zs, 0.7, 0.4],
            [-0.12, -0.05, z1 - 0.08 * zs, 0.7, 0.3],
            [0.00, y_rectum, z1 - 0.04 * zs, 0.8, 0.0],
            [0.00, y_rectum + 0.05, z1 - 0.01 * zs, 0.75, 0.0],
        ]
    )
    lb_route[:, :2] += rng.normal(0, 0.03, (len(lb_route), 2))

    # ---- This day: contrast, fillings, bowel loops, scanner.
    drng = np.random.default_rng([int(rng.integers(2**62)), int(day)])
    contrast = drng.uniform(0.85, 1.15)
    lv = {
        "fat": 1.0,
        "visceral": drng.uniform(0.72, 0.92),
        "skin": drng.uniform(0.45, 0.6),
        "muscle": drng.uniform(0.18, 0.28) * contrast,
        "liver": drng.uniform(0.28, 0.38) * contrast,
        "spleen": drng.uniform(0.45, 0.55) * contrast,
        "kidney": drng.uniform(0.5, 0.62) * contrast,
        "marrow": drng.uniform(0.6, 0.8),
        "cortex": 0.06,
        "disc": drng.uniform(0.55, 0.75),
        "csf": drng.uniform(0.95, 1.15),
        # Flowing blood is bright in bSSFP; dark (flow void) in some scans.
        "blood": drng.uniform(0.75, 1.1) if drng.random() < 0.75 else drng.uniform(0.08, 0.2),
        "fluid": drng.uniform(1.0, 1.25),
        "lung": drng.uniform(0.03, 0.08),
        "heart": drng.uniform(0.45, 0.6),
        "gas": 0.02,
        "st_wall": drng.uniform(0.3, 0.42) * contrast,
        "sb_wall": drng.uniform(0.38, 0.5),
        "sb_fluid": drng.uniform(0.95, 1.2),
        "sb_chyme": drng.uniform(0.42, 0.6) * contrast,
        "sb_fluid_share": drng.uniform(0.25, 0.7),
        "lb_wall": drng.uniform(0.32, 0.45) * contrast,
        "lb_stool": drng.uniform(0.18, 0.34) * contrast,
    }
    lv.update(medulla=lv["kidney"] * 1.1, sinus=lv["visceral"], vessel=lv["blood"], aorta=lv["blood"])
    lv.update(ivc=lv["blood"] * 0.9, bladder=lv["fluid"] * 1.05, cord=lv["marrow"] * 0.8)

    # Stomach filling: fluid (bright), food (grey, mottled) or collapsed (small, thick folds);
    # gas rises to the front (top of the image) above a flat fluid level.
    kind = int(drng.choice(3, p=(0.5, 0.3, 0.2)))
    radius = st_radius * (drng.uniform(0.85, 1.15), drng.uniform(0.75, 1.05), drng.uniform(0.5, 0.65))[kind]
    ctrl = np.column_stack(
        [
            cx + st_route[:, 0] * a_c,
            cy + st_route[:, 1] * np.where(st_route[:, 1] < 0, b_ca, b_cp),
            an["z_st"] + 0.8 * radius + st_route[:, 2] * an["st_len"],
            st_route[:, 3] * radius,
        ]
    )
    dense, _ = _spline(ctrl, 3.0)
    level = (lv["fluid"], drng.uniform(0.5, 0.7), drng.uniform(0.35, 0.5))[kind]
    stomach = Chain(dense[:, :3].astype(_F32), dense[:, 3].astype(_F32), np.full(len(dense), level, _F32))
    an["st_gas"] = drng.uniform(0.12, 0.35) if kind != 2 and drng.random() < 0.45 else 0.0
    an["st_wall"] = (drng.uniform(3, 5), drng.uniform(3, 5), drng.uniform(6, 9))[kind]
    an["st_folds"] = (0.12, 0.36, 0.48)[kind]  # mottling of the content
    an["st_rugae"] = (0.0, 0.35, 0.75)[kind]  # bright fluid between the mucosal folds

    # Colon: calibre, haustral folds every 22-32 mm, stool with gas pockets.
    radius = drng.uniform(16, 24)
    ctrl = np.column_stack(
        [
            cx + lb_route[:, 0] * a_c,
            cy + lb_route[:, 1] * np.where(lb_route[:, 1] < 0, b_ca, b_cp),
            lb_route[:, 2],
            lb_route[:, 3] * radius,
            lb_route[:, 4],
        ]
    )
    dense, arc = _spline(ctrl, 0.3 * radius)
    fold = np.maximum(0.0, np.cos(2 * math.pi * arc / drng.uniform(22, 32))) ** 6
    radii = dense[:, 3] * (1 - drng.uniform(0.15, 0.28) * dense[:, 4] * fold)
    n = len(dense)
    transverse = (np.abs(dense[:, 0] - cx) < 0.45 * a_c) & (dense[:, 1] < cy - 0.4 * b_ca)
    gas = np.repeat(drng.random(n // 6 + 1) < 0.25, 6)[:n] | (transverse & (drng.random() < 0.6))
    content = np.where(gas, lv["gas"], lv["lb_stool"] * (1 + 0.2 * drng.normal(size=n)))
    large_bowel = Chain(dense[:, :3].astype(_F32), radii.astype(_F32), content.astype(_F32))

    # Small bowel: loops packed in front of the spine, inside the colon's frame.
    front, back = cy - b_ca, y_vb - r_vb - 8
    region = {
        "cx_top": cx + 0.15 * a_c,
        "cx_bottom": cx - 0.08 * a_c,
        "cy": (front + back) / 2,
        "ax": 0.56 * a_c,
        "ay": 0.5 * (back - front),
        "z0": z0 + drng.uniform(0.03, 0.08) * _SPAN_MM,
        "z1": z1 - drng.uniform(0.03, 0.09) * _SPAN_MM,
    }
    small_bowel = _small_bowel(drng, region, lv)

    scan = {
        "gamma": drng.uniform(0.75, 1.3),
        "noise": drng.uniform(0.03, 0.07),  # Rician sigma relative to fat
        "blur": float(drng.integers(1, 3)),  # binomial passes (partial volume)
        "ink": drng.uniform(0.35, 0.75),  # India-ink depth
        "scale": drng.uniform(700, 4000),  # uint16 value of fat
        "bx": drng.normal(0, 0.2),  # bias field: exp of a quadratic in x, y
        "by": drng.normal(0, 0.2),
        "bxx": drng.normal(0, 0.15),
        "byy": drng.uniform(0.0, 0.45),  # coils in front and behind: brighter there
        "bxy": drng.normal(0, 0.1),
        "bands": drng.uniform(0.9, 1.8) if drng.random() < 0.25 else 0.0,  # bSSFP banding
        "band_x": drng.uniform(0.85, 1.2),
        "band_y": drng.uniform(0.85, 1.2),
        "band_tilt": drng.normal(0, 0.3),
    }
    texture = (  # knots every 4 slices (organ scale) and every 2 slices (parenchyma)
        drng.normal(size=(SLICES_PER_SCAN // 4 + 2, 10, 10)).astype(_F32),
        drng.normal(size=(SLICES_PER_SCAN // 2 + 2, 44, 44)).astype(_F32),
    )
    return PhantomCase(
        case_id=int(case_id),
        day=int(day),
        width=width,
        height=height,
        spacing_mm=(spacing, spacing),
        n_slices=SLICES_PER_SCAN,
        body=body,
        anatomy={k: float(v) for k, v in an.items()},
        levels={k: float(v) for k, v in lv.items()},
        scan={k: float(v) for k, v in scan.items()},
        stomach=stomach,
        small_bowel=small_bowel,
        large_bowel=large_bowel,
        vessels=vessels,
        texture=texture,
        overlap=bool(drng.random() < 0.15),
    )


# --------------------------------------------------------------------------------------------
# Rendering

# tissue -> (texture, amplitude, fat share, solid). Fat drives the India-ink lines; solid
# structures (bone, retroperitoneum, bladder) keep the bowel out.
_TISSUES: dict[str, tuple[str, float, float, bool]] = {
    "lung": ("fine", 0.6, 0.0, False),
    "heart": ("medium", 0.25, 0.0, False),
    "liver": ("medium", 0.1, 0.0, False),
    "spleen": ("medium", 0.1, 0.0, False),
    "muscle": ("medium", 0.15, 0.0, True),
    "kidney": ("medium", 0.12, 0.0, True),
    "medulla": ("medium", 0.3, 0.0, True),
    "sinus": ("", 0.0, 1.0, True),
    "marrow": ("medium", 0.15, 1.0, True),
    "cortex": ("", 0.0, 0.0, True),
    "disc": ("medium", 0.1, 0.0, True),
    "csf": ("", 0.0, 0.0, True),
    "cord": ("", 0.0, 0.0, True),
    "aorta": ("", 0.0, 0.0, True),
    "ivc": ("", 0.0, 0.0, True),
    "vessel": ("", 0.0, 0.0, False),
    "fluid": ("", 0.0, 0.0, False),
    "bladder": ("", 0.0, 0.0, True),
}


class _Canvas:
    """Signal, fat and solid maps of one slice, painted structure by structure."""

    def __init__(self, g: _Grid, levels: dict[str, float], textures: dict[str, np.ndarray]) -> None:
        self.g, self.levels, self.tex = g, levels, textures
        self.img = np.zeros(g.X.shape, dtype=_F32)
        self.fat = np.zeros(g.X.shape, dtype=_F32)
        self.solid = np.zeros(g.X.shape, dtype=bool)

    def shape(
        self,
        tissue: str,
        x: float,
        y: float,
        ax: float,
        by: float,
        angle: float = 0.0,
        clip: np.ndarray | None = None,
        wobble: float = 0.15,
    ) -> None:
        """Paint a rotated ellipse (centre x, y; half-axes ax, by in mm), its outline
        bent by the coarse texture (``wobble``), restricted to ``clip``."""
        if ax <= 0 or by <= 0:
            return
        reach = max(ax, by)
        box = _box(self.g, x - reach, x + reach, y - reach, y + reach)
        if box is None:
            return
        dx = (self.g.xs[box[1]] - x)[None, :]
        dy = (self.g.ys[box[0]] - y)[:, None]
        cos, sin = math.cos(angle), math.sin(angle)
        q = ((dx * cos + dy * sin) / ax) ** 2 + ((dy * cos - dx * sin) / by) ** 2
        inside = q * (1 + wobble * self.tex["coarse"][box]) < 1
        if clip is not None:
            inside &= clip[box]
        texture, amp, fat, solid = _TISSUES[tissue]
        value = self.levels[tissue]
        self.img[box][inside] = value * (1 + amp * self.tex[texture][box][inside]) if amp else value
        self.fat[box][inside] = fat
        if solid:
            self.solid[box][inside] = True

    def bone(
        self, x: float, y: float, ax: float, by: float, angle: float = 0.0, clip: np.ndarray | None = None
    ) -> None:
        """Dark cortex around fatty marrow."""
        shell = min(2.5, 0.3 * min(ax, by))
        self.shape("cortex", x, y, ax, by, angle, clip, wobble=0.04)
        self.shape("marrow", x, y, ax - shell, by - shell, angle, clip, wobble=0.04)


def _texture(case: PhantomCase, z_index: int, which: int) -> np.ndarray:
    """Smooth noise (H, W), about unit spread, interpolated between the case's z-knots."""
    volume = case.texture[which]
    pos = z_index / (4, 2)[which]
    k = min(int(pos), len(volume) - 2)
    w = _F32(pos - k)
    return _upsample(volume[k] * (1 - w) + volume[k + 1] * w, case.width, case.height)


def _body(case: PhantomCase, g: _Grid, z: float, coarse: np.ndarray) -> dict:
    """Body outline at z: depth below the skin, the wall layers, the cavity."""
    b = case.body
    t = z / _SPAN_MM
    # Slow changes along z: a waist, wider hips.
    a = b["a"] * (
        1 + b["z_amp"] * math.sin(2 * math.pi * t + b["z_phase"]) + 0.06 * max(0.0, t - 0.78) / 0.22
    )
    b_ant = b["b_ant"] * (1 + 0.5 * b["z_amp"] * math.sin(3 * t + b["z_phase"]))
    b_post, p = b["b_post"], b["p_post"]
    dx, dy = g.X - b["cx"], g.Y - b["cy"]
    u = np.abs(dx) / a
    rho = np.where(dy < 0, np.hypot(u, dy / b_ant), (u**p + np.abs(dy / b_post) ** p) ** (1 / p))
    r = np.hypot(dx, dy) + _F32(1e-3)
    cos_t, sin_t = dx / r, dy / r
    e = (cos_t + 1j * sin_t).astype(np.complex64)
    ek, lobes = e * e, np.zeros_like(rho)
    for k in range(2, 6):  # lobes: harmonics of the angle, as complex powers
        lobes += b[f"h{k}"] * np.real(ek * complex(math.cos(b[f"p{k}"]), math.sin(b[f"p{k}"])))
        ek = ek * e
    rho = rho / (1 + lobes)  # rho is 1-homogeneous: rho < 1 inside, and depth along the ray is:
    depth = r * (1 / np.maximum(rho, _F32(1e-3)) - 1)
    # Fat thicker in front and on the flanks, thin over the spine. Muscle: the rectus pair in
    # front (split by the linea alba), the obliques on the flanks, thin at the back.
    ant, post, lat = np.maximum(-sin_t, 0), np.maximum(sin_t, 0), cos_t * cos_t
    fat = b["fat"] * (1 + b["fat_ant"] * ant + b["fat_lat"] * lat - 0.4 * post**4) * (1 + 0.2 * coarse)
    muscle = b["muscle"] * (0.3 + 0.9 * ant**6 * (np.abs(cos_t) > 0.035) + 0.9 * lat * (1 - post**2))
    inside = rho < 1
    wall = fat + muscle * (1 + 0.2 * coarse)
    return {"inside": inside, "depth": depth, "fat": fat, "cavity": inside & (depth > wall), "a": a}


def _paint_anatomy(c: _Canvas, case: PhantomCase, bd: dict, z: float) -> None:
    """Everything but the target organs, top to bottom of the body."""
    an, b = case.anatomy, case.body
    cx, cy, a_c, b_ca, b_cp = b["cx"], b["cy"], an["a_c"] * bd["a"] / b["a"], an["b_ca"], an["b_cp"]
    y_vb, r_vb = an["y_vb"], an["r_vb"]
    inside, cavity = bd["inside"], bd["cavity"]
    sides = (-1, 1)

    # Chest: lung bases (dark crescents against the back wall) and the heart (in front).
    s = _profile(z, -200, an["z_lung1"])
    for side in sides if s else ():
        c.shape("lung", cx + side * 0.62 * a_c, cy + 0.5 * b_cp, 0.5 * a_c * s, 0.8 * b_cp * s, clip=cavity)
    s = _profile(z, -200, an["z_heart1"])
    if s:
        c.shape("heart", cx + 0.1 * a_c, cy - 0.35 * b_ca, 0.45 * a_c * s, 0.6 * b_ca * s, clip=cavity)

    # Liver: the right lobe fills the image left, the left lobe crosses in front higher up.
    z0, z1 = an["z_liver0"], an["z_liver1"]
    lobe = min(1.0, 1.6 * _profile(z, z0, z1 + 0.6 * (z1 - z0)))
    if z < z1 and lobe:
        x = cx - a_c * (0.45 + 0.3 * (1 - lobe))
        c.shape("liver", x, cy + 0.1 * b_cp, 0.6 * a_c * lobe, 1.05 * b_ca * lobe, -0.35, cavity)
        s = _profile(z, z0, z0 + 0.75 * (z1 - z0))
        c.shape("liver", cx - 0.15 * a_c, cy - 0.55 * b_ca, 0.5 * a_c * s, 0.32 * b_ca * s, 0.2, cavity)
        liver = cavity & (np.abs(c.img - c.levels["liver"]) < 0.2)
        for vx, vy, vdx, vdy, vr, vz in case.vessels[: int(an["n_liver_vessels"])]:
            if vz < z < z1 - 0.15 * (z1 - z0):
                c.shape("vessel", vx + vdx * (z - vz), vy + vdy * (z - vz), vr, 0.8 * vr, clip=liver)
        s = _profile(z, z1 - 0.45 * (z1 - z0), z1 + 6) * an["gallbladder"]
        c.shape("fluid", cx - 0.3 * a_c, cy - 0.45 * b_ca, 14 * s, 18 * s, 0.5, cavity)

    s = _profile(z, an["z_spleen0"], an["z_spleen1"])  # spleen: image right, behind
    c.shape("spleen", cx + 0.7 * a_c, cy + 0.4 * b_cp, 0.24 * a_c * s, 0.6 * b_cp * s, 0.7, cavity)

    # Retroperitoneum: back muscles, psoas, kidneys, aorta and vena cava.
    for side in sides:
        c.shape("muscle", cx + side * (r_vb + 14), y_vb + r_vb + 22, 26, 24)
    if _profile(z, an["z_kid_l"] - 10, 2 * an["z_bladder"] - an["z_kid_l"]):
        grow = min(1.0, (z - an["z_kid_l"] + 10) / (an["z_ilium0"] - an["z_kid_l"] + 10))
        spread = max(0.0, (z - an["z_ilium0"]) * 0.25)
        for side in sides:
            x = cx + side * (r_vb + 8 + 10 * grow + spread)
            c.shape("muscle", x, y_vb - 6, 6 + 16 * grow, 6 + 12 * grow, clip=inside)
    for side, key in ((-1, "z_kid_r"), (1, "z_kid_l")):
        s = _profile(z, an[key] - an["kid_half"], an[key] + an["kid_half"])
        if s > 0.05:
            kx, ky, angle = cx + side * an["kid_x"], y_vb - 4, side * an["kid_angle"]
            ax, by = an["kid_ax"], an["kid_by"]
            c.shape("kidney", kx, ky, ax * s, by * s, angle)
            c.shape("medulla", kx, ky, 0.72 * ax * s, 0.62 * by * s, angle, wobble=0.4)
            if s > 0.7:  # sinus fat, opening to the hilum (medial, in front)
                c.shape("sinus", kx - side * 8, ky - 5, 9, 6, angle)
    aorta_x, aorta_y = cx + 0.3 * r_vb, y_vb - r_vb - 12
    if z < an["z_bif"]:
        c.shape("aorta", aorta_x, aorta_y, 10, 10, wobble=0.05)
        c.shape("ivc", aorta_x - 32, aorta_y + 2, 13, 9)
    else:  # iliac arteries and veins
        spread = min(45.0, 12 + (z - an["z_bif"]) * 0.35)
        for side in sides:
            c.shape("aorta", cx + side * spread, aorta_y + 4, 6, 6, wobble=0.05)
            c.shape("ivc", cx + side * (spread + 9), aorta_y + 8, 7, 6)

    # Spine: vertebral body (a disc every 33 mm), canal with bright CSF, spinous process.
    if z < an["z_sacrum"]:
        if (z - an["z_disc"]) % 33.0 < 7.0:
            c.shape("disc", cx, y_vb, 1.15 * r_vb, 0.95 * r_vb, wobble=0.04)
        else:
            c.bone(cx, y_vb, 1.15 * r_vb, 0.95 * r_vb)
            for side in sides:  # transverse processes
                c.bone(cx + side * (r_vb + 14), y_vb + 0.8 * r_vb, 14, 4, side * 0.3)
        canal_y = y_vb + r_vb + 10
        c.shape("cortex", cx, canal_y, 11, 10, wobble=0.04)
        c.shape("csf", cx, canal_y, 7.5, 7, wobble=0.04)
        if z < an["z_lb0"] + 0.1 * _SPAN_MM:
            c.shape("cord", cx, canal_y, 3.5, 3, wobble=0.0)
        c.bone(cx, y_vb + r_vb + 30, 4.5, 14)
    else:
        c.bone(cx, y_vb + 8, 2.3 * r_vb, 0.9 * r_vb)  # sacrum
        c.shape("csf", cx, y_vb + 10, 9, 5, wobble=0.04)

    # Ribs along the wall, upper abdomen.
    if z < an["z_kid_l"]:
        for angle in (-2.5, -0.64, 0.3, 0.9, 2.24, 2.84):
            ca, sa = math.cos(angle), math.sin(angle)
            reach = 1 / math.hypot(ca / bd["a"], sa / (b["b_ant"] if sa < 0 else b["b_post"]))
            reach -= b["fat"] + 0.5 * b["muscle"] + 4
            c.bone(cx + ca * reach, cy + sa * reach, 7, 5, angle + math.pi / 2)

    # Pelvis: gluteal and iliacus muscles, iliac wings, then the hips; bladder in front.
    if z > an["z_ilium0"]:
        grow = min(1.0, (z - an["z_ilium0"]) / 45)
        buttock = inside & (bd["depth"] > 0.8 * bd["fat"])
        for side in sides:
            x = cx + side * 0.6 * bd["a"]
            c.shape("muscle", x, y_vb + 28, 0.2 * bd["a"] * grow + 6, 30 * grow + 6, side * 0.7, buttock)
            wing_x = cx + side * (0.5 * a_c + 0.08 * a_c * grow)
            if z < an["z_femur"]:
                iliacus = (10 + 4 * grow, 12 + 22 * grow)
                c.shape("muscle", wing_x - side * 12, y_vb - 8, *iliacus, side * 0.45, cavity)
                c.bone(wing_x, y_vb - 2, 7, 12 + 28 * grow, side * 0.45, inside)
            else:
                hip_x, hip_y = cx + side * 0.58 * a_c, cy + 0.05 * b_cp
                c.shape("muscle", hip_x - side * 4, hip_y, 34, 32, clip=inside)
                c.bone(hip_x, hip_y, 22, 22, clip=inside)
    full = an["bladder"] * min(1.0, 1.5 * _profile(z, an["z_bladder"], an["z_bladder"] + 140))
    c.shape("bladder", cx, cy - 0.3 * b_ca + 0.5 * full, full, 0.8 * full, clip=cavity)
    if an["z_lb0"] < z < an["z_lb1"]:  # mesenteric vessels among the loops
        for vx, vy, vdx, vdy, vr, vz in case.vessels[int(an["n_liver_vessels"]) :]:
            dz = 0.3 * (z - vz)
            c.shape("vessel", vx + vdx * dz, vy + vdy * dz, vr, vr, clip=cavity & ~c.solid)


def _chain_field(g: _Grid, chain: Chain, z: float) -> tuple[Box, np.ndarray, np.ndarray, np.ndarray] | None:
    """Cut a sphere chain at z. Over the cut's bounding box: signed distance to the union
    of discs (mm, < 0 inside), the content of the nearest disc, and that disc's index."""
    dz = chain.points[:, 2] - z
    index = np.flatnonzero(np.abs(dz) < chain.radii)
    if not index.size:
        return None
    px, py = chain.points[index, 0], chain.points[index, 1]
    rr = np.sqrt(chain.radii[index] ** 2 - dz[index] ** 2)
    pad = 2.0
    box = _box(g, (px - rr).min() - pad, (px + rr).max() + pad, (py - rr).min() - pad, (py + rr).max() + pad)
    if box is None:
        return None
    xs, ys = g.xs[box[1]], g.ys[box[0]]
    field = np.full((len(ys), len(xs)), np.inf, dtype=_F32)
    level = np.zeros_like(field)
    owner = np.full(field.shape, -1, dtype=np.int32)
    c0, c1 = np.searchsorted(xs, px - rr - pad), np.searchsorted(xs, px + rr + pad)
    r0, r1 = np.searchsorted(ys, py - rr - pad), np.searchsorted(ys, py + rr + pad)
    for k in range(len(index)):  # one small box per disc
        if c1[k] <= c0[k] or r1[k] <= r0[k]:
            continue
        rows, cols = slice(r0[k], r1[k]), slice(c0[k], c1[k])
        d = np.sqrt((ys[rows, None] - py[k]) ** 2 + (xs[None, cols] - px[k]) ** 2) - rr[k]
        closer = d < field[rows, cols]
        field[rows, cols][closer] = d[closer]
        level[rows, cols][closer] = chain.content[index[k]]
        owner[rows, cols][closer] = index[k]
    return box, field, level, owner


def _paint_organ(c: _Canvas, name: str, box: Box, organ: np.ndarray, cut: tuple, case: PhantomCase) -> None:
    """Wall and lumen of one target organ over its box."""
    _, field, level, owner = cut
    lv, an = case.levels, case.anatomy
    fine, medium = c.tex["fine"][box], c.tex["medium"][box]
    if name == "stomach":
        wall = organ & (field > -an["st_wall"])
        # Rugae: thin winding lines (zero lines of smooth noise) of fluid between folds.
        rugae = np.exp(-(((medium + 0.3 * fine) / 0.15) ** 2))
        value = level * (1 + an["st_folds"] * fine) + an["st_rugae"] * (lv["fluid"] - level) * rugae
        lumen = organ & ~wall
        if an["st_gas"] and lumen.any():
            rows = np.flatnonzero(lumen.any(axis=1))
            surface = rows[0] + an["st_gas"] * (rows[-1] - rows[0] + 1)
            gas = lumen & (np.arange(lumen.shape[0])[:, None] < surface)
            value = np.where(gas, lv["gas"] * (1 + fine), value)
        wall_value = lv["st_wall"] * (1 + 0.3 * medium + 0.25 * fine)
    elif name == "small_bowel":
        # Where neighbouring pixels belong to spheres far apart along the chain, two loops
        # touch: draw a wall between them. Between consecutive spheres: a thin fold across
        # the lumen (valvulae conniventes).
        step_r, step_c = np.abs(np.diff(owner, axis=0)), np.abs(np.diff(owner, axis=1))
        loops, folds = np.zeros_like(organ), np.zeros_like(organ)
        loops[1:] |= step_r > 3
        loops[:-1] |= step_r > 3
        loops[:, 1:] |= step_c > 3
        loops[:, :-1] |= step_c > 3
        folds[1:] |= (step_r > 0) & (step_r <= 3)
        folds[:, 1:] |= (step_c > 0) & (step_c <= 3)
        wall = organ & ((field > -2.5) | loops)
        value = level * (1 + 0.25 * fine + 0.12 * medium) * np.where(folds, _F32(0.75), _F32(1.0))
        wall_value = lv["sb_wall"] * (1 + 0.2 * fine)
    else:  # stool: mottled, with small bright and dark bubbles
        wall = organ & (field > -2.0)
        value = level * (1 + 0.7 * fine + 0.3 * medium)
        wall_value = lv["lb_wall"] * (1 + 0.2 * fine)
    lumen = organ & ~wall
    sub = c.img[box]
    sub[lumen] = np.maximum(value[lumen], 0.0)
    sub[wall] = wall_value[wall]
    c.fat[box][organ] = 0.0


def _acquire(case: PhantomCase, g: _Grid, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (partial volume), gamma, coil bias, bSSFP banding, Rician noise -> uint16."""
    sc = case.scan
    signal = _blur(np.maximum(signal, 0.0), int(sc["blur"])) ** _F32(sc["gamma"])
    x, y = g.X / g.xs[-1], g.Y / g.ys[-1]
    bias = np.exp(sc["bx"] * x + sc["by"] * y + sc["bxx"] * x * x + sc["byy"] * y * y + sc["bxy"] * x * y)
    signal = signal * bias
    if sc["bands"]:  # off-resonance grows towards the edge of the field: dark arcs there
        r2 = (x / sc["band_x"]) ** 2 + (y / sc["band_y"]) ** 2
        phase = sc["bands"] * r2 * r2 + sc["band_tilt"] * (x + y)
        signal = signal * (1 - 0.6 * np.exp(-((((phase % 1.0) - 0.5) / 0.03) ** 2)))
    # Magnitude of complex Gaussian noise; the zero-filled reconstruction smooths it a little.
    sigma = _F32(sc["noise"])
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=_F32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=_F32)
    magnitude = np.sqrt(real * real + imag * imag)
    magnitude = 0.6 * magnitude + 0.4 * _blur(magnitude)
    return np.clip(np.rint(magnitude * _F32(sc["scale"])), 0, 65535).astype(np.uint16)


def render_slice(case: PhantomCase, z_index: int, rng: np.random.Generator) -> PhantomSlice:
    """Render slice ``z_index`` (0-based) of a case.

    Args:
        case: From :func:`make_case`.
        z_index: 0 <= z_index < case.n_slices; the slice lies at z = 3 mm * z_index.
        rng: Source of this slice's noise and fine texture; anatomy comes from the case.

    Returns:
        The slice: uint16 image, class-id mask, per-organ masks and names.

    Raises:
        ValueError: ``z_index`` is outside the scan.
    """
    if not 0 <= z_index < case.n_slices:
        raise ValueError(f"z_index {z_index} outside 0..{case.n_slices - 1}")
    g = _grid(case.width, case.height, *case.spacing_mm)
    z = z_index * SLICE_THICKNESS_MM
    lv = case.levels
    textures = {
        "coarse": _texture(case, z_index, 0),
        "medium": _texture(case, z_index, 1),
        "fine": _blur(rng.standard_normal((case.height, case.width), dtype=_F32)),
    }
    c = _Canvas(g, lv, textures)
    coarse, medium = textures["coarse"], textures["medium"]

    # Body wall (skin, subcutaneous fat, muscle), the cavity filled with visceral fat that
    # thin mesenteric strands cross (zero lines of a smooth noise field).
    bd = _body(case, g, z, coarse)
    inside, depth, cavity = bd["inside"], bd["depth"], bd["cavity"]
    skin, subcut = depth < 1.5, (depth >= 1.5) & (depth < bd["fat"])
    c.img[:] = np.where(skin, lv["skin"], np.where(subcut, lv["fat"] * (1 + 0.06 * medium), lv["muscle"]))
    strands = np.exp(-(((coarse + 0.5 * medium) / 0.07) ** 2))
    visceral = lv["visceral"] * (1 + 0.08 * medium + 0.08 * coarse - 0.3 * strands)
    c.img[cavity] = visceral[cavity]
    c.img[~inside] = 0.0
    c.fat[:] = inside & (subcut | cavity)

    _paint_anatomy(c, case, bd, z)

    # Target organs in id order, kept out of solid structures; a later one overwrites.
    mask = np.zeros(g.X.shape, dtype=np.uint8)
    drawn = {}
    allowed = cavity & ~c.solid
    for name in ORGANS:
        region = np.zeros(g.X.shape, dtype=bool)
        cut = _chain_field(g, getattr(case, name), z)
        if cut is not None:
            box, field = cut[0], cut[1]
            field += 1.5 * medium[box]  # uneven outlines
            organ = (field < 0) & allowed[box]
            if organ.any():
                region[box] = organ
                _paint_organ(c, name, box, organ, cut, case)
                # A thin fat plane separates the organ from the liver, spleen or fat around it
                # (not from an organ drawn before): it shows as a bright line with dark ink.
                plane = _dilate(organ) & ~organ & allowed[box] & (mask[box] == 0)
                c.img[box][plane] = lv["visceral"]
                c.fat[box][plane] = 1.0
        mask[region] = LABEL2ID[name]
        drawn[name] = region

    # India ink: bSSFP cancels the signal of voxels that mix fat and water.
    mixed = _blur(c.fat, 2)
    image16 = _acquire(case, g, c.img * (1 - case.scan["ink"] * 4 * mixed * (1 - mixed)), rng)

    organ_masks = {}
    for i, name in enumerate(ORGANS):
        own = mask == LABEL2ID[name]
        if case.overlap:  # keep a one-pixel rim under the later organs
            later = np.zeros_like(own)
            for other in ORGANS[i + 1 :]:
                later |= drawn[other]
            own |= drawn[name] & later & ~_erode(later)
        organ_masks[name] = own
    return PhantomSlice(
        image16=image16,
        mask=mask,
        organ_masks=organ_masks,
        spacing_mm=case.spacing_mm,
        case=case.case_id,
        day=case.day,
        slice_index=int(z_index) + 1,
    )


# --------------------------------------------------------------------------------------------
# Single slices and data sets


def _check_seed(seed: int) -> int:
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _case_rng(seed: int, case_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, case_id, 0xCA5E])


def _slice_rng(seed: int, case_id: int, day: int, z_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, case_id, day, z_index, 0x511CE])


def generate_slice(
    seed: int, *, size: tuple[int, int] | None = None, empty: bool | None = None
) -> PhantomSlice:
    """One phantom slice from its own case.

    Args:
        seed: Decides everything (>= 0); equal seeds give identical slices.
        size: (width, height), one of :data:`PROTOCOLS`; drawn when None.
        empty: True: a slice without any target organ; False: one with at least one
            organ pixel; None: any slice (about half are empty, as in the real data).

    Returns:
        The slice.

    Raises:
        ValueError: Negative seed or unknown size.
    """
    seed = _check_seed(seed)
    rng = np.random.default_rng([seed, 0x5EED])
    case_id, day = int(rng.integers(1, 160)), int(rng.integers(0, 40))
    case = make_case(rng, case_id=case_id, day=day, size=size)
    order = rng.permutation(case.n_slices).tolist()
    if empty is not None:  # try likely slices first (by the chains' z-ranges); rendering decides
        ranges = case.organ_z_ranges().values()
        hit = {k: any(lo < k * SLICE_THICKNESS_MM < hi for lo, hi in ranges) for k in order}
        order = [k for k in order if hit[k] != empty] + [k for k in order if hit[k] == empty]
    for z_index in order:
        result = render_slice(case, z_index, _slice_rng(seed, case_id, day, z_index))
        if empty is None or bool(result.mask.any()) != empty:
            return result
    raise RuntimeError(f"seed {seed}: no slice with empty={empty}")  # pragma: no cover


def dataset_slice(seed: int, case_id: int, day: int, slice_index: int) -> PhantomSlice:
    """The slice that :func:`generate_dataset` writes for this seed and name.

    Args:
        seed: The data set's seed.
        case_id: N of ``caseN``.
        day: D of ``dayD``.
        slice_index: SSSS of ``slice_SSSS`` (1-based).

    Returns:
        The slice, identical to the written one (image, masks, name).
    """
    seed = _check_seed(seed)
    if not 1 <= slice_index <= SLICES_PER_SCAN:
        raise ValueError(f"slice_index {slice_index} outside 1..{SLICES_PER_SCAN}")
    case = make_case(_case_rng(seed, case_id), case_id=case_id, day=day)
    return render_slice(case, slice_index - 1, _slice_rng(seed, case_id, day, slice_index - 1))


def _save_png(image: Image.Image, path: Path) -> None:
    """Write atomically: a temporary name in the same folder, then rename over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Job:
    """One case-day's share of a data set."""

    seed: int
    case_id: int
    day: int
    slices: tuple[int, ...]  # 0-based z indices
    split: str
    raw: bool


def _run_job(job: _Job, out: Path) -> tuple[list[list[str]], int, str]:
    """Render and write one job. Returns CSV rows (raw layout), empty slices, size WxH."""
    case = make_case(_case_rng(job.seed, job.case_id), case_id=job.case_id, day=job.day)
    rows: list[list[str]] = []
    empty = 0
    for z_index in job.slices:
        sl = render_slice(case, z_index, _slice_rng(job.seed, job.case_id, job.day, z_index))
        empty += not sl.mask.any()
        if job.raw:
            folder = out / "train" / f"case{sl.case}" / f"case{sl.case}_day{sl.day}" / "scans"
            folder.mkdir(parents=True, exist_ok=True)
            _save_png(Image.fromarray(sl.image16), folder / sl.file_name.split("_", 2)[2])
            rows += [[sl.id, name, rle_encode(sl.organ_masks[name])] for name in CSV_CLASSES]
        else:
            rgb = np.repeat(sl.image8[..., None], 3, axis=-1)
            _save_png(Image.fromarray(rgb, mode="RGB"), out / job.split / "images" / sl.file_name)
            _save_png(Image.fromarray(sl.mask, mode="L"), out / job.split / "masks" / sl.file_name)
    return rows, empty, f"{case.width}x{case.height}"


def _plan(seed: int, train: int, valid: int, raw: bool) -> list[_Job]:
    """Split the slice counts into case-day jobs. Each case has 1-3 days; valid cases are
    numbered after the train cases, so the splits share no patient."""
    rng = np.random.default_rng([seed, 0x91A])
    jobs: list[_Job] = []
    case_id = 0
    for split, left in (("train", train), ("valid", valid)):
        while left > 0:
            case_id += 1
            for day in sorted(rng.choice(40, size=int(rng.integers(1, 4)), replace=False).tolist()):
                if left <= 0:
                    break
                if raw:  # a run of consecutive slices somewhere in the scan
                    n = min(left, int(rng.integers(RAW_VOLUME_SLICES[0], RAW_VOLUME_SLICES[1] + 1)))
                    # Centred anywhere, then moved inside the scan: every slice about as likely.
                    start = min(max(int(rng.integers(0, SLICES_PER_SCAN)) - n // 2, 0), SLICES_PER_SCAN - n)
                    slices = tuple(range(start, start + n))
                else:  # slices anywhere in the scan
                    n = min(left, int(rng.integers(NOTEBOOK_CASE_SLICES[0], NOTEBOOK_CASE_SLICES[1] + 1)))
                    slices = tuple(sorted(rng.choice(SLICES_PER_SCAN, size=n, replace=False).tolist()))
                jobs.append(_Job(seed, case_id, int(day), slices, split, raw))
                left -= n
    return jobs


def _progress(total: int, enabled: bool) -> Callable[[int], None]:
    """A tqdm bar's update function, or a no-op without tqdm or when disabled."""
    if not enabled or total == 0:
        return lambda n: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return lambda n: None
    bar = tqdm(total=total, unit="slice", desc="phantom")

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def generate_dataset(
    out: Path | str,
    *,
    train: int,
    valid: int,
    seed: int,
    raw: bool = False,
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> dict:
    """Write a phantom data set in the notebook's layout or the competition's raw layout.

    Notebook layout (default): ``out/{train,valid}/{images,masks}/NAME`` with NAME
    ``caseN_dayD_slice_SSSS_W_H_PW_PH.png``; images 8-bit RGB with 3 equal channels
    (min-max scaled per image), masks mode L class ids. Each case-day gives 8-16
    slices from anywhere in its scan (about half without organs); train and valid
    come from disjoint cases.

    Raw layout (``raw=True``): ``out/train/caseN/caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png``,
    16-bit grayscale, 20-40 consecutive slices per case-day (the last run is cut short
    so that exactly ``train`` slices are written), and ``out/train.csv``
    (``id,class,segmentation``: 3 rows per slice, RLE of the per-organ masks).

    Args:
        out: Output folder; absent or empty unless ``overwrite``.
        train: Training slices (raw layout: all slices), >= 0.
        valid: Validation slices, >= 0; must be 0 for the raw layout.
        seed: >= 0; equal seeds give byte-identical files.
        raw: Write the raw competition layout.
        progress: Show a tqdm progress bar when tqdm is installed.
        workers: Processes to render with; the files do not depend on it.
        overwrite: In a non-empty ``out``, delete this generator's outputs (``train/``,
            ``valid/``, ``train.csv``) first; other files stay.

    Returns:
        Summary: ``out``, ``layout``, ``train``, ``valid``, ``train_cases`` and
        ``valid_cases`` (case ids), ``case_days``, ``empty_share``, ``sizes`` (slices per WxH).

    Raises:
        ValueError: Negative counts or seed, or ``valid`` > 0 with ``raw``.
        FileExistsError: ``out`` is not empty and ``overwrite`` is False.
    """
    out, seed = Path(out), _check_seed(seed)
    if train < 0 or valid < 0:
        raise ValueError(f"slice counts must be >= 0, got train={train}, valid={valid}")
    if raw and valid:
        raise ValueError("the raw layout has no validation split: use valid=0 and split by case later")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty")
        for name in ("train", "valid"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "train.csv").unlink(missing_ok=True)
    jobs = _plan(seed, train, valid, raw)
    out.mkdir(parents=True, exist_ok=True)
    for split in () if raw else ("train", "valid"):
        for kind in ("images", "masks"):
            (out / split / kind).mkdir(parents=True, exist_ok=True)

    # Render: each job's output depends only on (seed, case, day), never on the worker.
    update = _progress(train + valid, progress)
    results = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, result in zip(jobs, pool.map(_run_job, jobs, [out] * len(jobs))):
                results.append(result)
                update(len(job.slices))
    else:
        for job in jobs:
            results.append(_run_job(job, out))
            update(len(job.slices))

    if raw:
        tmp = out / f".train.csv.{os.getpid()}.tmp"
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["id", "class", "segmentation"])
            for rows, _, _ in results:
                writer.writerows(rows)
        os.replace(tmp, out / "train.csv")
    sizes: dict[str, int] = {}
    for job, (_, _, size) in zip(jobs, results):
        sizes[size] = sizes.get(size, 0) + len(job.slices)
    return {
        "out": str(out),
        "layout": "raw" if raw else "notebook",
        "train": train,
        "valid": valid,
        "train_cases": sorted({job.case_id for job in jobs if job.split == "train"}),
        "valid_cases": sorted({job.case_id for job in jobs if job.split == "valid"}),
        "case_days": len(jobs),
        "empty_share": sum(r[1] for r in results) / max(1, train + valid),
        "sizes": sizes,
    }


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segapp.phantom``: write a phantom data set. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m segapp.phantom",
        description="Write synthetic abdominal MRI slices with exact stomach and bowel masks.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    parser.add_argument(
        "--train", type=non_negative_int, required=True, help="training slices (raw layout: all slices)"
    )
    parser.add_argument(
        "--valid", type=non_negative_int, default=0, help="validation slices, from other cases (default 0)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed; equal seeds give equal files")
    parser.add_argument("--raw", action="store_true", help="competition layout: 16-bit scans and train.csv")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace train/, valid/, train.csv in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = generate_dataset(
            args.out,
            train=args.train,
            valid=args.valid,
            seed=args.seed,
            raw=args.raw,
            progress=not args.quiet,
            workers=max(1, args.workers),
            overwrite=args.overwrite,
        )
    except FileExistsError as exc:
        print(f"error: {exc}; pass --overwrite to replace its train/, valid/ and train.csv", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{size}: {count}" for size, count in sorted(summary["sizes"].items()))
    print(
        f"wrote {summary['train']} train + {summary['valid']} valid slices ({summary['layout']} layout) "
        f"to {summary['out']}: {summary['empty_share']:.0%} without organs; sizes {sizes}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
