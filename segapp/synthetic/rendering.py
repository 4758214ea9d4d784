"""Rendering one slice of a case: painting the anatomy cut at z, then the acquisition
(partial volume, gamma, coil bias, banding, Rician noise): :func:`render_slice`.

Masks: the class-id mask holds one id per pixel. Organs are drawn in id order (stomach,
small bowel, large bowel) and a later organ overwrites an earlier one, in the image and
the mask alike: on overlap the higher id wins. The per-organ masks
(``PhantomSlice.organ_masks``) are the drawn regions; in cases with ``overlap`` they keep
a one-pixel rim under the later organ where organs touch, as the real annotations
sometimes overlap. Either way ``mask`` is the highest id whose organ mask holds the pixel
(0 where none does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segapp.io.image import minmax_uint8
from segapp.labels import LABEL2ID
from segapp.synthetic.anatomy import ORGANS, SLICE_THICKNESS_MM, SPAN_MM, Chain, Levels, PhantomCase
from segapp.synthetic.geometry import (
    F32,
    Box,
    Grid,
    blur,
    box_of,
    dilate,
    ellipsoid_profile,
    erode,
    pixel_grid,
    upsample,
)


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
        style: The case's contrast family (:data:`segapp.synthetic.STYLES`).
    """

    image16: np.ndarray
    mask: np.ndarray
    organ_masks: dict[str, np.ndarray]
    spacing_mm: tuple[float, float]
    case: int
    day: int
    slice_index: int
    style: str = "bssfp"

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


# --------------------------------------------------------------------------------------------
# Tissues and the canvas


@dataclass(frozen=True)
class _Tissue:
    texture: str | None  # "coarse", "medium" or "fine": which texture modulates the signal
    amplitude: float  # relative modulation by that texture
    fat: float  # fat share: drives the India-ink lines
    solid: bool  # solid structures (bone, retroperitoneum, bladder) keep the bowel out


# Every name here is also a field or property of Levels (a test checks it).
_TISSUES: dict[str, _Tissue] = {
    "lung": _Tissue("fine", 0.6, 0.0, False),
    "heart": _Tissue("medium", 0.25, 0.0, False),
    "liver": _Tissue("medium", 0.1, 0.0, False),
    "spleen": _Tissue("medium", 0.1, 0.0, False),
    "muscle": _Tissue("medium", 0.15, 0.0, True),
    "kidney": _Tissue("medium", 0.12, 0.0, True),
    "medulla": _Tissue("medium", 0.3, 0.0, True),
    "pancreas": _Tissue("fine", 0.35, 0.0, True),
    "sinus": _Tissue(None, 0.0, 1.0, True),
    "marrow": _Tissue("medium", 0.15, 1.0, True),
    "cortex": _Tissue(None, 0.0, 0.0, True),
    "disc": _Tissue("medium", 0.1, 0.0, True),
    "csf": _Tissue(None, 0.0, 0.0, True),
    "cord": _Tissue(None, 0.0, 0.0, True),
    "aorta": _Tissue(None, 0.0, 0.0, True),
    "ivc": _Tissue(None, 0.0, 0.0, True),
    "vessel": _Tissue(None, 0.0, 0.0, False),
    "fluid": _Tissue(None, 0.0, 0.0, False),
    "bladder": _Tissue(None, 0.0, 0.0, True),
}


@dataclass(frozen=True)
class _Textures:
    """Smooth noise fields of one slice, (H, W) float32, about unit spread."""

    coarse: np.ndarray  # organ scale, from the case: coherent along z
    medium: np.ndarray  # parenchyma scale, from the case: coherent along z
    fine: np.ndarray  # pixel scale, this slice's own


class _Canvas:
    """Signal, fat and solid maps of one slice, painted structure by structure."""

    def __init__(self, g: Grid, levels: Levels, textures: _Textures) -> None:
        self.g, self.levels, self.tex = g, levels, textures
        self.img = np.zeros(g.X.shape, dtype=F32)
        self.fat = np.zeros(g.X.shape, dtype=F32)
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
        box = box_of(self.g, x - reach, x + reach, y - reach, y + reach)
        if box is None:
            return
        dx = (self.g.xs[box[1]] - x)[None, :]
        dy = (self.g.ys[box[0]] - y)[:, None]
        cos, sin = math.cos(angle), math.sin(angle)
        q = ((dx * cos + dy * sin) / ax) ** 2 + ((dy * cos - dx * sin) / by) ** 2
        inside = q * (1 + wobble * self.tex.coarse[box]) < 1
        if clip is not None:
            inside &= clip[box]
        kind = _TISSUES[tissue]
        value: float = getattr(self.levels, tissue)
        if kind.amplitude and kind.texture:
            texture = getattr(self.tex, kind.texture)[box][inside]
            self.img[box][inside] = value * (1 + kind.amplitude * texture)
        else:
            self.img[box][inside] = value
        self.fat[box][inside] = kind.fat
        if kind.solid:
            self.solid[box][inside] = True

    def bone(
        self, x: float, y: float, ax: float, by: float, angle: float = 0.0, clip: np.ndarray | None = None
    ) -> None:
        """Dark cortex around fatty marrow."""
        shell = min(2.5, 0.3 * min(ax, by))
        self.shape("cortex", x, y, ax, by, angle, clip, wobble=0.04)
        self.shape("marrow", x, y, ax - shell, by - shell, angle, clip, wobble=0.04)


def _case_texture(case: PhantomCase, z_index: int, which: int) -> np.ndarray:
    """Smooth noise (H, W), about unit spread, interpolated between the case's z-knots."""
    volume = case.texture[which]
    pos = z_index / (4, 2)[which]
    k = min(int(pos), len(volume) - 2)
    w = F32(pos - k)
    return upsample(volume[k] * (1 - w) + volume[k + 1] * w, case.width, case.height)


# --------------------------------------------------------------------------------------------
# The body and everything but the target organs


@dataclass(frozen=True)
class _BodyCut:
    """The body at one z: (H, W) maps and the outline's half-width there."""

    inside: np.ndarray  # bool: inside the skin
    depth: np.ndarray  # float32 mm below the skin (along the ray from the centre)
    fat: np.ndarray  # float32 subcutaneous fat thickness (mm) along each ray
    cavity: np.ndarray  # bool: inside fat and muscle
    a: float  # half-width at this z (mm)


@dataclass(frozen=True)
class _Frame:
    """The cavity at one z, in mm: what the painters place structures by."""

    cx: float
    cy: float
    a_c: float  # half-width (follows the body's half-width along z)
    b_ca: float  # front half-height
    b_cp: float  # back half-height
    y_vb: float  # vertebral bodies' centre y
    r_vb: float  # vertebral bodies' radius


def _cut_body(case: PhantomCase, g: Grid, z: float, coarse: np.ndarray) -> _BodyCut:
    """Body outline at z: depth below the skin, the wall layers, the cavity."""
    b = case.body
    t = z / SPAN_MM
    # Slow changes along z: a waist, wider hips.
    a = b.a * (1 + b.z_amp * math.sin(2 * math.pi * t + b.z_phase) + 0.06 * max(0.0, t - 0.78) / 0.22)
    b_ant = b.b_ant * (1 + 0.5 * b.z_amp * math.sin(3 * t + b.z_phase))
    b_post, p = b.b_post, b.p_post
    dx, dy = g.X - b.cx, g.Y - b.cy
    u = np.abs(dx) / a
    rho = np.where(dy < 0, np.hypot(u, dy / b_ant), (u**p + np.abs(dy / b_post) ** p) ** (1 / p))
    r = np.hypot(dx, dy) + F32(1e-3)
    cos_t, sin_t = dx / r, dy / r
    e = (cos_t + 1j * sin_t).astype(np.complex64)
    ek, lobes = e * e, np.zeros_like(rho)
    for height, phase in b.lobes:  # harmonics 2, 3, ... of the angle, as complex powers
        lobes += height * np.real(ek * complex(math.cos(phase), math.sin(phase)))
        ek = ek * e
    rho = rho / (1 + lobes)  # rho is 1-homogeneous: rho < 1 inside, and depth along the ray is:
    depth = r * (1 / np.maximum(rho, F32(1e-3)) - 1)
    # Fat thicker in front and on the flanks, thin over the spine. Muscle: the rectus pair in
    # front (split by the linea alba), the obliques on the flanks, thin at the back.
    ant, post, lat = np.maximum(-sin_t, 0), np.maximum(sin_t, 0), cos_t * cos_t
    fat = b.fat * (1 + b.fat_ant * ant + b.fat_lat * lat - 0.4 * post**4) * (1 + 0.2 * coarse)
    muscle = b.muscle * (0.3 + 0.9 * ant**6 * (np.abs(cos_t) > 0.035) + 0.9 * lat * (1 - post**2))
    inside = rho < 1
    wall = fat + muscle * (1 + 0.2 * coarse)
    return _BodyCut(inside=inside, depth=depth, fat=fat, cavity=inside & (depth > wall), a=a)


def _paint_wall_and_cavity(c: _Canvas, cut: _BodyCut) -> None:
    """Body wall (skin, subcutaneous fat, muscle), the cavity filled with visceral fat that
    thin mesenteric strands cross (zero lines of a smooth noise field); air outside."""
    lv, coarse, medium = c.levels, c.tex.coarse, c.tex.medium
    skin, subcut = cut.depth < 1.5, (cut.depth >= 1.5) & (cut.depth < cut.fat)
    c.img[:] = np.where(skin, lv.skin, np.where(subcut, lv.fat * (1 + 0.06 * medium), lv.muscle))
    strands = np.exp(-(((coarse + 0.5 * medium) / 0.07) ** 2))
    visceral = lv.visceral * (1 + 0.08 * medium + 0.08 * coarse - 0.3 * strands)
    c.img[cut.cavity] = visceral[cut.cavity]
    c.img[~cut.inside] = 0.0
    c.fat[:] = cut.inside & (subcut | cut.cavity)


_SIDES = (-1, 1)  # image left (the patient's right), image right


def _paint_arms(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """The arms beside the body (when the case has them down): skin, a bright rim of fat,
    muscle, and the humerus (radius and ulna below the elbow); the field may cut them."""
    b = case.body
    if not b.arms:
        return
    t = z / SPAN_MM
    swell = 1 + 0.06 * math.sin(2 * math.pi * t + b.z_phase)  # the arm's calibre along z
    ax, by = b.arm_ax * swell, b.arm_by * swell
    outside = ~cut.inside
    for side in _SIDES:
        x, y = b.cx + side * (cut.a + b.arm_gap + ax), b.cy + b.arm_dy
        reach = max(ax, by)
        box = box_of(c.g, x - reach, x + reach, y - reach, y + reach)
        if box is None:
            continue
        dx, dy = (c.g.xs[box[1]] - x)[None, :] / ax, (c.g.ys[box[0]] - y)[:, None] / by
        rho = np.sqrt(dx * dx + dy * dy) * (1 + 0.03 * c.tex.coarse[box])
        depth = (1 - rho) * min(ax, by)  # mm below the arm's skin, about
        arm = (rho < 1) & outside[box]
        fat = arm & (depth >= 1.5) & (depth < b.arm_fat)
        sub = c.img[box]
        sub[arm] = c.levels.skin
        sub[fat] = c.levels.fat * (1 + 0.06 * c.tex.medium[box][fat])
        muscle = arm & (depth >= b.arm_fat)
        sub[muscle] = c.levels.muscle * (1 + 0.15 * c.tex.medium[box][muscle])
        c.fat[box][fat] = 1.0
        if t < 0.55:  # the upper arm: one bone, behind the middle
            c.bone(x - side * 0.1 * ax, y + 0.15 * by, 0.3 * ax, 0.3 * ax)
        else:  # the forearm: radius and ulna
            for k in (-1, 1):
                c.bone(x + k * 0.3 * ax, y + 0.1 * by, 0.2 * ax, 0.2 * ax)


def _paint_pancreas(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """The pancreas across the spine: head (image left, lowest) in front of the vena cava,
    body in front of the aorta, tail rising to the spleen; lobulated, bowel-sized."""
    an = case.layout
    r, h = an.pancreas_r, 1.8 * an.pancreas_r
    if not an.z_pancreas - 25 - h < z < an.z_pancreas + h:
        return
    front = f.y_vb - f.r_vb - 32
    for t in np.linspace(0.0, 1.0, 9).tolist():
        zc = an.z_pancreas - 25 * t
        s = ellipsoid_profile(z, zc - h, zc + h)
        if s:
            x = f.cx + f.a_c * (-0.28 + 0.85 * t)
            y = front - 8 * math.sin(math.pi * t) + 22 * max(0.0, t - 0.6)
            rr = r * s * (1.25 - 0.45 * t)
            c.shape("pancreas", x, y, 1.2 * rr, rr, 0.3 * t, cut.cavity, wobble=0.3)


def _paint_chest(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Lung bases (dark crescents against the back wall) and the heart (in front)."""
    s = ellipsoid_profile(z, -200, case.layout.z_lung_base)
    for side in _SIDES if s else ():
        c.shape("lung", f.cx + side * 0.62 * f.a_c, f.cy + 0.5 * f.b_cp, 0.5 * f.a_c * s, 0.8 * f.b_cp * s,
                clip=cut.cavity)
    s = ellipsoid_profile(z, -200, case.layout.z_heart_base)
    if s:
        c.shape("heart", f.cx + 0.1 * f.a_c, f.cy - 0.35 * f.b_ca, 0.45 * f.a_c * s, 0.6 * f.b_ca * s,
                clip=cut.cavity)


def _paint_liver(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """The right lobe fills the image left, the left lobe crosses in front higher up; veins
    inside, the gallbladder below."""
    z0, z1, cavity = case.layout.z_liver0, case.layout.z_liver1, cut.cavity
    lobe = min(1.0, 2.4 * ellipsoid_profile(z, z0, z1 + 0.6 * (z1 - z0)))
    if not (z < z1 and lobe):
        return
    # The right lobe fills most of the image's left half under the diaphragm, less lower down.
    upper = max(0.0, 1 - (z - z0) / (0.6 * (z1 - z0)))
    x = f.cx - f.a_c * (0.42 + 0.3 * (1 - lobe) - 0.12 * upper)
    ax, by = f.a_c * lobe * (0.6 + 0.12 * upper), f.b_ca * lobe * (1.05 + 0.1 * upper)
    c.shape("liver", x, f.cy + 0.1 * f.b_cp, ax, by, -0.35, cavity)
    s = ellipsoid_profile(z, z0, z0 + 0.75 * (z1 - z0))
    x, y = f.cx - 0.15 * f.a_c, f.cy - 0.55 * f.b_ca  # the left lobe, shorter along z
    c.shape("liver", x, y, 0.5 * f.a_c * s, 0.32 * f.b_ca * s, 0.2, cavity)
    liver = cavity & (np.abs(c.img - c.levels.liver) < 0.2)
    for vx, vy, vdx, vdy, vr, vz in case.liver_vessels:
        if vz < z < z1 - 0.15 * (z1 - z0):
            c.shape("vessel", vx + vdx * (z - vz), vy + vdy * (z - vz), vr, 0.8 * vr, clip=liver)
    if case.layout.gallbladder:
        s = ellipsoid_profile(z, z1 - 0.45 * (z1 - z0), z1 + 6)
        c.shape("fluid", f.cx - 0.3 * f.a_c, f.cy - 0.45 * f.b_ca, 14 * s, 18 * s, 0.5, cavity)


def _paint_spleen(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Image right, behind."""
    s = ellipsoid_profile(z, case.layout.z_spleen0, case.layout.z_spleen1)
    x, y = f.cx + 0.7 * f.a_c, f.cy + 0.4 * f.b_cp
    c.shape("spleen", x, y, 0.24 * f.a_c * s, 0.6 * f.b_cp * s, 0.7, cut.cavity)


def _paint_back_muscles(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """The muscles beside the spine, and the psoas pair, growing and parting towards the pelvis."""
    an = case.layout
    for side in _SIDES:
        c.shape("muscle", f.cx + side * (f.r_vb + 14), f.y_vb + f.r_vb + 22, 26, 24)
    z_top = an.kidneys.z_left
    if ellipsoid_profile(z, z_top - 10, 2 * an.z_bladder - z_top):
        grow = min(1.0, (z - z_top + 10) / (an.z_ilium - z_top + 10))
        spread = max(0.0, (z - an.z_ilium) * 0.25)
        for side in _SIDES:
            x = f.cx + side * (f.r_vb + 8 + 10 * grow + spread)
            c.shape("muscle", x, f.y_vb - 6, 6 + 16 * grow, 6 + 12 * grow, clip=cut.inside)


def _paint_kidneys(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Cortex, medulla and, through the middle, sinus fat opening to the hilum."""
    k = case.layout.kidneys
    for side, z_centre in ((-1, k.z_right), (1, k.z_left)):
        s = ellipsoid_profile(z, z_centre - k.half_length, z_centre + k.half_length)
        if s > 0.05:
            kx, ky, angle = f.cx + side * k.x, f.y_vb - 4, side * k.angle
            c.shape("kidney", kx, ky, k.ax * s, k.by * s, angle)
            c.shape("medulla", kx, ky, 0.72 * k.ax * s, 0.62 * k.by * s, angle, wobble=0.4)
            if s > 0.7:  # sinus fat, opening to the hilum (medial, in front)
                c.shape("sinus", kx - side * 8, ky - 5, 9, 6, angle)


def _paint_great_vessels(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Aorta and vena cava in front of the spine; below the bifurcation the iliac pairs."""
    aorta_x, aorta_y = f.cx + 0.3 * f.r_vb, f.y_vb - f.r_vb - 12
    z_bif = case.layout.z_bifurcation
    if z < z_bif:
        c.shape("aorta", aorta_x, aorta_y, 10, 10, wobble=0.05)
        c.shape("ivc", aorta_x - 32, aorta_y + 2, 13, 9)
    else:
        spread = min(45.0, 12 + (z - z_bif) * 0.35)
        for side in _SIDES:
            c.shape("aorta", f.cx + side * spread, aorta_y + 4, 6, 6, wobble=0.05)
            c.shape("ivc", f.cx + side * (spread + 9), aorta_y + 8, 7, 6)


def _paint_spine(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Vertebral body (a disc every 33 mm), canal with bright CSF, spinous process; the
    sacrum lower down."""
    an, cx, y_vb, r_vb = case.layout, f.cx, f.y_vb, f.r_vb
    if z >= an.z_sacrum:
        c.bone(cx, y_vb + 8, 2.3 * r_vb, 0.9 * r_vb)
        c.shape("csf", cx, y_vb + 10, 9, 5, wobble=0.04)
        return
    if (z - an.disc_phase) % 33.0 < 7.0:
        c.shape("disc", cx, y_vb, 1.15 * r_vb, 0.95 * r_vb, wobble=0.04)
    else:
        c.bone(cx, y_vb, 1.15 * r_vb, 0.95 * r_vb)
        for side in _SIDES:  # transverse processes
            c.bone(cx + side * (r_vb + 14), y_vb + 0.8 * r_vb, 14, 4, side * 0.3)
    canal_y = y_vb + r_vb + 10
    c.shape("cortex", cx, canal_y, 11, 10, wobble=0.04)
    c.shape("csf", cx, canal_y, 7.5, 7, wobble=0.04)
    if z < an.z_colon0 + 0.1 * SPAN_MM:
        c.shape("cord", cx, canal_y, 3.5, 3, wobble=0.0)
    c.bone(cx, y_vb + r_vb + 30, 4.5, 14)


def _paint_ribs(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Ribs along the wall, upper abdomen."""
    if z >= case.layout.kidneys.z_left:
        return
    b = case.body
    for angle in (-2.5, -0.64, 0.3, 0.9, 2.24, 2.84):
        ca, sa = math.cos(angle), math.sin(angle)
        reach = 1 / math.hypot(ca / cut.a, sa / (b.b_ant if sa < 0 else b.b_post))
        reach -= b.fat + 0.5 * b.muscle + 4
        c.bone(f.cx + ca * reach, f.cy + sa * reach, 7, 5, angle + math.pi / 2)


def _paint_pelvis(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Gluteal and iliacus muscles, iliac wings, then the hips."""
    an = case.layout
    if z <= an.z_ilium:
        return
    grow = min(1.0, (z - an.z_ilium) / 45)
    buttock = cut.inside & (cut.depth > 0.8 * cut.fat)
    for side in _SIDES:
        x = f.cx + side * 0.6 * cut.a
        c.shape("muscle", x, f.y_vb + 28, 0.2 * cut.a * grow + 6, 30 * grow + 6, side * 0.7, buttock)
        wing_x = f.cx + side * (0.5 * f.a_c + 0.08 * f.a_c * grow)
        if z < an.z_femur:
            iliacus = (10 + 4 * grow, 12 + 22 * grow)
            c.shape("muscle", wing_x - side * 12, f.y_vb - 8, *iliacus, side * 0.45, cut.cavity)
            c.bone(wing_x, f.y_vb - 2, 7, 12 + 28 * grow, side * 0.45, cut.inside)
        else:
            hip_x, hip_y = f.cx + side * 0.58 * f.a_c, f.cy + 0.05 * f.b_cp
            c.shape("muscle", hip_x - side * 4, hip_y, 34, 32, clip=cut.inside)
            c.bone(hip_x, hip_y, 22, 22, clip=cut.inside)


def _paint_bladder(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """In front, filling from its top down."""
    an = case.layout
    full = an.bladder_half_width * min(1.0, 1.5 * ellipsoid_profile(z, an.z_bladder, an.z_bladder + 140))
    c.shape("bladder", f.cx, f.cy - 0.3 * f.b_ca + 0.5 * full, full, 0.8 * full, clip=cut.cavity)


def _paint_mesenteric_vessels(c: _Canvas, case: PhantomCase, f: _Frame, cut: _BodyCut, z: float) -> None:
    """Vessels among the loops, kept out of solid structures."""
    if not case.layout.z_colon0 < z < case.layout.z_colon1:
        return
    for vx, vy, vdx, vdy, vr, vz in case.mesenteric_vessels:
        dz = 0.3 * (z - vz)
        c.shape("vessel", vx + vdx * dz, vy + vdy * dz, vr, vr, clip=cut.cavity & ~c.solid)


# Everything but the target organs, top to bottom of the body; a later one paints over.
_PAINTERS = (
    _paint_arms,
    _paint_chest,
    _paint_liver,
    _paint_spleen,
    _paint_pancreas,
    _paint_back_muscles,
    _paint_kidneys,
    _paint_great_vessels,
    _paint_spine,
    _paint_ribs,
    _paint_pelvis,
    _paint_bladder,
    _paint_mesenteric_vessels,
)


# --------------------------------------------------------------------------------------------
# The target organs


_Cut = tuple[Box, np.ndarray, np.ndarray, np.ndarray]


def _cut_chain(g: Grid, chain: Chain, z: float) -> _Cut | None:
    """Cut a sphere chain at z. Over the cut's bounding box: signed distance to the union
    of discs (mm, < 0 inside), the content of the nearest disc, and that disc's index."""
    dz = chain.points[:, 2] - z
    index = np.flatnonzero(np.abs(dz) < chain.radii)
    if not index.size:
        return None
    px, py = chain.points[index, 0], chain.points[index, 1]
    rr = np.sqrt(chain.radii[index] ** 2 - dz[index] ** 2)
    pad = 2.0
    x0, x1 = (px - rr).min() - pad, (px + rr).max() + pad
    box = box_of(g, x0, x1, (py - rr).min() - pad, (py + rr).max() + pad)
    if box is None:
        return None
    xs, ys = g.xs[box[1]], g.ys[box[0]]
    field = np.full((len(ys), len(xs)), np.inf, dtype=F32)
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


# An organ's look over its box: (wall mask, lumen value, wall value), (h, w) arrays.
_Look = tuple[np.ndarray, np.ndarray, np.ndarray]


def _stomach_look(c: _Canvas, case: PhantomCase, box: Box, organ: np.ndarray, cut: _Cut) -> _Look:
    """Thick wall; content mottled, with rugae; gas above a flat fluid level."""
    _, field, level, _ = cut
    lv, look = case.levels, case.stomach_look
    fine, medium = c.tex.fine[box], c.tex.medium[box]
    wall = organ & (field > -look.wall_mm)
    # Rugae: thin winding lines (zero lines of smooth noise) of fluid between folds.
    rugae = np.exp(-(((medium + 0.3 * fine) / 0.15) ** 2))
    value = level * (1 + look.folds * fine) + look.rugae * (lv.fluid - level) * rugae
    lumen = organ & ~wall
    if look.gas_share and lumen.any():
        rows = np.flatnonzero(lumen.any(axis=1))
        surface = rows[0] + look.gas_share * (rows[-1] - rows[0] + 1)
        gas = lumen & (np.arange(lumen.shape[0])[:, None] < surface)
        value = np.where(gas, lv.gas * (1 + fine), value)
    return wall, value, lv.st_wall * (1 + 0.3 * medium + 0.25 * fine)


def _small_bowel_look(c: _Canvas, case: PhantomCase, box: Box, organ: np.ndarray, cut: _Cut) -> _Look:
    """Where neighbouring pixels belong to spheres far apart along the chain, two loops
    touch: a wall between them. Between consecutive spheres: a thin fold across the lumen
    (valvulae conniventes)."""
    _, field, level, owner = cut
    fine, medium = c.tex.fine[box], c.tex.medium[box]
    step_r, step_c = np.abs(np.diff(owner, axis=0)), np.abs(np.diff(owner, axis=1))
    loops, folds = np.zeros_like(organ), np.zeros_like(organ)
    loops[1:] |= step_r > 3
    loops[:-1] |= step_r > 3
    loops[:, 1:] |= step_c > 3
    loops[:, :-1] |= step_c > 3
    folds[1:] |= (step_r > 0) & (step_r <= 3)
    folds[:, 1:] |= (step_c > 0) & (step_c <= 3)
    wall = organ & ((field > -2.5) | loops)
    value = level * (1 + 0.25 * fine + 0.12 * medium) * np.where(folds, F32(0.75), F32(1.0))
    return wall, value, case.levels.sb_wall * (1 + 0.2 * fine)


def _large_bowel_look(c: _Canvas, case: PhantomCase, box: Box, organ: np.ndarray, cut: _Cut) -> _Look:
    """Thin wall; stool mottled, with small dark gas bubbles."""
    _, field, level, _ = cut
    fine, medium = c.tex.fine[box], c.tex.medium[box]
    wall = organ & (field > -2.0)
    value = level * (1 + 0.7 * fine + 0.3 * medium)
    bubbles = (fine > 0.75) & (level > 2 * case.levels.gas)  # the fine texture's top 2 %
    value = np.where(bubbles, case.levels.gas, value)
    return wall, value, case.levels.lb_wall * (1 + 0.2 * fine)


_LOOKS = {"stomach": _stomach_look, "small_bowel": _small_bowel_look, "large_bowel": _large_bowel_look}


def _paint_organ(c: _Canvas, name: str, box: Box, organ: np.ndarray, cut: _Cut, case: PhantomCase) -> None:
    """Wall and lumen of one target organ over its box; no fat inside (no ink lines)."""
    wall, value, wall_value = _LOOKS[name](c, case, box, organ, cut)
    lumen = organ & ~wall
    sub = c.img[box]
    sub[lumen] = np.maximum(value[lumen], 0.0)
    sub[wall] = wall_value[wall]
    c.fat[box][organ] = 0.0


def _paint_target_organs(c: _Canvas, case: PhantomCase, cut: _BodyCut, z: float) -> dict[str, np.ndarray]:
    """The target organs in id order, kept out of solid structures; a later one overwrites.
    Returns each organ's drawn region, (H, W) bool (before any later organ overwrote it)."""
    g, medium = c.g, c.tex.medium
    mask = np.zeros(g.X.shape, dtype=np.uint8)
    drawn = {}
    allowed = cut.cavity & ~c.solid
    for name in ORGANS:
        region = np.zeros(g.X.shape, dtype=bool)
        chain_cut = _cut_chain(g, getattr(case, name), z)
        if chain_cut is not None:
            box, field = chain_cut[0], chain_cut[1]
            field += 1.5 * medium[box]  # uneven outlines
            organ = (field < 0) & allowed[box]
            if organ.any():
                region[box] = organ
                _paint_organ(c, name, box, organ, chain_cut, case)
                # A thin fat plane separates the organ from the liver, spleen or fat around it
                # (not from an organ drawn before): it shows as a bright line with dark ink.
                plane = dilate(organ) & ~organ & allowed[box] & (mask[box] == 0)
                c.img[box][plane] = c.levels.visceral
                c.fat[box][plane] = 1.0
        mask[region] = LABEL2ID[name]
        drawn[name] = region
    return drawn


def _masks(drawn: dict[str, np.ndarray], overlap: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(class-id mask (H, W) uint8, per-organ masks) from the drawn regions: the highest id
    wins; with ``overlap`` an organ keeps a one-pixel rim under the later organs."""
    mask = np.zeros(drawn[ORGANS[0]].shape, dtype=np.uint8)
    for name in ORGANS:
        mask[drawn[name]] = LABEL2ID[name]
    organ_masks = {}
    for i, name in enumerate(ORGANS):
        own = mask == LABEL2ID[name]
        if overlap:
            later = np.zeros_like(own)
            for other in ORGANS[i + 1 :]:
                later |= drawn[other]
            own |= drawn[name] & later & ~erode(later)
        organ_masks[name] = own
    return mask, organ_masks


# --------------------------------------------------------------------------------------------
# Acquisition and the slice


def _coil_gain(case: PhantomCase, g: Grid) -> np.ndarray:
    """(H, 1) float32 gain of the front and back surface coils: highest at the body's front
    and back, falling off over ``coil_mm`` into it; 1 in the middle, about."""
    sc, b = case.scanner, case.body
    ys = g.ys[:, None]
    front = np.exp(-np.abs(ys - (b.cy - b.b_ant)) / F32(sc.coil_mm))
    back = np.exp(-np.abs(ys - (b.cy + b.b_post)) / F32(sc.coil_mm))
    return (1 + sc.coil * (front + sc.coil_post * back)).astype(F32)


def _acquire(case: PhantomCase, g: Grid, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (partial volume), gamma, coil bias, bSSFP banding, motion ghosts, Rician noise
    -> (H, W) uint16."""
    sc = case.scanner
    signal = blur(np.maximum(signal, 0.0), sc.blur_passes) ** F32(sc.gamma)
    x, y = g.X / g.xs[-1], g.Y / g.ys[-1]
    bias = np.exp(sc.bx * x + sc.by * y + sc.bxx * x * x + sc.byy * y * y + sc.bxy * x * y)
    signal = signal * bias * _coil_gain(case, g)
    if sc.bands:  # off-resonance grows towards the edge of the field: dark arcs there
        r2 = (x / sc.band_x) ** 2 + (y / sc.band_y) ** 2
        phase = sc.bands * r2 * r2 + sc.band_tilt * (x + y)
        signal = signal * (1 - 0.6 * np.exp(-((((phase % 1.0) - 0.5) / 0.03) ** 2)))
    if sc.ghost:  # breathing: faint copies along the phase axis, wrapping around the field
        axis = 0 if sc.ghost_rows else 1
        step = int(round(sc.ghost_step * signal.shape[axis]))
        signal = signal + F32(0.5 * sc.ghost) * (np.roll(signal, step, axis) + np.roll(signal, -step, axis))
    # Magnitude of complex Gaussian noise; the zero-filled reconstruction smooths it a little.
    sigma = F32(sc.noise)
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=F32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=F32)
    magnitude = np.sqrt(real * real + imag * imag)
    magnitude = 0.6 * magnitude + 0.4 * blur(magnitude)
    return np.clip(np.rint(magnitude * F32(sc.scale)), 0, 65535).astype(np.uint16)


def _chemical_shift(signal: np.ndarray, fat: np.ndarray, shift: int) -> np.ndarray:
    """Fat's signal moved ``shift`` pixels along the columns (the frequency axis): a dark gap
    on one side of each fat-water edge, a bright overlap on the other."""
    if not shift:
        return signal
    fat_signal = signal * fat
    out = signal - fat_signal
    out[:, shift:] += fat_signal[:, :-shift]
    return out


def render_slice(case: PhantomCase, z_index: int, rng: np.random.Generator) -> PhantomSlice:
    """Render slice ``z_index`` (0-based) of a case.

    Args:
        case: From :func:`segapp.synthetic.anatomy.make_case`.
        z_index: 0 <= z_index < case.n_slices; the slice lies at z = 3 mm * z_index.
        rng: Source of this slice's noise and fine texture; anatomy comes from the case.

    Returns:
        The slice: uint16 image, class-id mask, per-organ masks and names.

    Raises:
        ValueError: ``z_index`` is outside the scan.
    """
    if not 0 <= z_index < case.n_slices:
        raise ValueError(f"z_index {z_index} outside 0..{case.n_slices - 1}")
    g = pixel_grid(case.width, case.height, *case.spacing_mm)
    z = z_index * SLICE_THICKNESS_MM
    textures = _Textures(
        coarse=_case_texture(case, z_index, 0),
        medium=_case_texture(case, z_index, 1),
        fine=blur(rng.standard_normal((case.height, case.width), dtype=F32)),
    )
    c = _Canvas(g, case.levels, textures)

    # Anatomy: the wall, the other structures top to bottom, then the target organs.
    cut = _cut_body(case, g, z, textures.coarse)
    _paint_wall_and_cavity(c, cut)
    b, an = case.body, case.layout
    a_c = b.cavity_a * cut.a / b.a  # the cavity follows the body's width along z
    frame = _Frame(b.cx, b.cy, a_c, b.cavity_b_ant, b.cavity_b_post, an.vertebra_y, an.vertebra_r)
    for paint in _PAINTERS:
        paint(c, case, frame, cut, z)
    drawn = _paint_target_organs(c, case, cut, z)

    # India ink: bSSFP (and opposed-phase T1) cancels the signal of voxels that mix fat and
    # water; then fat's chemical shift along the frequency axis.
    mixed = blur(c.fat, 2)
    signal = c.img * (1 - case.scanner.ink * 4 * mixed * (1 - mixed))
    image16 = _acquire(case, g, _chemical_shift(signal, c.fat, case.scanner.shift_px), rng)
    mask, organ_masks = _masks(drawn, case.overlap)
    return PhantomSlice(
        image16=image16,
        mask=mask,
        organ_masks=organ_masks,
        spacing_mm=case.spacing_mm,
        case=case.case_id,
        day=case.day,
        slice_index=int(z_index) + 1,
        style=case.style,
    )
