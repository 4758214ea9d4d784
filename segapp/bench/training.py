"""Training throughput: segapp's data path + step vs a plain per-sample DataLoader pipeline;
and the cost of augmentation against the training step.

``python -m segapp.bench.training --data DIR [--device auto] [--steps 300] [--json FILE]``
``python -m segapp.bench.training --augment-cost [--device cpu] [--json FILE]``

Both sides use the same model (SegFormer-B0 from scratch), loss, optimizer, batch size,
gradient accumulation and precision. "segapp" is :func:`segapp.training.loop.train` itself (data
decoded once, kept on the device, augmented there in batches). "plain" is what a notebook
typically does: a ``Dataset`` that opens, resizes and augments one PNG at a time on the CPU
with PIL, in a ``DataLoader`` with ``num_workers=0``.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segapp.bench.measure import interleaved_ms, phantom_slices
from segapp.cli import add_compile_option, add_device_option
from segapp.io.files import write_text_atomic
from segapp.metrics.labelled_data import find_pairs
from segapp.model.head_folding import FoldedTraining
from segapp.model.processing import ProcessingConfig, normalize, resize_gray
from segapp.model.runtime import pick_device, synchronize
from segapp.model.weights import load_model
from segapp.training.augment import PRESETS, augment
from segapp.training.config import TrainConfig
from segapp.training.devices import resolve_precision
from segapp.training.loop import train
from segapp.training.loss import segmentation_loss


class PlainDataset(torch.utils.data.Dataset):
    """Per-sample decoding and augmentation on the CPU, as in the notebook."""

    def __init__(self, split_dir: Path, config: ProcessingConfig) -> None:
        self.pairs = find_pairs(split_dir)
        self.config = config

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        size = (self.config.width, self.config.height)
        image = Image.open(pair.image).convert("L").resize(size, Image.Resampling.BILINEAR)
        mask = Image.open(pair.mask).resize(size, Image.Resampling.NEAREST)
        angle, scale = random.uniform(-15, 15), random.uniform(0.9, 1.1)
        shift = (random.uniform(-17, 17), random.uniform(-17, 17))
        # Sub-pixel shifts work in PIL; its type stubs ask for whole pixels.
        image = image.rotate(angle, Image.Resampling.BILINEAR, translate=shift)  # type: ignore[arg-type]
        mask = mask.rotate(angle, Image.Resampling.NEAREST, translate=shift)  # type: ignore[arg-type]
        if scale != 1:  # zoom about the centre, crop/pad back to size
            zoomed = (round(size[0] * scale), round(size[1] * scale))
            image, mask = image.resize(zoomed, Image.Resampling.BILINEAR), mask.resize(zoomed, Image.Resampling.NEAREST)
            left, top = (zoomed[0] - size[0]) // 2, (zoomed[1] - size[1]) // 2
            box = (left, top, left + size[0], top + size[1])
            image, mask = image.crop(box), mask.crop(box)
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = np.clip((x - x.mean()) * random.uniform(0.8, 1.2) + x.mean() + random.uniform(-0.1, 0.1), 0, 1)
        x = x ** random.uniform(0.7, 1.5)
        mean = np.array(self.config.image_mean, np.float32)[:, None, None]
        std = np.array(self.config.image_std, np.float32)[:, None, None]
        pixel_values = (np.repeat(x[None], 3, 0) - mean) / std
        return torch.from_numpy(pixel_values), torch.from_numpy(np.asarray(mask, dtype=np.int64))


def bench_plain(data: Path, *, device: torch.device, steps: int, batch_size: int, grad_accum: int,
                precision: str, image_size: int, base: str = "scratch") -> dict[str, Any]:
    """Images/s of the plain pipeline for ``steps`` optimizer steps (after 2 warm-up steps)."""
    config = ProcessingConfig(image_size, image_size)
    loader = torch.utils.data.DataLoader(
        PlainDataset(data / "train", config), batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True
    )
    model = load_model(base, device=device).model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    amp = resolve_precision(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    done, micro, images, start = 0, 0, 0, None
    while done < steps + 2:
        for pixel_values, labels in loader:
            pixel_values, labels = pixel_values.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(pixel_values=pixel_values).logits
            scaler.scale(segmentation_loss(logits, labels) / grad_accum).backward()
            micro += 1
            if start is not None:
                images += len(labels)
            if micro % grad_accum:
                continue
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            print(f"\rplain: step {done}", end="", file=sys.stderr)
            done += 1
            if done == 2:  # warm-up over: start the clock
                synchronize(device)
                start = time.perf_counter()
            if done >= steps + 2:
                break
    synchronize(device)
    print(file=sys.stderr)
    assert start is not None  # the loop ran its warm-up steps
    return {"images_per_s": images / (time.perf_counter() - start), "steps": steps}


def bench_training(data: str | Path, *, device: str = "auto", steps: int = 200, plain_steps: int = 30,
                   batch_size: int = 6, grad_accum: int = 2, precision: str = "fp16",
                   image_size: int = 288, base: str = "scratch", compile: str = "off") -> dict[str, Any]:
    """Run both pipelines; returns images/s of each, their ratio and (CUDA) peak memory.

    ``compile`` applies to segapp's side only (``segapp.train --compile``); its compilation falls
    in the warm-up steps, which the steady rate leaves out (``segapp_wall_seconds`` includes it).
    """
    data = Path(data)
    target = pick_device(device)
    with tempfile.TemporaryDirectory(prefix="segapp-bench-") as out:
        config = TrainConfig(
            data=str(data), out=out, base=base, image_size=image_size, batch_size=batch_size,
            grad_accum=grad_accum, precision=precision, device=str(target), max_steps=steps,
            epochs=10**6, valid_every=10**6, hausdorff=False, progress=False, log_every=10**9,
            compile=compile, report_to="none",
        )
        ours = train(config)
    plain = bench_plain(data, device=target, steps=plain_steps, batch_size=batch_size, grad_accum=grad_accum,
                        precision=precision, image_size=image_size, base=base)
    result = {
        "device": str(target),
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "batch_size": batch_size, "grad_accum": grad_accum, "image_size": image_size,
        "precision": ours["precision"], "compile": compile,
        # Steady state on both sides: warm-up steps are left out of each.
        "segapp_images_per_s": ours["steady_images_per_s"] or ours["train_images_per_s"],
        "plain_images_per_s": plain["images_per_s"],
        "ratio": (ours["steady_images_per_s"] or ours["train_images_per_s"]) / plain["images_per_s"],
        "peak_gpu_memory_mib": ours["peak_gpu_memory_mib"],
        "segapp_steps": steps, "plain_steps": plain_steps, "segapp_wall_seconds": ours["wall_seconds"],
    }
    return result


def bench_augment(*, device: str = "cpu", batch_size: int = 6, image_size: int = 288,
                  repeats: int = 5, base: str = "scratch") -> dict[str, Any]:
    """Milliseconds of :func:`augment` per batch for each preset, against one training micro-step.

    The batch is ``batch_size`` phantom slices at ``image_size``, uint8 on ``device`` (as the
    loop holds them). The step is what the loop does with the augmented batch: normalise,
    forward through ``base`` (SegFormer-B0 with random weights; folded head, --precision auto),
    loss, backward, AdamW step. Each is timed round-robin, median of ``repeats``.

    Returns:
        ``augment_ms`` and ``augment_share`` (augment time / step time) per preset, ``step_ms``.
    """
    target = pick_device(device)
    processing = ProcessingConfig(image_size, image_size)
    images = resize_gray(phantom_slices(batch_size), processing).round().clamp(0, 255).to(torch.uint8)[:, 0]
    images = images.to(target)
    masks = (images > 128).to(torch.uint8)  # class ids: the timing does not depend on them
    generator = torch.Generator(device=target).manual_seed(0)
    model = load_model(base, device=target).model.train()
    train_model = FoldedTraining(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    pixel_values = normalize(augment(images, masks, PRESETS["classic"], generator)[0], processing)
    labels = masks.long()

    amp = resolve_precision("auto", target)  # as the loop's default: bf16 where the GPU has it, fp32 on the CPU

    def step() -> None:
        with torch.autocast(target.type, dtype=amp, enabled=amp is not None):
            logits = train_model(pixel_values=pixel_values).logits
        segmentation_loss(logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    runs: dict[str, Any] = {name: (lambda config=config: augment(images, masks, config, generator))
                            for name, config in PRESETS.items()}
    # Round-robin with the step, so load from elsewhere on a shared machine hits both alike.
    times = interleaved_ms({**runs, "step": step}, repeats, functools.partial(synchronize, target))
    step_ms = times.pop("step")
    return {
        "device": str(target), "batch_size": batch_size, "image_size": image_size, "threads": torch.get_num_threads(),
        "step_ms": step_ms, "augment_ms": times,
        "augment_share": {name: ms / step_ms for name, ms in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segapp.bench.training", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder (notebook layout), e.g. from segapp.phantom")
    parser.add_argument("--augment-cost", action="store_true",
                        help="instead: time augment() per batch (classic, domain) against one training step")
    add_device_option(parser)
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps for segapp's path")
    parser.add_argument("--plain-steps", type=int, default=30, help="optimizer steps for the plain pipeline")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--precision", default="fp16", choices=["auto", "fp16", "bf16", "fp32"])
    parser.add_argument("--image-size", type=int, default=288)
    add_compile_option(parser, help="torch.compile segapp's training step (reduce-overhead: CUDA graphs)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    if args.augment_cost:
        cost = bench_augment(device=args.device, batch_size=args.batch_size, image_size=args.image_size)
        print(f"augment() per batch of {args.batch_size} x {args.image_size}px on {cost['device']} "
              f"({cost['threads']} threads), against one training step of {cost['step_ms']:.0f} ms:")
        for name, ms in cost["augment_ms"].items():
            print(f"  {name:8} {ms:7.1f} ms  = {100 * cost['augment_share'][name]:.1f} % of the step")
        if args.json:
            write_text_atomic(args.json, json.dumps(cost, indent=2) + "\n")
        return 0
    if not args.data:
        parser.error("--data is required (or --augment-cost)")
    result = bench_training(args.data, device=args.device, steps=args.steps, plain_steps=args.plain_steps,
                            batch_size=args.batch_size, grad_accum=args.grad_accum, precision=args.precision,
                            image_size=args.image_size, compile=args.compile)
    peak = result["peak_gpu_memory_mib"]
    print(f"training at batch {args.batch_size} x {args.grad_accum}, {args.image_size}px, {result['precision']}, "
          f"compile {args.compile} "
          f"on {result['device_name']}:")
    print(f"  segapp  {result['segapp_images_per_s']:9.1f} images/s")
    print(f"  plain   {result['plain_images_per_s']:9.1f} images/s   (per-sample DataLoader, num_workers=0)")
    print(f"  ratio   {result['ratio']:9.2f} x" + (f"   peak GPU memory {peak:.0f} MiB" if peak else ""))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
