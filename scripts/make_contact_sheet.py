"""Render a contact sheet of phantom slices: each slice plain and with its mask overlaid.

Row by row: bSSFP (the real data's contrast), T2 (HASTE-like), T1, and the anatomy variant;
the last two slices of the bSSFP rows hold no organ (one above them, one below).

Usage: python scripts/make_contact_sheet.py [--out assets/phantom_contact_sheet.png] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segapp.labels import LABELS, palette
from segapp.synthetic import STYLES, PhantomSlice, generate_slice

ROOT = Path(__file__).resolve().parent.parent
TILE = 220  # pixels per image in the sheet
COLUMNS, ROWS = 4, 4  # pairs (slice, overlay) per row, rows
ALPHA = 0.45  # overlay opacity


def overlay(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 slice + (H, W) class ids -> (H, W, 3) uint8 with organs tinted."""
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    colours = np.asarray(palette(), dtype=np.float32)[mask]
    tinted = (1 - ALPHA) * rgb + ALPHA * colours
    return np.where(mask[..., None] > 0, tinted, rgb).round().astype(np.uint8)


def tile(image: np.ndarray) -> Image.Image:
    """Fit an (H, W[, 3]) image into a TILE x TILE square, keeping its aspect ratio."""
    pil = Image.fromarray(image)
    pil.thumbnail((TILE, TILE), Image.Resampling.BILINEAR)
    square = Image.new("RGB", (TILE, TILE))
    square.paste(pil.convert("RGB"), ((TILE - pil.width) // 2, (TILE - pil.height) // 2))
    return square


def _pick(seed: int, size: tuple[int, int], style: str, anatomy: str, want: str) -> PhantomSlice:
    """The first slice from seed, seed + 1, ... that shows ``want``: ``organs`` (2 % of the
    image or more), ``above`` or ``below`` (no organ, upper or lower abdomen)."""
    for attempt in range(100):  # deterministic search
        sl = generate_slice(seed + attempt, size=size, empty=want != "organs", style=style, anatomy=anatomy)
        if (want == "organs" and sl.mask.mean() > 0.02 or want == "above" and sl.slice_index < 50
                or want == "below" and sl.slice_index > 90):
            return sl
    return sl


def pick_slices(seed: int) -> list[PhantomSlice]:
    """Four slices per row (every size): bSSFP with organs, bSSFP without (above, below),
    T2, T1, then the anatomy variant in mixed styles."""
    sizes = [(266, 266), (360, 310), (234, 234), (276, 276)]
    plan = [("bssfp", "standard", "organs")] * 2 + [("bssfp", "standard", "above"), ("bssfp", "standard", "below")]
    plan += [(style, "standard", "organs") for style in STYLES[1:] for _ in range(4)]
    plan += [("mixed", "variant", "organs")] * 4
    return [_pick(seed + 1000 * i, sizes[i % 4], *step) for i, step in enumerate(plan)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "phantom_contact_sheet.png")
    parser.add_argument("--seed", type=int, default=0, help="first seed; slice i searches from seed + 1000 i")
    args = parser.parse_args()

    # Generate (and time it: the generator's per-slice cost matters for data sets).
    start = time.perf_counter()
    slices = pick_slices(args.seed)
    seconds = time.perf_counter() - start

    # Lay out: a caption strip on top, then rows of (slice, overlay) pairs.
    caption = 18
    sheet = Image.new("RGB", (COLUMNS * 2 * TILE, caption + ROWS * (TILE + caption)), (12, 12, 12))
    draw = ImageDraw.Draw(sheet)
    title = "segapp phantom (synthetic), each slice then its mask; rows: bSSFP, T2, T1, anatomy variant:"
    draw.text((6, 3), title, fill=(230, 230, 230))
    x = 6 + int(draw.textlength(title)) + 12
    for label in LABELS[1:]:
        draw.rectangle((x, 5, x + 10, 13), fill=label.color)
        draw.text((x + 14, 3), label.display, fill=(230, 230, 230))
        x += 24 + int(draw.textlength(label.display))
    for index, sl in enumerate(slices):
        row, col = divmod(index, COLUMNS)
        left, top = col * 2 * TILE, caption + row * (TILE + caption)
        sheet.paste(tile(sl.image8), (left, top))
        sheet.paste(tile(overlay(sl.image8, sl.mask)), (left + TILE, top))
        height, width = sl.mask.shape
        text = f"{sl.id}  {width}x{height} @ {sl.spacing_mm[1]:.2f} mm  {sl.style}{' variant' if index >= 12 else ''}"
        draw.text((left + 4, top + TILE + 3), text, fill=(200, 200, 200))

    # A 256-colour palette keeps the noisy sheet small.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KB); {len(slices)} slices in {seconds:.2f} s")


if __name__ == "__main__":
    main()
