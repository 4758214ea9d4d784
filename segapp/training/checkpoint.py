"""The run folder's model folders: best/ (what the app serves) and last/ (plus the training state, for --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segapp.metrics.slices import PER_CLASS_METRICS
from segapp.model.processing import ProcessingConfig
from segapp.model.weights import save_model
from segapp.training.config import TrainConfig, TrainingError

STATE_FILE = "training_state.pt"


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    processing: ProcessingConfig,
    state: dict[str, Any],
    card: dict[str, Any],
) -> None:
    """Write a model folder (and, for last/, the training state) atomically.

    Args:
        state: The training state for ``STATE_FILE``; empty for best/, which has none.
        card: Keywords for the model card (``data``, ``command``, ``metrics``), see :func:`model_card`.
    """

    def write_state(tmp: Path) -> None:
        torch.save(state, tmp / STATE_FILE)

    save_model(model, folder, processing=processing, extra=write_state if state else None, **card)


def load_state(folder: Path) -> dict[str, Any]:
    """Training state of a last/ folder (plain tensors and numbers: weights_only).

    Raises:
        TrainingError: the folder has no training state.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"Cannot resume: {path} is missing. Start a new run or point --out at a run folder.")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_card(config: TrainConfig, metrics: dict[str, Any] | None, command: str, n_train: int, n_valid: int) -> dict[str, Any]:
    """Model-card keywords for :func:`save_checkpoint`: the data described, the command, and the
    validation figures (per foreground class, plus mean Dice, epoch, step, slices) when given."""
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
