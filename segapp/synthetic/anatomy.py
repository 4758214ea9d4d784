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
    return Chain(*(np.concatenate([part[k] for part in parts]).astype(F32) for k in range(3)))


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
        "z_st": t_st * SPAN_MM,
        "st_len": rng.uniform(0.15, 0.21) * SPAN_MM,
        "z_lb0": t_lb0 * SPAN_MM,
        "z_lb1": t_lb1 * SPAN_MM,
        "z_liver0": (t_st - rng.uniform(0.08, 0.12)) * SPAN_MM,
        "z_liver1": (t_st + rng.uniform(0.2, 0.27)) * SPAN_MM,
        "z_spleen0": (t_st - rng.uniform(0.0, 0.05)) * SPAN_MM,
        "z_spleen1": (t_st + rng.uniform(0.12, 0.17)) * SPAN_MM,
        "z_kid_r": (t_st + rng.uniform(0.2, 0.24)) * SPAN_MM,  # image left, lower
        "z_kid_l": (t_st + rng.uniform(0.17, 0.21)) * SPAN_MM,
        "kid_half": rng.uniform(48, 60),
        "kid_x": r_vb + rng.uniform(38, 50),
        "kid_ax": rng.uniform(26, 33),
        "kid_by": rng.uniform(18, 23),
        "kid_angle": rng.uniform(0.5, 0.9),
        "z_lung1": (t_st - rng.uniform(0.0, 0.03)) * SPAN_MM,
        "z_heart1": (t_st - rng.uniform(0.06, 0.1)) * SPAN_MM,
        "z_bif": (t_lb0 + rng.uniform(0.22, 0.28)) * SPAN_MM,  # aortic bifurcation
        "z_ilium0": (t_lb1 - rng.uniform(0.14, 0.18)) * SPAN_MM,
        "z_sacrum": (t_lb1 - rng.uniform(0.1, 0.13)) * SPAN_MM,
        "z_femur": (t_lb1 + rng.uniform(0.03, 0.07)) * SPAN_MM,
        "z_bladder": (t_lb1 - rng.uniform(0.03, 0.07)) * SPAN_MM,
        "z_disc": rng.uniform(0, 33),  # phase of the 33 mm vertebral period
        "gallbladder": float(rng.random() < 0.6),
        "bladder": rng.uniform(15, 45),  # half-width when full
    }

    # Vessels running along z: veins in the liver, mesenteric vessels among the loops.
    n_liver, n_mes = int(rng.integers(4, 9)), int(rng.integers(4, 10))
    an["n_liver_vessels"] = n_liver
    vessels = np.zeros((n_liver + n_mes, 6), dtype=F32)
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
    z0, z1, sag = an["z_lb0"], an["z_lb1"], rng.uniform(0.0, 0.12) * SPAN_MM
    y_rectum = (y_vb - r_vb - 22 - cy) / b_cp
    zs = SPAN_MM
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
    dense, _ = catmull_rom(ctrl, 3.0)
    level = (lv["fluid"], drng.uniform(0.5, 0.7), drng.uniform(0.35, 0.5))[kind]
    stomach = Chain(dense[:, :3].astype(F32), dense[:, 3].astype(F32), np.full(len(dense), level, F32))
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
    dense, arc = catmull_rom(ctrl, 0.3 * radius)
    fold = np.maximum(0.0, np.cos(2 * math.pi * arc / drng.uniform(22, 32))) ** 6
    radii = dense[:, 3] * (1 - drng.uniform(0.15, 0.28) * dense[:, 4] * fold)
    n = len(dense)
    transverse = (np.abs(dense[:, 0] - cx) < 0.45 * a_c) & (dense[:, 1] < cy - 0.4 * b_ca)
    gas = np.repeat(drng.random(n // 6 + 1) < 0.25, 6)[:n] | (transverse & (drng.random() < 0.6))
    content = np.where(gas, lv["gas"], lv["lb_stool"] * (1 + 0.2 * drng.normal(size=n)))
    large_bowel = Chain(dense[:, :3].astype(F32), radii.astype(F32), content.astype(F32))

    # Small bowel: loops packed in front of the spine, inside the colon's frame.
    front, back = cy - b_ca, y_vb - r_vb - 8
    region = {
        "cx_top": cx + 0.15 * a_c,
        "cx_bottom": cx - 0.08 * a_c,
        "cy": (front + back) / 2,
        "ax": 0.56 * a_c,
        "ay": 0.5 * (back - front),
        "z0": z0 + drng.uniform(0.03, 0.08) * SPAN_MM,
        "z1": z1 - drng.uniform(0.03, 0.09) * SPAN_MM,
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
