"""Fine-tune SegFormer on GI-tract slices: ``python -m segapp.train --data DIR --out RUN_DIR``.

Defaults are the notebook's "8 GB settings" (SegFormer-B0 base, 288 x 288, batch 6 with
gradient accumulation 2, AdamW 3e-4 / 1e-4, 100 epochs, 16-bit mixed precision on CUDA).
The data set is decoded once into memory (on the GPU when it fits) and augmented in
batches on the device, so no DataLoader worker process is needed on any OS.

Run folder::

    RUN_DIR/train_config.json   effective configuration
    RUN_DIR/metrics.jsonl       one line per logged step and per validation
    RUN_DIR/summary.json        final figures
    RUN_DIR/best/               model folder of the best validation score (what the app serves)
    RUN_DIR/last/               model folder + training_state.pt, for --resume

Multi-GPU: ``torchrun --nproc_per_node=N -m segapp.train ...`` (DDP; NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from segapp.cli import DEVICE_HELP
from segapp.inference.segmenter import Segmenter, pick_device
from segapp.io.files import write_text_atomic
from segapp.labels import NUM_LABELS
from segapp.metrics.scoring import evaluate_slices
from segapp.metrics.slices import PER_CLASS_METRICS
from segapp.model.head_folding import FoldedTraining
from segapp.model.processing import ProcessingConfig, normalize, preprocess
from segapp.model.runtime import COMPILE_MODES
from segapp.model.weights import (
    DEFAULT_BASE,
    LoadedModel,
    ModelLoadError,
    load_model,
    recover_interrupted_save,
    save_model,
)
from segapp.training.augment import AugmentConfig, augment
from segapp.training.data import DataError, TrainSet, ValidSet, load_train_set, load_valid_set
from segapp.training.run_log import TENSORBOARD_CHOICES, RunLog, RunLogError, tensorboard_writer_class

STATE_FILE = "training_state.pt"
WARMUP_STEPS = 10  # optimizer steps left out of the steady-state throughput


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Every training option; the command line and ``--config FILE.json`` fill it."""

    data: str = _opt("", "data folder with train/{images,masks} and valid/{images,masks}")
    out: str = _opt("", "run folder to write (best/, last/, metrics.jsonl)")
    base: str = _opt(DEFAULT_BASE, "starting weights: hub id, model folder, .safetensors, Lightning .ckpt, or 'scratch'")
    image_size: int = _opt(288, "model input height and width in pixels")
    batch_size: int = _opt(6, "slices per forward pass (per process)")
    grad_accum: int = _opt(2, "forward passes per optimizer step (effective batch = batch_size x grad_accum x processes)")
    lr: float = _opt(3e-4, "AdamW learning rate (the peak with OneCycle)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    epochs: int = _opt(100, "passes over the training set")
    scheduler: str = _opt("onecycle", "learning-rate schedule", choices=["onecycle", "constant"])
    pct_start: float = _opt(0.3, "OneCycle: share of steps spent warming up")
    div_factor: float = _opt(25.0, "OneCycle: initial lr = lr / div_factor")
    final_div_factor: float = _opt(1e4, "OneCycle: final lr = initial lr / final_div_factor")
    precision: str = _opt("auto", "auto: bf16 on GPUs that have it, else fp16 on CUDA, fp32 on CPU", choices=["auto", "fp16", "bf16", "fp32"])
    device: str = _opt("auto", DEVICE_HELP)
    seed: int = _opt(42, "random seed (shuffling, augmentation, new head)")
    max_steps: int = _opt(0, "stop after this many optimizer steps (0: no limit; for smoke runs)")
    max_minutes: float = _opt(0.0, "stop (validating and saving first) after this many minutes of training (0: no limit)")
    valid_every: int = _opt(1, "validate every N epochs (and at the end)")
    early_stop: int = _opt(0, "stop after N validations without improvement (0: off)")
    log_every: int = _opt(50, "write a metrics line every N optimizer steps")
    tensorboard: str = _opt("auto", "also write TensorBoard event files to RUN_DIR/tensorboard: auto (when the tensorboard package is installed), yes, no", choices=list(TENSORBOARD_CHOICES))
    checkpoint_every: int = _opt(0, "also save last/ every N optimizer steps (0: at epoch ends only)")
    valid_batch_size: int = _opt(16, "slices per forward pass in validation")
    hausdorff: bool = _opt(True, "compute Hausdorff 95 in validation")
    augment: bool = _opt(True, "random affine and intensity augmentation")
    data_on_device: str = _opt("auto", "keep the decoded data set on the GPU: auto (when it fits), yes, no", choices=["auto", "yes", "no"])
    fold_head: bool = _opt(True, "train the decode head in its folded form: same function and gradients, about half the arithmetic (segapp.model.head_folding)")
    compile: str = _opt("off", "torch.compile the training forward pass (off, default, max-autotune, reduce-overhead); compiles for minutes first, pays off on long GPU runs", choices=list(COMPILE_MODES))
    cudnn_benchmark: bool = _opt(True, "let cuDNN pick the fastest convolution algorithms (fixed input size)")
    progress: bool = _opt(True, "show progress bars")
    resume: bool = _opt(False, "continue from RUN_DIR/last/ (saved configuration, optimizer, step, RNG)")
    description: str = _opt("", "what the data is, for the model card")


# Options a resumed run may change; the rest must match the saved run.
RESUMABLE = {"epochs", "max_steps", "max_minutes", "valid_every", "early_stop", "log_every", "checkpoint_every",
             "progress", "resume", "device", "valid_batch_size", "data_on_device", "fold_head",
             "compile", "tensorboard"}


class TrainingError(RuntimeError):
    """A problem that stops training, with a message saying what to do."""


# ----------------------------------------------------------------------------- setup


@dataclass
class Dist:
    """Process-group facts (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), pick_device(device_name)
    import torch.distributed as tdist

    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist, device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the forward pass, or None for fp32."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            print(f"note: --precision {precision} applies on CUDA only; training in fp32 on {device}")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[precision]


# ----------------------------------------------------------------------------- loss


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground classes.

    Args:
        logits: (B, C, h, w) at 1/4 resolution; upsampled to the labels' size first, as
            transformers' SegFormer loss does.
        labels: (B, H, W) long class ids.
    """
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits, labels)
    probs = logits.softmax(dim=1)[:, 1:]  # (B, C-1, H, W)
    onehot = F.one_hot(labels, NUM_LABELS).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)  # +1 smoothing: a class absent from batch and prediction scores ~1
    return ce + (1 - dice).mean()


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    processing: ProcessingConfig,
    state: dict[str, Any],
    card: dict[str, Any],
) -> None:
    """Write a model folder (and, for last/, the training state) atomically."""

    def write_state(tmp: Path) -> None:
        torch.save(state, tmp / STATE_FILE)

    save_model(model, folder, processing=processing, extra=write_state if state else None, **card)


def load_state(folder: Path) -> dict[str, Any]:
    """Training state of a last/ folder (plain tensors and numbers: weights_only)."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"Cannot resume: {path} is missing. Start a new run or point --out at a run folder.")
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- the run


def _data_on_device(train_set: TrainSet, device: torch.device, mode: str) -> bool:
    if device.type != "cuda" or mode == "no":
        return False
    if mode == "yes":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return train_set.nbytes < 0.25 * free  # leave the rest to the model


def _card(config: TrainConfig, metrics: dict[str, Any] | None, command: str, n_train: int, n_valid: int) -> dict[str, Any]:
    data = config.description or f"Data folder `{Path(config.data).name}`"
    data += f" ({n_train} training and {n_valid} validation slices)."
    card_metrics = None
    if metrics:
        per_class: dict[str, dict[str, float]] = {}
        for key in PER_CLASS_METRICS:
            for name, value in metrics.get(key, {}).items():
                if name != "background":
                    per_class.setdefault(name, {})[key] = value
        card_metrics = {"per_class": per_class}
        for key in ("mean_foreground_dice", "epoch", "step", "slices"):
            if key in metrics:
                card_metrics[key] = metrics[key]
    return {"data": data, "command": command, "metrics": card_metrics}


def train(config: TrainConfig, *, command: str = "") -> dict[str, Any]:
    """Run training as configured; returns the final summary.

    Raises:
        DataError, ModelLoadError, TrainingError: with messages that say what to fix.
    """
    if not config.data or not config.out:
        raise TrainingError("Both --data and --out are required.")
    if config.tensorboard == "yes":  # RunLogError without the package, before minutes of decoding
        tensorboard_writer_class(config.tensorboard)  # ("auto" cannot fail; every DDP rank runs this line)
    dist, device = setup_distributed(config.device)
    if config.max_minutes and dist.world > 1:
        # Processes would stop at different steps and wait on each other forever.
        raise TrainingError("--max-minutes works in a single process; under torchrun use --max-steps.")
    out = Path(config.out)
    data_dir = Path(config.data)
    amp_dtype = resolve_precision(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(config.seed + dist.rank)

    # Data
    processing = ProcessingConfig(height=config.image_size, width=config.image_size)
    t0 = time.perf_counter()
    train_set = load_train_set(data_dir / "train", processing, progress=config.progress and dist.main)
    valid_set: ValidSet | None = load_valid_set(data_dir / "valid", progress=config.progress and dist.main) if dist.main else None
    on_device = _data_on_device(train_set, device, config.data_on_device)
    if on_device:
        train_set = train_set.to(device)
    if dist.main:
        print(
            f"data: {len(train_set)} training slices ({train_set.nbytes / 2**20:.1f} MiB at "
            f"{config.image_size}x{config.image_size}, kept on {'the GPU' if on_device else 'the CPU'}), "
            f"{len(valid_set or [])} validation slices; decoded in {time.perf_counter() - t0:.1f} s"
        )

    # Model
    resume_state: dict[str, Any] | None = None
    if config.resume:  # a kill between a save's two renames leaves last.previous / best.previous
        recover_interrupted_save(out / "last")
        recover_interrupted_save(out / "best")
    if config.resume and (out / "last").is_dir():
        resume_state = load_state(out / "last")
        loaded = load_model(out / "last", device=device)
    else:
        if config.resume and dist.main:
            print(f"note: nothing to resume in {out / 'last'}; starting a new run")
        loaded = load_model(config.base, device=device, reset_head=True)
    model = loaded.model.train()
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "train_config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        log: RunLog | None = RunLog(
            out, config.tensorboard, resume_step=resume_state["step"] if resume_state is not None else None
        )
        if log.tensorboard_dir is not None:
            print(f"TensorBoard: tensorboard --logdir {log.tensorboard_dir}")
    else:
        log = None

    # Optimizer
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda"
    )
    micro_per_epoch = max(1, math.ceil(len(train_set) / (config.batch_size * dist.world)))
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    if config.scheduler == "onecycle":
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), pct_start=config.pct_start,
            div_factor=config.div_factor, final_div_factor=config.final_div_factor,
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed * 7919 + dist.rank)
    step, epoch, micro_done, best_score, stale = 0, 0, 0, -1.0, 0
    best_epoch: int | None = None
    if resume_state is not None:
        saved_total = resume_state["scheduler"].get("total_steps")
        if config.scheduler == "onecycle" and saved_total is not None and saved_total != max(total_steps, 2):
            # OneCycle's shape is fixed by its length: stepping past it fails, and a new length
            # would jump the learning rate mid-run.
            raise TrainingError(
                f"This run's OneCycle schedule is {saved_total} steps long; with these --epochs/--max-steps "
                f"it would be {total_steps}. Resume with the original values, or start a new run from "
                f"{out / 'last'} with --base."
            )
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        generator.set_state(resume_state["generator"])
        step, epoch, micro_done = resume_state["step"], resume_state["epoch"], resume_state["micro_done"]
        best_score, stale = resume_state["best_score"], resume_state["stale"]
        best_epoch = resume_state.get("best_epoch")
        torch.set_rng_state(resume_state["rng_cpu"])
        if device.type == "cuda" and resume_state["rng_cuda"].numel():
            torch.cuda.set_rng_state(resume_state["rng_cuda"], device)
        if dist.main:
            print(f"resumed from {out / 'last'}: step {step}, epoch {epoch + 1}, best {best_score:.4f}")
    # The folded form shares the model's parameters: optimizer, checkpoints and saved weights
    # see the ordinary transformers model.
    train_model: torch.nn.Module = FoldedTraining(model) if config.fold_head else model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile != "off":
        # Fixed batch shape except an epoch's last batch (one more compilation); the parameters
        # stay the model's own, so optimizer, checkpoints and validation are unchanged. Compiled
        # around DDP, as PyTorch recommends.
        train_model = torch.compile(train_model, mode=config.compile, dynamic=False)  # type: ignore[assignment]
    aug_config = AugmentConfig()

    def state_dict() -> dict[str, Any]:
        return {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "generator": generator.get_state(),
            "step": step, "epoch": epoch, "micro_done": micro_done,
            "best_score": best_score, "stale": stale, "best_epoch": best_epoch,
            # Dropout and drop-path draw from the global generators: save them for exact resumes.
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0),
        }

    def save_last() -> None:
        if dist.main:
            card = _card(config, None, command, len(train_set), len(valid_set or []))
            save_checkpoint(out / "last", model, processing, state_dict(), card)

    # Train!
    n_valid = len(valid_set or [])
    images_seen, train_seconds, last_metrics = 0, 0.0, None
    # Throughput after the first steps (cuDNN autotuning, allocator growth, lazy init), which
    # would otherwise dominate short benchmark runs: (training seconds, images) at WARMUP_STEPS.
    steady_mark: tuple[float, int] | None = None
    running = torch.zeros((), device=device)
    done = step >= total_steps
    start_step = step
    started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        while epoch < config.epochs and not done:
            # Same permutation on every rank (seeded by epoch); each rank takes its share.
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            shard = order[dist.rank :: dist.world]
            batches = [shard[i : i + config.batch_size] for i in range(0, len(shard), config.batch_size)]
            batches = batches[:micro_per_epoch]
            bar = None
            if config.progress and dist.main:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(batches), initial=micro_done, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
            epoch_start, epoch_images = time.perf_counter(), 0
            optimizer.zero_grad(set_to_none=True)
            for micro in range(micro_done, len(batches)):
                index = batches[micro].to(train_set.images.device)
                # Augment on the device, in the batch (uint8 travels; floats are made there)
                images, labels = augment(
                    train_set.images[index].to(device, non_blocking=True),
                    train_set.masks[index].to(device, non_blocking=True),
                    aug_config, generator, geometric=config.augment, intensity=config.augment,
                )  # (B, 1, S, S) float 0..255, (B, S, S) long
                pixel_values = normalize(images, processing)  # (B, 3, S, S)
                boundary = (micro + 1) % config.grad_accum == 0 or micro + 1 == len(batches)
                sync = train_model.no_sync() if dist.world > 1 and not boundary else _null()
                # Forward / backward
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = train_model(pixel_values=pixel_values).logits  # (B, C, S/4, S/4)
                    loss = segmentation_loss(logits, labels)
                    scaler.scale(loss / config.grad_accum).backward()
                running += loss.detach()  # no host sync per step; read at log time
                epoch_images += len(index) * dist.world
                if bar is not None:
                    bar.update(1)
                if not boundary:
                    continue
                # Step
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                micro_done = micro + 1
                if step == start_step + WARMUP_STEPS:
                    _sync(device)
                    now = train_seconds + time.perf_counter() - epoch_start
                    steady_mark = (now, images_seen + epoch_images)
                # Log
                if step % config.log_every == 0 and dist.main:
                    elapsed = time.perf_counter() - epoch_start
                    mean_loss = running.item() / (config.log_every * config.grad_accum)
                    running.zero_()
                    rate = epoch_images / max(elapsed, 1e-9)
                    assert log is not None
                    log.write({"type": "step", "step": step, "epoch": epoch + 1, "loss": mean_loss,
                               "lr": scheduler.get_last_lr()[0], "images_per_s": rate})
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    save_last()
                if step >= total_steps or (
                    config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes
                ):
                    done = True
                    break
            if bar is not None:
                bar.close()
            _sync(device)
            train_seconds += time.perf_counter() - epoch_start
            images_seen += epoch_images
            if micro_done >= len(batches):
                epoch, micro_done = epoch + 1, 0
            # Validate, keep the best
            if dist.main and valid_set is not None and (epoch % config.valid_every == 0 or done or epoch >= config.epochs):
                metrics = validate(model, loaded, processing, valid_set, device, config)
                metrics.update(epoch=epoch if micro_done == 0 else epoch + 1, step=step)
                model.train()
                assert log is not None
                log.write({"type": "valid", **metrics})
                print(
                    f"epoch {metrics['epoch']}: step {step}, valid loss {metrics['loss']:.4f}, "
                    f"mean foreground Dice {metrics['mean_foreground_dice']:.4f} "
                    + " ".join(f"{k}={v:.3f}" for k, v in metrics["dice"].items() if k != "background")
                )
                last_metrics = metrics
                if metrics["mean_foreground_dice"] > best_score:
                    best_score, best_epoch, stale = metrics["mean_foreground_dice"], metrics["epoch"], 0
                    save_checkpoint(out / "best", model, processing, {},
                                    _card(config, metrics, command, len(train_set), n_valid))
                else:
                    stale += 1
            save_last()
            stop = torch.tensor([int(bool(config.early_stop) and stale >= config.early_stop)], device=device)
            if dist.world > 1:  # rank 0 decides (it validates); every rank must leave together
                import torch.distributed as tdist

                tdist.broadcast(stop, 0)
            if stop.item():
                if dist.main:
                    print(f"early stop: {stale} validations without improvement")
                break
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"Out of GPU memory at batch size {config.batch_size}. Try --batch-size "
            f"{max(1, config.batch_size // 2)} --grad-accum {config.grad_accum * 2} (same effective batch)."
        ) from None
    finally:
        if log is not None:
            log.close()
        if dist.world > 1:
            import torch.distributed as tdist

            tdist.destroy_process_group()

    summary = {
        "best_mean_foreground_dice": best_score,
        "best_epoch": best_epoch,
        "last_validation": last_metrics,
        "steps": step,
        "epochs": epoch,
        "train_images_per_s": images_seen / max(train_seconds, 1e-9),
        "steady_images_per_s": (
            (images_seen - steady_mark[1]) / max(train_seconds - steady_mark[0], 1e-9) if steady_mark else None
        ),
        "wall_seconds": time.perf_counter() - started,
        "device": str(device),
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "processes": dist.world,
    }
    if dist.main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: v for k, v in summary.items() if k != "last_validation"}, indent=2))
    return summary


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _null():
    import contextlib

    return contextlib.nullcontext()


def validate(
    model: torch.nn.Module,
    loaded: LoadedModel,
    processing: ProcessingConfig,
    valid_set: ValidSet,
    device: torch.device,
    config: TrainConfig,
) -> dict[str, Any]:
    """Score the model exactly as the inference service would serve it, plus the training loss."""
    service = Segmenter(
        dataclasses.replace(loaded, model=model, processing=processing),
        device=device, max_batch_size=config.valid_batch_size, warmup=False,
    )
    metrics = evaluate_slices(
        service, valid_set.scans, valid_set.masks, batch_size=config.valid_batch_size,
        hausdorff=config.hausdorff, progress=config.progress,
    )
    metrics["loss"] = validation_loss(model, processing, valid_set, device, config.valid_batch_size)
    return metrics


@torch.inference_mode()
def validation_loss(
    model: torch.nn.Module, processing: ProcessingConfig, valid_set: ValidSet, device: torch.device, batch_size: int
) -> float:
    """The training loss on the validation slices, at the model input size, without augmentation.

    Inputs go through :func:`segapp.model.processing.preprocess` (the serving path); masks are resized
    with nearest neighbour, as for training. Returns the mean over slices.
    """
    size = (processing.height, processing.width)
    total = 0.0
    for start in range(0, len(valid_set), batch_size):
        scans = valid_set.scans[start : start + batch_size]
        masks = valid_set.masks[start : start + batch_size]
        pixel_values = preprocess([scan.pixels for scan in scans], processing, device)  # (B, 3, S, S)
        labels = torch.cat([
            F.interpolate(torch.from_numpy(m)[None, None].float(), size=size, mode="nearest")[0].long()
            for m in masks
        ]).to(device)  # (B, S, S)
        logits = model(pixel_values=pixel_values).logits  # (B, C, S/4, S/4)
        total += segmentation_loss(logits, labels).item() * len(scans)
    return total / len(valid_set)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segapp.train",
        description="Fine-tune SegFormer on GI-tract MRI slices (notebook layout: DIR/{train,valid}/{images,masks}).",
        argument_default=argparse.SUPPRESS,  # only options given on the line override --config
    )
    parser.add_argument("--config", help="JSON file of options (keys as below, with underscores)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, choices=f.metadata.get("choices"), help=help_text)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Defaults <- ``--config`` file <- command-line options; on --resume, the saved run's
    configuration replaces the defaults and the file."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if "config" in args:
        path = Path(args.pop("config"))
        try:
            values.update(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainingError(f"Cannot read the config file {path}: {exc}") from None
    values.update(args)
    if values.get("resume") and values.get("out"):
        saved = Path(values["out"]) / "train_config.json"
        if saved.is_file():
            previous = json.loads(saved.read_text(encoding="utf-8"))
            changed = {k for k in args if k not in RESUMABLE and previous.get(k) != args[k]}
            if changed:
                raise TrainingError(
                    f"--resume continues the saved run; these options differ from it: {sorted(changed)}. "
                    "Drop them, or start a new run in another --out folder."
                )
            values = {**previous, **args}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise TrainingError(f"Unknown options in the config: {sorted(unknown)}")
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
        command = "python -m segapp.train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        train(config, command=command)
    except (DataError, ModelLoadError, TrainingError, RunLogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only or vanished folder
        print(
            f"error: a file could not be read or written: {exc}. Training stopped; best/ and last/ "
            "keep their last complete versions (free space or fix permissions, then --resume).",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint in RUN_DIR/last is intact; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
