"""Draw one phantom slice and eight augmented versions of it (the ``domain`` preset), with mask outlines.

Usage: python scripts/draw_augment_examples.py [--out assets/augment_examples.png] [--seed 0] [--preset domain]

The slice goes through the training path: resized to 288 x 288 as :func:`load_train_set` does,
then :func:`segapp.training.augment.augment` on a batch of eight copies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from segapp.inference.render import overlay
from segapp.model.processing import ProcessingConfig, resize_gray
from segapp.synthetic import generate_slice
from segapp.training.augment import PRESETS, augment

ROOT = Path(__file__).resolve().parent.parent
SIZE = 288  # the training input size
COLUMNS, COPIES = 3, 8
CAPTION = 16


def training_slice(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) uint8 image and mask of a phantom slice with organs, at the training size."""
    slice_ = generate_slice(seed, size=(360, 310), empty=False)
    image = resize_gray([slice_.image8], ProcessingConfig(SIZE, SIZE))[0, 0].round().clamp(0, 255).to(torch.uint8)
    mask = torch.from_numpy(slice_.mask)[None, None].float()
    return image, F.interpolate(mask, size=(SIZE, SIZE), mode="nearest")[0, 0].to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "augment_examples.png")
    parser.add_argument("--seed", type=int, default=0, help="phantom slice and augmentation seed")
    parser.add_argument("--preset", default="domain", choices=sorted(PRESETS))
    args = parser.parse_args()

    image, mask = training_slice(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    images, masks = augment(image.expand(COPIES, -1, -1), mask.expand(COPIES, -1, -1), PRESETS[args.preset], generator)
    tiles = [(image.numpy(), mask.numpy(), "phantom slice (input)")]
    for k in range(COPIES):
        gray = images[k, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        tiles.append((gray, masks[k].to(torch.uint8).numpy(), f"{args.preset} #{k + 1}"))

    rows = -(-len(tiles) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * SIZE, rows * (SIZE + CAPTION)), (12, 12, 12))
    draw = ImageDraw.Draw(sheet)
    for index, (gray, labels, text) in enumerate(tiles):
        row, col = divmod(index, COLUMNS)
        left, top = col * SIZE, row * (SIZE + CAPTION)
        sheet.paste(Image.fromarray(overlay(gray, labels, opacity=0.0, outline=True)), (left, top + CAPTION))
        draw.text((left + 4, top + 2), text, fill=(220, 220, 220))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
