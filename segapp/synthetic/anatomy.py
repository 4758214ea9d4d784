"""The anatomy of one synthetic patient-day, in millimetres: :func:`make_case`.

A case is a 3D anatomy: body outline, solid organs, spine and pelvis as z-dependent
ellipses, and the stomach, small bowel and large bowel as chains of spheres along 3D
paths, plus the day's tissue signals and scanner settings. Rendering a slice of it is
:mod:`segapp.synthetic.rendering`'s job; nothing here depends on a slice.

Coordinates: x in mm grows to the image right (the patient's left), y in mm grows down
(posterior), 0 at the image centre; slice ``k`` (0-based) lies at ``z = 3 k`` mm, towards
the feet (3 mm slices, 144 per scan, as in the real data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segapp.labels import FOREGROUND
from segapp.synthetic.geometry import F32, catmull_rom

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
SPAN_MM = SLICES_PER_SCAN * SLICE_THICKNESS_MM  # the whole scan's length along z
# Contrast families ("styles") and how often a case draws each when the style is "mixed".
# bssfp: the real data's balanced SSFP (fluid and fat bright, India-ink lines); t2: single-shot
# T2 (HASTE-like: fluid very bright, fat bright-ish, muscle dark, flow voids); t1: T1 gradient
# echo (fat bright, fluid and bowel contents dark or grey, liver brighter than spleen).
STYLES: tuple[str, ...] = ("bssfp", "t2", "t1")
STYLE_WEIGHTS: tuple[float, ...] = (0.5, 0.3, 0.2)
# Anatomy variants. "variant" is what no standard case shows, for generalisation checks: an obese
# habitus (subcutaneous fat 36-55 mm against 8-32 mm), the body always cut by the field of view
# with the arms beside it, and ptosis (stomach and transverse colon sagging 40-80 mm lower).
ANATOMIES: tuple[str, ...] = ("standard", "variant")


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


@dataclass(frozen=True)
class Body:
    """The body outline and its wall, in mm (the patient's size; equal on every day).

    The outline is an ellipse, flatter at the back (a superellipse there: the patient lies
    on it), with gentle lobes; its half-width swings slowly along z.

    Attributes:
        cx: Centre x.
        cy: Centre y.
        a: Half-width.
        b_ant: Half-height in front (y < cy).
        b_post: Half-height behind.
        p_post: Superellipse exponent of the back, 2.3..3.2.
        fat: Subcutaneous fat thickness.
        fat_ant: Extra fat in front, as a share of ``fat``.
        fat_lat: Extra fat on the flanks, as a share of ``fat``.
        muscle: Muscle wall thickness.
        z_amp: Relative swing of the half-width along z.
        z_phase: Phase of that swing (radians).
        lobes: (height, phase) of the outline's angular harmonics 2, 3, 4, 5.
        arms: Whether the arms lie beside the body (else they are raised out of the field).
        arm_gap: Air between the body's side and each arm.
        arm_ax: Half-width of an arm.
        arm_by: Half-height of an arm.
        arm_dy: Arm centre y relative to ``cy`` (> 0: behind).
        arm_fat: Subcutaneous fat of the arms.
    """

    cx: float
    cy: float
    a: float
    b_ant: float
    b_post: float
    p_post: float
    fat: float
    fat_ant: float
    fat_lat: float
    muscle: float
    z_amp: float
    z_phase: float
    lobes: tuple[tuple[float, float], ...]
    arms: bool
    arm_gap: float
    arm_ax: float
    arm_by: float
    arm_dy: float
    arm_fat: float

    @property
    def cavity_a(self) -> float:
        """Half-width of the abdominal cavity inside fat and muscle (mm)."""
        return self.a - self.fat * (1 + self.fat_lat) - self.muscle

    @property
    def cavity_b_ant(self) -> float:
        """Front half-height of the cavity (mm)."""
        return self.b_ant - self.fat * (1 + self.fat_ant) - self.muscle

    @property
    def cavity_b_post(self) -> float:
        """Back half-height of the cavity (mm); the fat over the spine is thinner."""
        return self.b_post - 0.7 * self.fat - self.muscle


@dataclass(frozen=True)
class Kidneys:
    """Both kidneys, in mm; angles in radians (the right kidney, image left, turns the other way).

    Attributes:
        z_right: Centre z of the right kidney (image left; it sits lower).
        z_left: Centre z of the left kidney.
        half_length: Half their extent along z.
        x: Distance of each centre from the body's midline.
        ax: Half-axis across.
        by: Half-axis front to back.
        angle: Tilt.
    """

    z_right: float
    z_left: float
    half_length: float
    x: float
    ax: float
    by: float
    angle: float


@dataclass(frozen=True)
class Layout:
    """Where the structures other than the wall and the target organs sit (mm; equal on every day).

    z-levels are set so that about half of all slices show no target organ, as in the real data.

    Attributes:
        vertebra_r: Radius of the vertebral bodies.
        vertebra_y: y of the vertebral bodies' centre.
        z_stomach: Where the stomach starts (its fundus).
        stomach_length: Fundus to antrum along z.
        z_colon0: Top of the colon's frame (transverse colon).
        z_colon1: Bottom of the colon's frame (rectum).
        z_liver0: Top of the liver.
        z_liver1: Bottom of the liver's right lobe.
        z_spleen0: Top of the spleen.
        z_spleen1: Bottom of the spleen.
        kidneys: Both kidneys.
        z_lung_base: Last z of the lung bases.
        z_heart_base: Last z of the heart.
        z_bifurcation: Where the aorta splits into the iliac arteries.
        z_ilium: Top of the iliac wings.
        z_sacrum: Where the lumbar spine gives way to the sacrum.
        z_femur: Top of the hips.
        z_bladder: Top of the bladder.
        disc_phase: Phase of the 33 mm vertebral period (0..33).
        gallbladder: Whether the patient has one.
        bladder_half_width: The bladder's half-width when full.
        z_pancreas: Centre z of the pancreas's head (its tail lies 10-25 mm higher).
        pancreas_r: Half-thickness of the pancreas.
    """

    vertebra_r: float
    vertebra_y: float
    z_stomach: float
    stomach_length: float
    z_colon0: float
    z_colon1: float
    z_liver0: float
    z_liver1: float
    z_spleen0: float
    z_spleen1: float
    kidneys: Kidneys
    z_lung_base: float
    z_heart_base: float
    z_bifurcation: float
    z_ilium: float
    z_sacrum: float
    z_femur: float
    z_bladder: float
    disc_phase: float
    gallbladder: bool
    bladder_half_width: float
    z_pancreas: float
    pancreas_r: float


@dataclass(frozen=True)
class Levels:
    """The day's signal of each tissue (relative; subcutaneous fat = 1), for the case's style.

    The renderer looks a tissue's level up by its name (``getattr(levels, "liver")``), so
    every tissue it paints is a field or a property here.
    """

    fat: float
    visceral: float
    skin: float
    muscle: float
    liver: float
    spleen: float
    kidney: float  # the cortex
    medulla: float
    pancreas: float
    marrow: float
    cortex: float  # of bone
    disc: float
    csf: float
    blood: float  # flowing blood: bright in bSSFP, dark (flow void) in T2, either in T1
    fluid: float
    lung: float
    heart: float
    gas: float
    st_wall: float
    sb_wall: float
    sb_fluid: float
    sb_chyme: float
    sb_fluid_share: float  # not a signal: the share of small-bowel stretches filled with fluid
    lb_wall: float
    lb_stool: float

    @property
    def sinus(self) -> float:
        return self.visceral

    @property
    def vessel(self) -> float:
        return self.blood

    @property
    def aorta(self) -> float:
        return self.blood

    @property
    def ivc(self) -> float:
        return self.blood * 0.9

    @property
    def bladder(self) -> float:
        return self.fluid * 1.05

    @property
    def cord(self) -> float:
        return self.marrow * 0.8


@dataclass(frozen=True)
class StomachLook:
    """The day's stomach filling: fluid (bright), food (grey, mottled) or collapsed.

    Attributes:
        gas_share: Share of the lumen's height above the fluid level filled with gas (0: none).
        wall_mm: Wall thickness.
        folds: Mottling of the content (relative amplitude).
        rugae: Strength of the bright fluid lines between the mucosal folds (0..1).
    """

    gas_share: float
    wall_mm: float
    folds: float
    rugae: float


@dataclass(frozen=True)
class Scanner:
    """The day's acquisition settings.

    Attributes:
        gamma: Exponent applied to the signal.
        noise: Rician sigma relative to fat.
        blur_passes: Binomial blur passes (partial volume), 1 or 2.
        ink: Depth of the India-ink lines where fat meets water (0..1).
        scale: uint16 value of fat.
        bx: Bias field exp(bx x + by y + bxx x^2 + byy y^2 + bxy x y), x and y in -1..1.
        by: See ``bx``.
        bxx: See ``bx``.
        byy: See ``bx``; >= 0: the coils in front and behind make it brighter there.
        bxy: See ``bx``.
        bands: bSSFP banding strength (0: none).
        band_x: Horizontal scale of the banding pattern.
        band_y: Vertical scale of the banding pattern.
        band_tilt: Tilt of the banding pattern.
        coil: Surface-coil gain at the body's front and back over its middle (0: none).
        coil_post: The back coil's share of ``coil``.
        coil_mm: How far (mm) the coils' extra gain reaches into the body.
        shift_px: Chemical-shift displacement of fat along the columns (frequency axis), pixels.
        ghost: Amplitude of the motion ghosts (0..1 of the signal).
        ghost_rows: Ghosts repeat along the rows (phase axis vertical) rather than the columns.
        ghost_step: The ghosts' spacing as a fraction of the field (1/2, 1/3, 1/4).
    """

    gamma: float
    noise: float
    blur_passes: int
    ink: float
    scale: float
    bx: float
    by: float
    bxx: float
    byy: float
    bxy: float
    bands: float
    band_x: float
    band_y: float
    band_tilt: float
    coil: float
    coil_post: float
    coil_mm: float
    shift_px: int
    ghost: float
    ghost_rows: bool
    ghost_step: float


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
        body: Body outline and wall.
        layout: Positions, sizes and z-levels of the other structures.
        levels: Signal of each tissue.
        scanner: Gamma, bias field, noise, blur and artefact settings.
        stomach: The stomach, fundus to pylorus.
        stomach_look: The stomach's filling on this day.
        small_bowel: The small-bowel loops, one after another in one chain.
        large_bowel: The colon, caecum to rectum.
        liver_vessels: (K, 6) float32 veins in the liver running along z: x, y at z0,
            dx/dz, dy/dz, radius, z0.
        mesenteric_vessels: (M, 6) float32 vessels among the bowel loops, same columns.
        texture: Two low-resolution noise volumes (knots along z, rows, cols) for texture
            that stays coherent from slice to slice.
        overlap: Whether the per-organ masks keep a one-pixel overlap where organs touch.
        style: Contrast family, one of :data:`STYLES`.
        anatomy: Anatomy variant, one of :data:`ANATOMIES`.
    """

    case_id: int
    day: int
    width: int
    height: int
    spacing_mm: tuple[float, float]
    n_slices: int
    body: Body
    layout: Layout
    levels: Levels
    scanner: Scanner
    stomach: Chain
    stomach_look: StomachLook
    small_bowel: Chain
    large_bowel: Chain
    liver_vessels: np.ndarray
    mesenteric_vessels: np.ndarray
    texture: tuple[np.ndarray, np.ndarray]
    overlap: bool
    style: str = "bssfp"
    anatomy: str = "standard"

    def organ_z_ranges(self) -> dict[str, tuple[float, float]]:
        """Organ name -> (first, last) z in mm where it can appear."""
        return {name: getattr(self, name).z_range() for name in ORGANS}


def make_case(
    rng: np.random.Generator,
    *,
    case_id: int = 1,
    day: int = 0,
    size: tuple[int, int] | None = None,
    style: str = "mixed",
    anatomy: str = "standard",
) -> PhantomCase:
    """Draw one patient-day's anatomy and scanner settings.

    The patient (size, body, solid organs, organ routes, contrast family) comes from ``rng``;
    the day (bowel loops, fillings, contrast, noise) from a stream seeded by ``rng`` and
    ``day``. So equally seeded ``rng`` with different days give one patient on two days.
    The style changes only the tissues' signals and the acquisition: one ``rng`` gives the
    same anatomy in every style.

    Args:
        rng: Random source; its state decides the case.
        case_id: Patient number, for names.
        day: Scan day, for names and the day-to-day changes.
        size: (width, height) in pixels, one of :data:`PROTOCOLS`; drawn when None.
        style: One of :data:`STYLES`, or ``"mixed"``: drawn per patient with
            :data:`STYLE_WEIGHTS`.
        anatomy: One of :data:`ANATOMIES`.

    Returns:
        The case, ready for :func:`segapp.synthetic.rendering.render_slice`.

    Raises:
        ValueError: ``size`` is not one of the real data's sizes, or an unknown style or anatomy.
    """
    if style != "mixed" and style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)} or mixed")
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy {anatomy!r} is not one of {', '.join(ANATOMIES)}")
    variant = anatomy == "variant"
    # The patient. The order of the draws is part of the output: keep it.
    width, height, spacing = _protocol(rng, size)
    drawn_style = STYLES[int(rng.choice(len(STYLES), p=STYLE_WEIGHTS))]  # drawn always: draws in step
    style = drawn_style if style == "mixed" else style
    body = _draw_body(rng, width, height, spacing, variant)
    layout = _draw_layout(rng, body, variant)
    liver_vessels, mesenteric_vessels = _draw_vessels(rng, body, layout)
    stomach_route, stomach_radius = _stomach_route(rng)
    colon_route = _colon_route(rng, body, layout, variant)

    # This day: contrast, fillings, bowel loops, scanner. Signals and scanner come from their
    # own stream, so that the style changes no anatomy.
    drng = np.random.default_rng([int(rng.integers(2**62)), int(day)])
    lrng = np.random.default_rng([int(drng.integers(2**62)), STYLES.index(style)])
    levels = _draw_levels(lrng, style)
    stomach, stomach_look = _stomach(drng, stomach_route, stomach_radius, body, layout, levels)
    large_bowel = _large_bowel(drng, colon_route, body, levels)
    small_bowel = _small_bowel(drng, _small_bowel_region(drng, body, layout), levels)
    scanner = _draw_scanner(lrng, style)
    texture = (  # knots every 4 slices (organ scale) and every 2 slices (parenchyma)
        drng.normal(size=(SLICES_PER_SCAN // 4 + 2, 10, 10)).astype(F32),
        drng.normal(size=(SLICES_PER_SCAN // 2 + 2, 44, 44)).astype(F32),
    )
    return PhantomCase(
        case_id=int(case_id),
        day=int(day),
        width=width,
        height=height,
        spacing_mm=(spacing, spacing),
        n_slices=SLICES_PER_SCAN,
        body=body,
        layout=layout,
        levels=levels,
        scanner=scanner,
        stomach=stomach,
        stomach_look=stomach_look,
        small_bowel=small_bowel,
        large_bowel=large_bowel,
        liver_vessels=liver_vessels,
        mesenteric_vessels=mesenteric_vessels,
        texture=texture,
        overlap=bool(drng.random() < 0.15),
        style=style,
        anatomy=anatomy,
    )


# --------------------------------------------------------------------------------------------
# The patient


def _protocol(rng: np.random.Generator, size: tuple[int, int] | None) -> tuple[int, int, float]:
    if size is None:
        return PROTOCOLS[int(rng.choice(len(PROTOCOLS), p=PROTOCOL_WEIGHTS))]
    for width, height, spacing in PROTOCOLS:
        if (width, height) == tuple(size):
            return width, height, spacing
    known = ", ".join(f"{w}x{h}" for w, h, _ in PROTOCOLS)
    raise ValueError(f"size {size!r} is not one of the real data's (width, height): {known}")


def _draw_body(rng: np.random.Generator, width: int, height: int, spacing: float, variant: bool) -> Body:
    """An ellipse wider than tall, flatter at the back; sizes in mm, so its size in pixels
    follows the pixel spacing. It fits the field of view, except in about one case in four
    (every ``variant`` case) of the narrower fields, which cut its sides as real scans often do."""
    half_fov = 0.5 * width * spacing
    cut = (rng.random() < 0.25 or variant) and half_fov < 230
    a = rng.uniform(1.0, 1.1) * half_fov if cut else min(rng.uniform(148, 192), 0.97 * half_fov)
    b_ant, b_post = rng.uniform(105, 135), rng.uniform(92, 115)
    squeeze = min(1.0, 0.94 * height * spacing / (b_ant + b_post))
    b_ant, b_post = b_ant * squeeze, b_post * squeeze
    fat = rng.uniform(36, 55) if variant else rng.uniform(8, 32) * min(1.0, a / 150)
    return Body(
        cx=rng.normal(0, 6),
        cy=(b_ant - b_post) / 2 + rng.normal(0, 5),
        a=a,
        b_ant=b_ant,
        b_post=b_post,
        p_post=rng.uniform(2.3, 3.2),
        fat=fat,
        fat_ant=rng.uniform(0.1, 0.6),
        fat_lat=rng.uniform(0.0, 0.5),
        muscle=rng.uniform(7, 12),
        z_amp=rng.uniform(0.02, 0.05),
        z_phase=rng.uniform(0, 2 * math.pi),
        lobes=tuple(  # height first, then phase, harmonic by harmonic
            (rng.uniform(0, 0.022) / (k - 1) ** 0.5, rng.uniform(0, 2 * math.pi)) for k in range(2, 6)
        ),
        arms=bool(rng.random() < 0.45) or variant,
        arm_gap=rng.uniform(2, 14),
        arm_ax=rng.uniform(36, 50),
        arm_by=rng.uniform(44, 60),
        arm_dy=rng.uniform(-0.1, 0.35) * b_post,
        arm_fat=rng.uniform(3, 14) * (1.8 if variant else 1.0),
    )


def _draw_layout(rng: np.random.Generator, body: Body, variant: bool) -> Layout:
    """z-levels as fractions of the scan (lung bases at the top, hips at the bottom), and
    the spine and kidneys relative to the body. ``variant``: a ptotic stomach, lower down."""
    ptosis = rng.uniform(40, 80) / SPAN_MM * variant  # drawn always: the draws stay in step
    t_st = 0.2 + rng.uniform(-0.07, 0.07) + rng.normal(0, 0.015)
    t_lb0 = t_st + rng.uniform(0.05, 0.1)
    t_lb1 = t_lb0 + rng.uniform(0.36, 0.45)
    r_vb = rng.uniform(16, 21)
    return Layout(
        vertebra_r=r_vb,
        vertebra_y=body.cy + body.b_post - rng.uniform(48, 62) - 0.7 * body.fat,
        z_stomach=(t_st + ptosis) * SPAN_MM,
        stomach_length=rng.uniform(0.15, 0.21) * SPAN_MM,
        z_colon0=t_lb0 * SPAN_MM,
        z_colon1=t_lb1 * SPAN_MM,
        z_liver0=(t_st - rng.uniform(0.08, 0.12)) * SPAN_MM,
        z_liver1=(t_st + rng.uniform(0.2, 0.27)) * SPAN_MM,
        z_spleen0=(t_st - rng.uniform(0.0, 0.05)) * SPAN_MM,
        z_spleen1=(t_st + rng.uniform(0.12, 0.17)) * SPAN_MM,
        kidneys=Kidneys(
            z_right=(t_st + rng.uniform(0.2, 0.24)) * SPAN_MM,
            z_left=(t_st + rng.uniform(0.17, 0.21)) * SPAN_MM,
            half_length=rng.uniform(48, 60),
            x=r_vb + rng.uniform(38, 50),
            ax=rng.uniform(26, 33),
            by=rng.uniform(18, 23),
            angle=rng.uniform(0.5, 0.9),
        ),
        z_lung_base=(t_st - rng.uniform(0.0, 0.03)) * SPAN_MM,
        z_heart_base=(t_st - rng.uniform(0.06, 0.1)) * SPAN_MM,
        z_bifurcation=(t_lb0 + rng.uniform(0.22, 0.28)) * SPAN_MM,
        z_ilium=(t_lb1 - rng.uniform(0.14, 0.18)) * SPAN_MM,
        z_sacrum=(t_lb1 - rng.uniform(0.1, 0.13)) * SPAN_MM,
        z_femur=(t_lb1 + rng.uniform(0.03, 0.07)) * SPAN_MM,
        z_bladder=(t_lb1 - rng.uniform(0.03, 0.07)) * SPAN_MM,
        disc_phase=rng.uniform(0, 33),
        gallbladder=bool(rng.random() < 0.6),
        bladder_half_width=rng.uniform(15, 45),
        z_pancreas=(t_st + rng.uniform(0.13, 0.17)) * SPAN_MM,
        pancreas_r=rng.uniform(8, 13),
    )


def _draw_vessels(rng: np.random.Generator, body: Body, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Vessels running along z: veins in the liver, mesenteric vessels among the loops.
    Returns (liver (K, 6), mesenteric (M, 6)) float32, columns as in :class:`PhantomCase`."""
    cx, cy, a_c, b_ca, b_cp = body.cx, body.cy, body.cavity_a, body.cavity_b_ant, body.cavity_b_post
    n_liver, n_mes = int(rng.integers(4, 9)), int(rng.integers(4, 10))
    vessels = np.zeros((n_liver + n_mes, 6), dtype=F32)
    vessels[:n_liver, 0] = cx - a_c * rng.uniform(0.2, 0.75, n_liver)
    vessels[:n_liver, 1] = cy + b_cp * rng.uniform(-0.6, 0.4, n_liver)
    vessels[:n_liver, 4] = rng.uniform(2.5, 6, n_liver)
    liver_span = layout.z_liver1 - layout.z_liver0
    vessels[:n_liver, 5] = layout.z_liver0 + rng.uniform(0, 0.5, n_liver) * liver_span
    vessels[n_liver:, 0] = cx + a_c * rng.uniform(-0.4, 0.4, n_mes)
    vessels[n_liver:, 1] = cy + b_ca * rng.uniform(-0.6, 0.1, n_mes)
    vessels[n_liver:, 4] = rng.uniform(2.0, 3.5, n_mes)
    vessels[n_liver:, 5] = layout.z_colon0
    vessels[:, 2:4] = rng.normal(0, 0.25, (n_liver + n_mes, 2))
    return vessels[:n_liver], vessels[n_liver:]


def _stomach_route(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The stomach's route, fundus (high, posterior, image right) -> body -> antrum ->
    pylorus (front, across the midline): rows x, y as fractions of the cavity, z as a
    fraction of its length, radius factor; and its radius in mm."""
    route = np.array(
        [
            [0.42, 0.25, 0.0, 1.0],
            [0.42, 0.0, 0.3, 0.95],
            [0.30, -0.35, 0.6, 0.8],
            [0.10, -0.55, 0.85, 0.6],
            [-0.12, -0.6, 0.8, 0.45],
            [-0.28, -0.45, 0.72, 0.3],
        ]
    )
    route[:, :2] += rng.normal(0, 0.04, (len(route), 2))
    return route, rng.uniform(30, 42)


def _colon_route(rng: np.random.Generator, body: Body, layout: Layout, variant: bool) -> np.ndarray:
    """The colon's route: caecum -> ascending -> transverse (sagging) -> descending ->
    sigmoid -> rectum: rows x, y as fractions of the cavity, z in mm, radius factor,
    haustra depth. ``variant``: the transverse colon sags 40-80 mm further."""
    z0, z1, sag = layout.z_colon0, layout.z_colon1, rng.uniform(0.0, 0.12) * SPAN_MM
    sag += rng.uniform(40, 80) * variant  # drawn always: the draws stay in step
    y_rectum = (layout.vertebra_y - layout.vertebra_r - 22 - body.cy) / body.cavity_b_post
    zs = SPAN_MM
    route = np.array(
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
    route[:, :2] += rng.normal(0, 0.03, (len(route), 2))
    return route


def _route_to_mm(route: np.ndarray, body: Body) -> np.ndarray:
    """Route x, y columns as fractions of the cavity (y < 0: of its front half) -> mm."""
    y_scale = np.where(route[:, 1] < 0, body.cavity_b_ant, body.cavity_b_post)
    return np.column_stack([body.cx + route[:, 0] * body.cavity_a, body.cy + route[:, 1] * y_scale])


# --------------------------------------------------------------------------------------------
# The day


# Each style's signal ranges (subcutaneous fat = 1), drawn uniformly per day. The tissues in
# _CONTRASTED are then scaled by one factor per day, so fat-to-organ contrast varies widely.
_LEVEL_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "bssfp": dict(
        visceral=(0.72, 0.92), skin=(0.45, 0.6), muscle=(0.18, 0.28), liver=(0.28, 0.38),
        spleen=(0.45, 0.55), kidney=(0.5, 0.62), medulla=(0.55, 0.68), pancreas=(0.36, 0.5),
        marrow=(0.6, 0.8), disc=(0.55, 0.75), csf=(0.95, 1.15), fluid=(1.0, 1.25), lung=(0.03, 0.08),
        heart=(0.45, 0.6), st_wall=(0.3, 0.42), sb_wall=(0.38, 0.5), sb_fluid=(0.95, 1.2),
        sb_chyme=(0.42, 0.6), lb_wall=(0.32, 0.45), lb_stool=(0.18, 0.34),
    ),
    "t2": dict(  # HASTE-like: fluid far above fat, muscle dark, flow voids
        visceral=(0.78, 0.95), skin=(0.4, 0.55), muscle=(0.08, 0.15), liver=(0.18, 0.28),
        spleen=(0.38, 0.52), kidney=(0.42, 0.55), medulla=(0.55, 0.75), pancreas=(0.28, 0.4),
        marrow=(0.5, 0.7), disc=(0.7, 1.0), csf=(1.5, 1.9), fluid=(1.5, 2.0), lung=(0.02, 0.05),
        heart=(0.1, 0.25), st_wall=(0.18, 0.3), sb_wall=(0.18, 0.3), sb_fluid=(1.4, 1.9),
        sb_chyme=(0.35, 0.6), lb_wall=(0.18, 0.3), lb_stool=(0.15, 0.35),
    ),
    "t1": dict(  # gradient echo: fat bright, fluid dark, liver above spleen, pancreas bright
        visceral=(0.85, 1.0), skin=(0.35, 0.5), muscle=(0.2, 0.3), liver=(0.4, 0.55),
        spleen=(0.25, 0.35), kidney=(0.3, 0.4), medulla=(0.18, 0.26), pancreas=(0.5, 0.65),
        marrow=(0.7, 0.9), disc=(0.2, 0.3), csf=(0.05, 0.12), fluid=(0.06, 0.15), lung=(0.02, 0.05),
        heart=(0.3, 0.4), st_wall=(0.3, 0.4), sb_wall=(0.3, 0.4), sb_fluid=(0.08, 0.2),
        sb_chyme=(0.25, 0.45), lb_wall=(0.3, 0.4), lb_stool=(0.25, 0.5),
    ),
}
_CONTRASTED = ("muscle", "liver", "spleen", "kidney", "medulla", "pancreas", "heart", "st_wall", "sb_wall",
               "sb_chyme", "lb_wall", "lb_stool")
# Flowing blood: (share of days with bright blood, bright range, dark range).
_BLOOD = {"bssfp": (0.75, (0.75, 1.1), (0.08, 0.2)), "t2": (0.1, (0.5, 0.8), (0.03, 0.12)),
          "t1": (0.5, (0.6, 0.9), (0.05, 0.15))}


def _draw_levels(lrng: np.random.Generator, style: str) -> Levels:
    """The day's signals in ``style``: every range drawn (in a fixed order), then the organs
    scaled by a contrast factor 0.7-1.45 against fat."""
    values = {name: float(lrng.uniform(lo, hi)) for name, (lo, hi) in _LEVEL_RANGES[style].items()}
    contrast = lrng.uniform(0.7, 1.45)
    for name in _CONTRASTED:
        values[name] *= contrast
    share, bright, dark = _BLOOD[style]
    blood = lrng.uniform(*bright) if lrng.random() < share else lrng.uniform(*dark)
    return Levels(fat=1.0, cortex=0.06, gas=0.02, blood=float(blood),
                  sb_fluid_share=float(lrng.uniform(0.25, 0.7)), **values)


def _stomach(
    drng: np.random.Generator,
    route: np.ndarray,
    radius: float,
    body: Body,
    layout: Layout,
    levels: Levels,
) -> tuple[Chain, StomachLook]:
    """The stomach along its route, filled with fluid (bright), food (grey, mottled) or
    collapsed (small, thick folds); gas rises to the front above a flat fluid level."""
    kind = int(drng.choice(3, p=(0.5, 0.3, 0.2)))
    # Each filling's value is drawn, whichever the kind: the draws stay in step.
    radius = radius * (drng.uniform(0.85, 1.15), drng.uniform(0.75, 1.05), drng.uniform(0.5, 0.65))[kind]
    z = layout.z_stomach + 0.8 * radius + route[:, 2] * layout.stomach_length
    dense, _ = catmull_rom(np.column_stack([_route_to_mm(route, body), z, route[:, 3] * radius]), 3.0)
    level = (levels.fluid, levels.sb_chyme * drng.uniform(1.0, 1.3), levels.st_wall * drng.uniform(1.0, 1.3))[kind]
    chain = Chain(dense[:, :3].astype(F32), dense[:, 3].astype(F32), np.full(len(dense), level, F32))
    # Gas rises to the front (supine): a level in 3 of 10 filled stomachs, mostly gas in 1 of 8.
    gas, level_share, gas_share = drng.random(), drng.uniform(0.12, 0.4), drng.uniform(0.7, 1.0)
    look = StomachLook(
        gas_share=0.0 if kind == 2 or gas >= 0.425 else level_share if gas < 0.3 else gas_share,
        wall_mm=(drng.uniform(3, 5), drng.uniform(3, 5), drng.uniform(6, 9))[kind],
        folds=(0.12, 0.36, 0.48)[kind],
        rugae=(0.0, 0.35, 0.75)[kind],
    )
    return chain, look


def _large_bowel(drng: np.random.Generator, route: np.ndarray, body: Body, levels: Levels) -> Chain:
    """The colon along its route: calibre, haustral folds every 22-32 mm, stool with gas pockets."""
    radius = drng.uniform(16, 24)
    ctrl = np.column_stack([_route_to_mm(route, body), route[:, 2], route[:, 3] * radius, route[:, 4]])
    dense, arc = catmull_rom(ctrl, 0.3 * radius)
    fold = np.maximum(0.0, np.cos(2 * math.pi * arc / drng.uniform(22, 32))) ** 6
    radii = dense[:, 3] * (1 - drng.uniform(0.15, 0.28) * dense[:, 4] * fold)
    n = len(dense)
    cx, a_c, b_ca = body.cx, body.cavity_a, body.cavity_b_ant
    transverse = (np.abs(dense[:, 0] - cx) < 0.45 * a_c) & (dense[:, 1] < body.cy - 0.4 * b_ca)
    gas = np.repeat(drng.random(n // 6 + 1) < 0.25, 6)[:n] | (transverse & (drng.random() < 0.6))
    content = np.where(gas, levels.gas, levels.lb_stool * (1 + 0.2 * drng.normal(size=n)))
    return Chain(dense[:, :3].astype(F32), radii.astype(F32), content.astype(F32))


@dataclass(frozen=True)
class _Region:
    """The ellipsoid (mm) that the small bowel fills; its centre slides in x along z."""

    cx_top: float  # centre x at z0
    cx_bottom: float  # centre x at z1
    cy: float
    ax: float
    ay: float
    z0: float
    z1: float

    def outside(self, x: float, y: float, z: float) -> float:
        """> 0 outside the (sloping) ellipsoid, < 0 inside."""
        zc, az = (self.z0 + self.z1) / 2, (self.z1 - self.z0) / 2
        slide = (self.cx_bottom - self.cx_top) * (z - self.z0) / (self.z1 - self.z0)
        ex = (x - self.cx_top - slide) / self.ax
        return ex * ex + ((y - self.cy) / self.ay) ** 2 + ((z - zc) / az) ** 2 - 1.0


def _small_bowel_region(drng: np.random.Generator, body: Body, layout: Layout) -> _Region:
    """Loops packed in front of the spine, inside the colon's frame."""
    front, back = body.cy - body.cavity_b_ant, layout.vertebra_y - layout.vertebra_r - 8
    return _Region(
        cx_top=body.cx + 0.15 * body.cavity_a,
        cx_bottom=body.cx - 0.08 * body.cavity_a,
        cy=(front + back) / 2,
        ax=0.62 * body.cavity_a,
        ay=0.5 * (back - front),
        z0=layout.z_colon0 + drng.uniform(0.03, 0.08) * SPAN_MM,
        z1=layout.z_colon1 - drng.uniform(0.03, 0.09) * SPAN_MM,
    )


def _small_bowel(rng: np.random.Generator, region: _Region, levels: Levels) -> Chain:
    """Self-avoiding random-walk tubes filling the region (the mesenteric small bowel),
    joined one after another into one chain."""
    az = (region.z1 - region.z0) / 2
    occupied: dict[tuple[int, int, int], int] = {}  # shared: later tubes avoid earlier ones
    n_tubes = int(rng.integers(3, 6))
    volume = 4 / 3 * math.pi * region.ax * region.ay * az  # mm^3
    length = rng.uniform(0.8, 1.1) * volume / n_tubes  # mm^3 of tube each: loops packed tightly
    parts = []
    for _ in range(n_tubes):
        radius = float(rng.uniform(10, 14))
        n_steps = max(8, int(length / (math.pi * radius**2) / (0.5 * radius)))  # steps of half a radius
        pts = _walk_tube(rng, region, radius, n_steps, occupied)
        n = len(pts)
        # Calibre and content drift along the loop: fluid-filled stretches and collapsed ones.
        wobble = np.convolve(rng.normal(size=n + 8), np.ones(9) / 9, mode="valid")[:n]
        fluid = np.repeat(rng.random(n // 12 + 1) < levels.sb_fluid_share, 12)[:n]
        content = np.where(fluid, levels.sb_fluid, levels.sb_chyme) * (1 + 0.1 * rng.normal(size=n))
        parts.append((np.asarray(pts), radius * (1 + 0.25 * wobble), content))
    return Chain(*(np.concatenate([part[k] for part in parts]).astype(F32) for k in range(3)))


_CELL_MM = 9.0  # occupancy grid: the walk prefers empty cells, so loops pack without merging


def _cell(p: list[float]) -> tuple[int, int, int]:
    return int(p[0] // _CELL_MM), int(p[1] // _CELL_MM), int(p[2] // _CELL_MM)


def _walk_tube(
    rng: np.random.Generator,
    region: _Region,
    radius: float,
    n_steps: int,
    occupied: dict[tuple[int, int, int], int],
) -> list[list[float]]:
    """One tube's centre line: ``n_steps`` steps of half its radius from a random start
    inside the region, each along the heading that looks into the emptiest cell inside.
    Marks the cells it passes in ``occupied``. Returns n_steps + 1 points (x, y, z) in mm.

    Plain Python floats on purpose: the walk is sequential, and numpy per step is slower.
    """
    step = 0.5 * radius
    zc, az = (region.z0 + region.z1) / 2, (region.z1 - region.z0) / 2
    while True:
        p = [
            region.cx_top + rng.uniform(-1, 1) * region.ax,
            region.cy + rng.uniform(-1, 1) * region.ay,
            zc + rng.uniform(-1, 1) * az,
        ]
        if region.outside(*p) < -0.2:
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
            stray = max(0.0, region.outside(*ahead) + 0.15)
            score = occupied.get(_cell(ahead), 0) + tie[i][j] + 20.0 * stray
            if score < best_score:
                best, best_score = c, score
        d = best
        p = [p[k] + d[k] * step for k in range(3)]
        if region.outside(*p) > 0.1:  # strayed out: head back towards the centre
            home = [(region.cx_top + region.cx_bottom) / 2 - p[0], region.cy - p[1], zc - p[2]]
            norm = math.sqrt(sum(v * v for v in home)) or 1.0
            d = [v / norm for v in home]
            p = [p[k] + d[k] * step for k in range(3)]
        pts.append(p)
        occupied[_cell(p)] = occupied.get(_cell(p), 0) + 2
    return pts


def _draw_scanner(lrng: np.random.Generator, style: str) -> Scanner:
    """The day's acquisition. India ink is bSSFP's (and opposed-phase T1's); HASTE blurs more."""
    ink = {"bssfp": (0.35, 0.75), "t2": (0.0, 0.25), "t1": (0.0, 0.8)}[style]
    return Scanner(
        gamma=lrng.uniform(0.75, 1.3),
        noise=lrng.uniform(0.03, 0.07),
        blur_passes=int(lrng.integers(1, 3)) + (style == "t2"),
        ink=lrng.uniform(*ink),
        scale=lrng.uniform(700, 4000),
        bx=lrng.normal(0, 0.15),
        by=lrng.normal(0, 0.15),
        bxx=lrng.normal(0, 0.12),
        byy=lrng.uniform(0.0, 0.3),
        bxy=lrng.normal(0, 0.1),
        bands=lrng.uniform(0.9, 1.8) if style == "bssfp" and lrng.random() < 0.5 else 0.0,  # 1 in 4 overall
        band_x=lrng.uniform(0.85, 1.2),
        band_y=lrng.uniform(0.85, 1.2),
        band_tilt=lrng.normal(0, 0.3),
        coil=lrng.uniform(0.15, 1.3),
        coil_post=lrng.uniform(0.3, 1.0),
        coil_mm=lrng.uniform(35, 80),
        shift_px=int(lrng.integers(0, 3)),
        ghost=lrng.uniform(0.0, 0.06),
        ghost_rows=bool(lrng.random() < 0.7),
        ghost_step=float(lrng.choice([0.5, 1 / 3, 0.25])),
    )
