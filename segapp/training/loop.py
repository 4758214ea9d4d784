"""The training loop, in named phases: set up, restore (--resume), one epoch, validate and keep
the best, save last/, stop early; then the summary.

:func:`train` reads top to bottom. What stays fixed for a run (configuration, data, model,
optimizer) lives in a :class:`Run`; what moves (step, epoch, best score, timers) in a
:class:`TrainState`, which the phases update. last/training_state.pt holds the state's resumable
fields plus the optimizer, scheduler, scaler and random generators.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from segapp.io.files import write_text_atomic
from segapp.metrics.labelled_data import ValidSet, load_valid_set
from segapp.model.context import FLAT
from segapp.model.distributed import Dist, leave_distributed, setup_distributed
from segapp.model.head_folding import FoldedTraining
from segapp.model.inflate import centre_channel_init
from segapp.model.processing import ProcessingConfig, normalize
from segapp.model.runtime import synchronize
from segapp.model.weights import LoadedModel, load_model, recover_interrupted_save
from segapp.training.augment import augment
from segapp.training.checkpoint import load_state, model_card, save_checkpoint
from segapp.training.config import TrainConfig, TrainingError, augment_config
from segapp.training.data import TrainSet, load_train_set
from segapp.training.devices import agree_with_rank0, keep_data_on_device, resolve_precision
from segapp.training.loss import segmentation_loss
from segapp.training.run_log import RunLog
from segapp.training.tracking import check_ready, open_trackers, resolve_trackers
from segapp.training.validation import overlay_indices, validate, validation_overlays, validation_service

WARMUP_STEPS = 10  # optimizer steps left out of the steady-state throughput

# TrainState fields saved in last/training_state.pt; the others describe this process's work only.
RESUMED_FIELDS = ("step", "epoch", "micro_done", "best_score", "stale", "best_epoch")


@dataclass
class TrainState:
    """Where the run is. The phases update it; :data:`RESUMED_FIELDS` survive a --resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    micro_done: int = 0  # micro-batches of the current epoch done (a checkpoint can fall mid-epoch)
    best_score: float = -1.0  # best mean foreground Dice so far
    best_epoch: int | None = None
    stale: int = 0  # validations since the best one
    start_step: int = 0  # step this process started from
    started: float = 0.0  # perf_counter at the loop's start
    images_seen: int = 0  # training images of all ranks in this process's completed epochs
    train_seconds: float = 0.0  # time in epochs, validation left out
    epoch_started: float = 0.0  # perf_counter at the current epoch's start
    epoch_images: int = 0  # images of all ranks in the current epoch so far
    # Throughput after the first steps (cuDNN autotuning, allocator growth, lazy init), which
    # would otherwise dominate short benchmark runs: (training seconds, images) at WARMUP_STEPS.
    steady_mark: tuple[float, int] | None = None
    last_metrics: dict[str, Any] | None = None
    done: bool = False  # step or time limit reached
    running_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # sum since the last log line


@dataclass
class Run:
    """What stays fixed during a run: options, processes, data, model, optimizer, log."""

    config: TrainConfig
    command: str
    dist: Dist
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for fp32
    processing: ProcessingConfig
    train_set: TrainSet
    valid_set: ValidSet | None  # rank 0 only: it validates
    loaded: LoadedModel
    model: torch.nn.Module  # the transformers model: saved and validated
    train_model: torch.nn.Module  # what the step runs: the model, folded, in DDP, compiled as asked
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # augmentation draws, per rank
    log: RunLog | None  # rank 0 only
    micro_per_epoch: int  # micro-batches per rank and epoch
    total_steps: int  # optimizer steps of the whole run (the OneCycle length)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def n_valid(self) -> int:
        return len(self.valid_set or [])


def train(config: TrainConfig, *, command: str = "") -> dict[str, Any]:
    """Run training as configured; returns the final summary (also RUN_DIR/summary.json).

    Raises:
        DataError, ModelLoadError, TrainingError, TrackingError: with messages that say what to fix.
    """
    if not config.data or not config.out:
        raise TrainingError("Both --data and --out are required.")
    if os.environ.get("RANK", "0") == "0":  # rank 0 logs; under torchrun its failure stops the others
        # A missing tracker package or W&B login stops here, before minutes of decoding.
        check_ready(resolve_trackers(config.report_to, config.tensorboard))
    dist, device = setup_distributed(config.device)
    try:
        summary = run_training(config, dist, device, command)
    except BaseException:
        leave_distributed(dist, together=False)  # the other ranks may never get here
        raise
    # run_training has returned, so its DDP wrapper (which holds the process group) is gone.
    leave_distributed(dist)
    return summary


def run_training(config: TrainConfig, dist: Dist, device: torch.device, command: str) -> dict[str, Any]:
    """The loop of :func:`train`, in a process that has joined the process group (if any)."""
    if config.max_minutes and dist.world > 1:
        # Processes would stop at different steps and wait on each other forever.
        raise TrainingError("--max-minutes works in a single process; under torchrun use --max-steps.")
    # Set up: data, model (last/ on --resume), run folder, optimizer
    run, saved = set_up(config, dist, device, command)
    state = TrainState(running_loss=torch.zeros((), device=device))
    # Restore where the saved run stopped
    if saved is not None:
        restore(run, state, saved)
    run.train_model = training_module(run.model, config, dist, device)
    # Train!
    state.done = state.step >= run.total_steps
    state.start_step, state.started = state.step, time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    finished = False
    try:
        while state.epoch < config.epochs and not state.done:
            # One epoch (or what is left of it), up to the step and time limits
            train_epoch(run, state)
            # Validate, keep the best
            if wants_validation(run, state):
                validate_and_keep_best(run, state)
            # Save last/ (what --resume continues from)
            save_last(run, state)
            # Early stop: rank 0 validates, so it decides; every rank must leave together
            if agree_with_rank0(bool(config.early_stop) and state.stale >= config.early_stop, dist, device):
                if dist.main:
                    print(f"early stop: {state.stale} validations without improvement")
                break
        finished = True
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"Out of GPU memory at batch size {config.batch_size}. Try --batch-size "
            f"{max(1, config.batch_size // 2)} --grad-accum {config.grad_accum * 2} (same effective batch)."
        ) from None
    finally:
        if run.log is not None:  # a finished run keeps its best model folder with the trackers' run
            run.log.close(run.out / "best" if finished else None, failed=not finished)
    # Summary
    return summarize(run, state)


# ----------------------------------------------------------------------------- set up


def set_up(config: TrainConfig, dist: Dist, device: torch.device, command: str) -> tuple[Run, dict[str, Any] | None]:
    """Everything a run needs before its first step; returns it and, on --resume, the saved training state."""
    amp_dtype = resolve_precision(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(config.seed + dist.rank)
    try:
        processing = ProcessingConfig(height=config.image_size, width=config.image_size,
                                      context_offsets=tuple(config.context))  # type: ignore[arg-type]
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    train_set, valid_set = load_data(config, processing, dist, device)
    loaded, saved = load_start_model(config, dist, device, processing)
    model = loaded.model.train()
    log = open_run_folder(config, saved["step"] if saved is not None else None) if dist.main else None
    micro_per_epoch = max(1, math.ceil(len(train_set) / (config.batch_size * dist.world)))
    total_steps = math.ceil(micro_per_epoch / config.grad_accum) * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda"
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed * 7919 + dist.rank)
    run = Run(
        config=config, command=command, dist=dist, device=device, amp_dtype=amp_dtype, processing=processing,
        train_set=train_set, valid_set=valid_set, loaded=loaded, model=model, train_model=model,
        optimizer=optimizer, scheduler=make_scheduler(config, optimizer, total_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16), generator=generator,
        log=log, micro_per_epoch=micro_per_epoch, total_steps=total_steps,
    )
    return run, saved


def load_data(config: TrainConfig, processing: ProcessingConfig, dist: Dist,
              device: torch.device) -> tuple[TrainSet, ValidSet | None]:
    """Decode the training set (every rank) and the validation set (rank 0), and say so."""
    data_dir = Path(config.data)
    t0 = time.perf_counter()
    train_set = load_train_set(data_dir / "train", processing, progress=config.progress and dist.main)
    valid_set = load_valid_set(data_dir / "valid", progress=config.progress and dist.main) if dist.main else None
    on_device = keep_data_on_device(train_set, device, config.data_on_device)
    if on_device:
        train_set = train_set.to(device)
    if dist.main:
        print(
            f"data: {len(train_set)} training slices ({train_set.nbytes / 2**20:.1f} MiB at "
            f"{config.image_size}x{config.image_size}, kept on {'the GPU' if on_device else 'the CPU'}), "
            f"{len(valid_set or [])} validation slices; decoded in {time.perf_counter() - t0:.1f} s"
        )
        if processing.is_2_5d:
            print(f"2.5D input: channels at slice offsets {list(processing.context_offsets)}; "
                  f"{_with_neighbours(train_set)} of {len(train_set)} training slices have a neighbour "
                  "in the split (the others are at an edge, or slices without a caseN_dayD_slice_SSSS name)")
    return train_set, valid_set


def _with_neighbours(train_set: TrainSet) -> int:
    """Training slices with at least one channel filled by another slice."""
    own = torch.arange(len(train_set), device=train_set.neighbours.device)[:, None]
    return int((train_set.neighbours != own).any(dim=1).sum())


def load_start_model(config: TrainConfig, dist: Dist, device: torch.device,
                     processing: ProcessingConfig) -> tuple[LoadedModel, dict[str, Any] | None]:
    """The weights to start from: last/ and its training state on --resume, else ``--base`` with a new head
    (a 2D base of a 2.5D run first folded into the centre channel under the run's ``processing``,
    unless ``--context-init copy``)."""
    out = Path(config.out)
    if config.resume:  # a kill between a save's two renames leaves last.previous / best.previous
        recover_interrupted_save(out / "last")
        recover_interrupted_save(out / "best")
    if config.resume and (out / "last").is_dir():
        saved = load_state(out / "last")
        return load_model(out / "last", device=device), saved
    if config.resume and dist.main:
        print(f"note: nothing to resume in {out / 'last'}; starting a new run")
    loaded = load_model(config.base, device=device, reset_head=True)
    if config.context_init == "centre" and processing.is_2_5d and loaded.processing.context_offsets == FLAT \
            and loaded.kind != "scratch":
        centre = centre_channel_init(loaded.model, processing)
        if dist.main:
            print(f"2.5D from 2D weights: first convolution folded into channel {centre} (offset "
                  f"{config.context[centre]}); the run starts as the 2D model (--context-init copy: as loaded)")
    return loaded, None


def open_run_folder(config: TrainConfig, resume_step: int | None) -> RunLog:
    """Rank 0: write RUN_DIR/train_config.json and open the metrics log and the trackers (from
    ``resume_step`` on a resume)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dataclasses.asdict(config)
    write_text_atomic(out / "train_config.json", json.dumps(options, indent=2) + "\n")
    trackers = open_trackers(resolve_trackers(config.report_to, config.tensorboard), out, config=options,
                             project=config.wandb_project, resume_step=resume_step)
    return RunLog(out, trackers, resume_step=resume_step)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """OneCycle over ``total_steps`` (at least 2, its minimum), or a constant rate."""
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), pct_start=config.pct_start,
            div_factor=config.div_factor, final_div_factor=config.final_div_factor,
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def training_module(model: torch.nn.Module, config: TrainConfig, dist: Dist, device: torch.device) -> torch.nn.Module:
    """What the training step calls: ``model`` folded (--fold-head), in DDP (torchrun), compiled (--compile).

    Every form shares ``model``'s parameters, so optimizer, checkpoints and validation see the
    ordinary transformers model.
    """
    train_model: torch.nn.Module = FoldedTraining(model) if config.fold_head else model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile != "off":
        # Fixed batch shape except an epoch's last batch (one more compilation). Compiled around
        # DDP, as PyTorch recommends.
        train_model = torch.compile(train_model, mode=config.compile, dynamic=False)  # type: ignore[assignment]
    return train_model


# ----------------------------------------------------------------------------- resume


def training_state(run: Run, state: TrainState) -> dict[str, Any]:
    """What last/training_state.pt holds: optimizer, scheduler, scaler, generators and the resumed fields."""
    device = run.device
    return {
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(), "generator": run.generator.get_state(),
        **{name: getattr(state, name) for name in RESUMED_FIELDS},
        # Dropout and drop-path draw from the global generators: save them for exact resumes.
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0),
    }


def restore(run: Run, state: TrainState, saved: dict[str, Any]) -> None:
    """Continue from a :func:`training_state`: optimizer, schedule, generators, step and best score.

    Raises:
        TrainingError: the OneCycle schedule would change length.
    """
    saved_total = saved["scheduler"].get("total_steps")
    if run.config.scheduler == "onecycle" and saved_total is not None and saved_total != max(run.total_steps, 2):
        # OneCycle's shape is fixed by its length: stepping past it fails, and a new length
        # would jump the learning rate mid-run.
        raise TrainingError(
            f"This run's OneCycle schedule is {saved_total} steps long; with these --epochs/--max-steps "
            f"it would be {run.total_steps}. Resume with the original values, or start a new run from "
            f"{run.out / 'last'} with --base."
        )
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.scaler.load_state_dict(saved["scaler"])
    run.generator.set_state(saved["generator"])
    state.step, state.epoch, state.micro_done = saved["step"], saved["epoch"], saved["micro_done"]
    state.best_score, state.stale = saved["best_score"], saved["stale"]
    state.best_epoch = saved.get("best_epoch")  # absent from states saved before it was recorded
    torch.set_rng_state(saved["rng_cpu"])
    if run.device.type == "cuda" and saved["rng_cuda"].numel():
        torch.cuda.set_rng_state(saved["rng_cuda"], run.device)
    if run.dist.main:
        print(f"resumed from {run.out / 'last'}: step {state.step}, epoch {state.epoch + 1}, best {state.best_score:.4f}")


# ----------------------------------------------------------------------------- one epoch


def epoch_batches(run: Run, epoch: int) -> list[torch.Tensor]:
    """This rank's micro-batches of ``epoch``: slice indices, at most batch_size each."""
    config, dist = run.config, run.dist
    # Same permutation on every rank (seeded by epoch); each rank takes its share.
    order = torch.randperm(len(run.train_set), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
    shard = order[dist.rank :: dist.world]
    batches = [shard[i : i + config.batch_size] for i in range(0, len(shard), config.batch_size)]
    return batches[: run.micro_per_epoch]


def train_epoch(run: Run, state: TrainState) -> None:
    """Train from ``state.micro_done`` to the epoch's end, or to the step / time limit (``state.done``)."""
    config = run.config
    batches = epoch_batches(run, state.epoch)
    bar = None
    if config.progress and run.dist.main:
        bar = tqdm(total=len(batches), initial=state.micro_done, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                   unit="batch", leave=False)
    state.epoch_started, state.epoch_images = time.perf_counter(), 0
    run.optimizer.zero_grad(set_to_none=True)
    for micro in range(state.micro_done, len(batches)):
        index = batches[micro].to(run.train_set.images.device)
        boundary = (micro + 1) % config.grad_accum == 0 or micro + 1 == len(batches)
        state.running_loss += forward_backward(run, index, sync_gradients=boundary)  # no host sync per step
        state.epoch_images += len(index) * run.dist.world
        if bar is not None:
            bar.update(1)
        if not boundary:
            continue
        # Step
        optimizer_step(run)
        state.step += 1
        state.micro_done = micro + 1
        if state.step == state.start_step + WARMUP_STEPS:
            synchronize(run.device)
            now = state.train_seconds + time.perf_counter() - state.epoch_started
            state.steady_mark = (now, state.images_seen + state.epoch_images)
        # Log
        if state.step % config.log_every == 0 and run.dist.main:
            log_step(run, state, bar)
        if config.checkpoint_every and state.step % config.checkpoint_every == 0:
            save_last(run, state)
        if state.step >= run.total_steps or (
            config.max_minutes and time.perf_counter() - state.started > 60 * config.max_minutes
        ):
            state.done = True
            break
    if bar is not None:
        bar.close()
    synchronize(run.device)
    state.train_seconds += time.perf_counter() - state.epoch_started
    state.images_seen += state.epoch_images
    if state.micro_done >= len(batches):
        state.epoch, state.micro_done = state.epoch + 1, 0


def forward_backward(run: Run, index: torch.Tensor, *, sync_gradients: bool) -> torch.Tensor:
    """Augment the slices ``index`` on the device, run forward and backward; returns the detached loss.

    ``sync_gradients``: False between gradient-accumulation boundaries, where DDP skips its all-reduce.
    """
    config, device = run.config, run.device
    # Augment on the device, in the batch (uint8 travels; floats are made there)
    # 2.5D: each slice's neighbours are gathered now, from slices stored once.
    images, labels = augment(
        run.train_set.inputs(index, run.processing).to(device, non_blocking=True),
        run.train_set.masks[index].to(device, non_blocking=True),
        augment_config(config), run.generator, geometric=config.augment, intensity=config.augment,
    )  # (B, 1 or 3, S, S) float 0..255, (B, S, S) long
    pixel_values = normalize(images, run.processing)  # (B, 3, S, S)
    no_sync = run.dist.world > 1 and not sync_gradients
    with run.train_model.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            logits = run.train_model(pixel_values=pixel_values).logits  # (B, C, S/4, S/4)
        loss = segmentation_loss(logits, labels)
        run.scaler.scale(loss / config.grad_accum).backward()
    return loss.detach()


def optimizer_step(run: Run) -> None:
    """Apply the accumulated gradients (through the fp16 scaler), clear them, advance the schedule."""
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()


def log_step(run: Run, state: TrainState, bar: Any) -> None:
    """Rank 0: a metrics line with the mean loss since the last one, the rate and the learning rate."""
    config = run.config
    elapsed = time.perf_counter() - state.epoch_started
    mean_loss = state.running_loss.item() / (config.log_every * config.grad_accum)
    state.running_loss.zero_()
    rate = state.epoch_images / max(elapsed, 1e-9)
    assert run.log is not None
    run.log.write({"type": "step", "step": state.step, "epoch": state.epoch + 1, "loss": mean_loss,
                   "lr": run.scheduler.get_last_lr()[0], "images_per_s": rate})
    if bar is not None:
        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")


# ----------------------------------------------------------------------------- validate, save


def wants_validation(run: Run, state: TrainState) -> bool:
    """Rank 0 validates every --valid-every epochs, and at the run's end."""
    config = run.config
    return run.dist.main and run.valid_set is not None and (
        state.epoch % config.valid_every == 0 or state.done or state.epoch >= config.epochs
    )


def validate_and_keep_best(run: Run, state: TrainState) -> None:
    """Score the model on the validation set, log it, and save best/ when the mean foreground Dice improved."""
    assert run.valid_set is not None and run.log is not None
    metrics = validate(run.model, run.loaded, run.processing, run.valid_set, run.device, run.config)
    metrics.update(epoch=state.epoch if state.micro_done == 0 else state.epoch + 1, step=state.step)
    run.log.write({"type": "valid", **metrics})
    if run.log.wants_images:
        service = validation_service(run.model, run.loaded, run.processing, run.device, run.config)
        run.log.write_images(validation_overlays(service, run.valid_set, overlay_indices(run.valid_set)), state.step)
    run.model.train()
    print(
        f"epoch {metrics['epoch']}: step {state.step}, valid loss {metrics['loss']:.4f}, "
        f"mean foreground Dice {metrics['mean_foreground_dice']:.4f} "
        + " ".join(f"{k}={v:.3f}" for k, v in metrics["dice"].items() if k != "background")
    )
    state.last_metrics = metrics
    if metrics["mean_foreground_dice"] > state.best_score:
        state.best_score, state.best_epoch, state.stale = metrics["mean_foreground_dice"], metrics["epoch"], 0
        card = model_card(run.config, metrics, run.command, len(run.train_set), run.n_valid)
        save_checkpoint(run.out / "best", run.model, run.processing, {}, card)
    else:
        state.stale += 1


def save_last(run: Run, state: TrainState) -> None:
    """Rank 0: write last/ with the training state, for --resume."""
    if run.dist.main:
        card = model_card(run.config, None, run.command, len(run.train_set), run.n_valid)
        save_checkpoint(run.out / "last", run.model, run.processing, training_state(run, state), card)


# ----------------------------------------------------------------------------- summary


def summarize(run: Run, state: TrainState) -> dict[str, Any]:
    """The run's figures; rank 0 writes them to RUN_DIR/summary.json and prints them."""
    device, amp_dtype, mark = run.device, run.amp_dtype, state.steady_mark
    summary = {
        "best_mean_foreground_dice": state.best_score,
        "best_epoch": state.best_epoch,
        "last_validation": state.last_metrics,
        "steps": state.step,
        "epochs": state.epoch,
        "train_images_per_s": state.images_seen / max(state.train_seconds, 1e-9),
        "steady_images_per_s": (
            (state.images_seen - mark[1]) / max(state.train_seconds - mark[0], 1e-9) if mark else None
        ),
        "wall_seconds": time.perf_counter() - state.started,
        "device": str(device),
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "processes": run.dist.world,
    }
    if run.dist.main:
        write_text_atomic(run.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: v for k, v in summary.items() if k != "last_validation"}, indent=2))
    return summary
