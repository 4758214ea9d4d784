"""Experiment trackers of a training run: TensorBoard event files and Weights & Biases runs.

One option picks them, as in HuggingFace's ``report_to``: ``--report-to tensorboard,wandb`` (a
comma list), ``all`` (every tracker whose package is installed), ``none``, or ``auto`` (the
default: TensorBoard when installed, W&B when installed *and* configured, see
:func:`wandb_configured`). The older ``--tensorboard auto|yes|no`` still works and is folded in
(:func:`requested`). :func:`resolve_trackers` turns both into tracker names, :func:`check_ready`
stops with a message before training when one cannot work (package missing, no W&B login), and
:func:`open_trackers` opens them; each is a :class:`Tracker`. Commands that train
(``segapp.train``, later ``segapp.finetune``) share this module.

Neither tracker is a requirement: tensorboard and wandb are imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import netrc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from segapp.io.files import write_text_atomic

TRACKERS = ("tensorboard", "wandb")
REPORT_TO_WORDS = ("auto", "all", "none")
TENSORBOARD_CHOICES = ("auto", "yes", "no")
REPORT_TO_HELP = (
    "experiment trackers, a comma list of tensorboard, wandb; or all (every one installed), none, auto "
    "(tensorboard when installed, wandb when installed and configured: WANDB_API_KEY, a `wandb login`, "
    "or WANDB_MODE=offline)"
)
WANDB_PROJECT = "segapp"  # the W&B project when neither --wandb-project nor WANDB_PROJECT says
WANDB_RUN_FILE = "wandb_run.json"  # in the run folder: the W&B run a --resume continues
IMAGES_KEY = "valid/overlays"
STEP_KEY = "step"  # every tracker's x axis: the optimizer step

TENSORBOARD_MISSING = (
    "TensorBoard logging was asked for (--report-to tensorboard or --tensorboard yes) but the tensorboard "
    "package is not installed: pip install tensorboard, or leave it out"
)
WANDB_MISSING = (
    "Weights & Biases logging was asked for (--report-to wandb) but the wandb package is not installed: "
    'pip install "segapp[wandb]", or leave it out'
)
WANDB_NO_LOGIN = (
    "Weights & Biases logging was asked for but no W&B login was found. Run `wandb login`, or set "
    "WANDB_API_KEY, or log offline with WANDB_MODE=offline (then `wandb sync` later); or drop wandb "
    "from --report-to. Training did not start."
)

# An overlay image for the trackers: (caption, (H, W, 3) uint8 RGB).
Overlay = tuple[str, np.ndarray]


class TrackingError(RuntimeError):
    """A tracker that was asked for cannot work; the message says what to do."""


class Tracker(Protocol):
    """Where a run's figures go besides ``metrics.jsonl``."""

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        """Record ``tag -> value`` at optimizer step ``step``."""

    def log_images(self, images: Sequence[Overlay], step: int) -> None:
        """Record validation overlays at ``step``."""

    def close(self, model_dir: Path | None = None, *, failed: bool = False) -> None:
        """End the run; ``model_dir``: the model folder to keep with it (the best one), if any."""


# ----------------------------------------------------------------------------- which trackers


def requested(report_to: str, tensorboard: str = "auto") -> tuple[set[str], set[str]]:
    """The trackers ``--report-to`` and ``--tensorboard`` ask for: (required, each one if available).

    "if available" means installed for ``all``, and for ``auto`` also configured (wandb).

    Raises:
        TrackingError: an unknown name, a word mixed with names, or a contradictory pair such as
            ``--report-to none --tensorboard yes``.
    """
    if tensorboard not in TENSORBOARD_CHOICES:
        raise TrackingError(f"--tensorboard must be one of {', '.join(TENSORBOARD_CHOICES)}, got {tensorboard!r}")
    words = [word.strip().lower() for word in report_to.split(",") if word.strip()]
    unknown = [word for word in words if word not in TRACKERS + REPORT_TO_WORDS]
    if unknown or not words or (len(words) > 1 and set(words) & set(REPORT_TO_WORDS)):
        raise TrackingError(
            f"--report-to {report_to!r}: give a comma list of {', '.join(TRACKERS)}, or one of "
            f"{', '.join(REPORT_TO_WORDS)}"
        )
    explicit = words[0] not in REPORT_TO_WORDS
    required = set(words) if explicit else set()
    optional = set(TRACKERS) if words[0] in ("auto", "all") else set()
    if tensorboard != "auto" and (explicit or words[0] == "none") and (tensorboard == "yes") != ("tensorboard" in required):
        raise TrackingError(
            f"--tensorboard {tensorboard} contradicts --report-to {report_to}: use one of the two "
            "(--report-to alone is enough)"
        )
    if tensorboard == "yes":
        required.add("tensorboard")
    optional -= required | ({"tensorboard"} if tensorboard == "no" else set())
    return required, optional


def resolve_trackers(report_to: str, tensorboard: str = "auto") -> tuple[str, ...]:
    """The trackers to open, in :data:`TRACKERS` order (see :func:`requested`).

    Raises:
        TrackingError: as :func:`requested`; or a required tracker's package is missing.
    """
    required, optional = requested(report_to, tensorboard)
    auto = report_to.strip().lower() == "auto"
    chosen: list[str] = []
    if "tensorboard" in required | optional:
        if _summary_writer_class() is not None:
            chosen.append("tensorboard")
        elif "tensorboard" in required:
            raise TrackingError(TENSORBOARD_MISSING)
    if "wandb" in required | optional:
        if _wandb_installed() and ("wandb" in required or not auto or wandb_configured()):
            chosen.append("wandb")
        elif "wandb" in required:
            raise TrackingError(WANDB_MISSING)
    return tuple(chosen)


def check_ready(trackers: Sequence[str]) -> None:
    """Stop before training when a chosen tracker could not log: today, W&B without a valid login.

    Raises:
        TrackingError: with what to do.
    """
    if "wandb" in trackers and _wandb_mode() not in ("offline", "dryrun", "disabled"):
        check_wandb_login()


def open_trackers(trackers: Sequence[str], out: Path, *, config: dict[str, Any], project: str | None,
                  resume_step: int | None) -> list[Tracker]:
    """Open the named trackers for the run folder ``out``.

    Args:
        config: The run's options, for W&B's run config.
        project: ``--wandb-project``; None: ``$WANDB_PROJECT``, else :data:`WANDB_PROJECT`.
        resume_step: The step a --resume continues from (TensorBoard purges its later events; W&B
            continues the run recorded in ``out/wandb_run.json``), None for a new run.
    """
    opened: list[Tracker] = []
    if "tensorboard" in trackers:
        opened.append(TensorBoardTracker(out, resume_step))
    if "wandb" in trackers:
        opened.append(WandbTracker(out, config=config, project=project, resume=resume_step is not None))
    return opened


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Tracker tags -> values for one ``metrics.jsonl`` record.

    ``{"type": "valid", "loss": .3, "dice": {"stomach": .9}}`` ->
    ``{"valid/loss": .3, "valid/dice/stomach": .9}``. Non-numbers, bools, NaN/inf values and the
    bookkeeping keys ``type``, ``step`` and ``epoch`` are left out.
    """
    prefix = "train" if record.get("type") == "step" else str(record.get("type", "run"))
    out: dict[str, float] = {}

    def visit(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                visit(f"{key}/{name}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)

    for key, value in record.items():
        if key not in ("type", "step", "epoch"):
            visit(f"{prefix}/{key}", value)
    return out


# ----------------------------------------------------------------------------- TensorBoard


def _summary_writer_class() -> Callable[..., Any] | None:
    """torch's SummaryWriter, or None when the tensorboard package is missing."""
    try:  # optional: imported here so that a missing tensorboard only turns logging off
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when it is absent
        return None
    return SummaryWriter


class TensorBoardTracker:
    """Event files under ``RUN_DIR/tensorboard/``: scalars and overlay images."""

    def __init__(self, out: Path, resume_step: int | None = None) -> None:
        writer_class = _summary_writer_class()
        if writer_class is None:
            raise TrackingError(TENSORBOARD_MISSING)
        self.log_dir = Path(out) / "tensorboard"
        self.writer: Any = writer_class(log_dir=str(self.log_dir), purge_step=resume_step)
        print(f"TensorBoard: tensorboard --logdir {self.log_dir}")

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()  # a killed run keeps its curves up to the last record

    def log_images(self, images: Sequence[Overlay], step: int) -> None:
        for k, (_, image) in enumerate(images):
            self.writer.add_image(f"{IMAGES_KEY}/{k}", image, global_step=step, dataformats="HWC")
        self.writer.flush()

    def close(self, model_dir: Path | None = None, *, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ----------------------------------------------------------------------------- Weights & Biases


def _wandb_installed() -> bool:
    return importlib.util.find_spec("wandb") is not None  # finds it without importing it (~1.5 s)


def _wandb_mode() -> str:
    return os.environ.get("WANDB_MODE", "").strip().lower()


def wandb_configured() -> bool:
    """True when W&B can log without asking anything: WANDB_MODE offline/dryrun, WANDB_API_KEY or
    WANDB_IDENTITY_TOKEN_FILE set, or a netrc entry (what `wandb login` writes) for the W&B host
    (``WANDB_BASE_URL``, default api.wandb.ai). False with WANDB_MODE=disabled. Reads no wandb code."""
    mode = _wandb_mode()
    if mode in ("offline", "dryrun"):
        return True
    if mode == "disabled":
        return False
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    path = os.environ.get("NETRC") or Path.home() / ("_netrc" if os.name == "nt" else ".netrc")
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb_login() -> None:
    """Verify the W&B login without ever prompting (no key: a message, not a question).

    Raises:
        TrackingError: no login found, or the server refused it or could not be reached.
    """
    import wandb  # type: ignore[import-not-found]  # optional extra, slow to import: only when W&B is asked for

    options: dict[str, Any] = {"verify": True}
    if "prompt" in inspect.signature(wandb.login).parameters:
        options["prompt"] = False  # no key: returns False instead of asking
    elif not wandb_configured():  # older wandb would prompt (or fail without a terminal)
        raise TrackingError(WANDB_NO_LOGIN)
    try:
        logged_in = wandb.login(**options)
    except Exception as exc:  # AuthenticationError, UsageError, a server that cannot be reached
        raise TrackingError(
            f"Weights & Biases login failed: {exc}. Check WANDB_API_KEY or run `wandb login --relogin` "
            "(and WANDB_BASE_URL for a private server), or log offline with WANDB_MODE=offline. "
            "Training did not start."
        ) from None
    if not logged_in:
        raise TrackingError(WANDB_NO_LOGIN)


class WandbTracker:
    """A W&B run: the config, the scalars against ``step``, overlay images, and the best model
    folder as a ``model`` artifact at the end. Its id is kept in ``RUN_DIR/wandb_run.json``, so a
    --resume continues the same run. Files go under ``$WANDB_DIR``, else ``RUN_DIR/wandb/``."""

    def __init__(self, out: Path, *, config: dict[str, Any], project: str | None, resume: bool) -> None:
        import wandb  # type: ignore[import-not-found]  # optional extra, slow to import: only when W&B is asked for

        self.wandb = wandb
        self.record = Path(out) / WANDB_RUN_FILE
        saved = json.loads(self.record.read_text(encoding="utf-8")) if resume and self.record.is_file() else {}
        self.run: Any  # wandb's Run; None once closed
        try:
            self.run = wandb.init(
                project=saved.get("project") or project or os.environ.get("WANDB_PROJECT") or WANDB_PROJECT,
                id=saved.get("id"), resume="allow" if saved else None, config=config,
                dir=None if os.environ.get("WANDB_DIR") else str(out),
            )
        except Exception as exc:  # a network or server failure after the login check
            raise TrackingError(f"Weights & Biases could not start a run: {exc}") from None
        if self.run.id:  # WANDB_MODE=disabled gives a stand-in run without one
            write_text_atomic(self.record, json.dumps({"id": self.run.id, "project": self.run.project}) + "\n")
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)  # x axis: optimizer steps, also across resumes

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, STEP_KEY: step})

    def log_images(self, images: Sequence[Overlay], step: int) -> None:
        media = [self.wandb.Image(image, caption=caption) for caption, image in images]
        self.run.log({IMAGES_KEY: media, STEP_KEY: step})

    def close(self, model_dir: Path | None = None, *, failed: bool = False) -> None:
        if self.run is None:
            return
        if model_dir is not None and model_dir.is_dir():
            artifact = self.wandb.Artifact(f"model-{self.run.id}", type="model",
                                           description="segapp model folder: the best validation score")
            artifact.add_dir(str(model_dir))
            self.run.log_artifact(artifact, aliases=["best"])
        self.run.finish(exit_code=1 if failed else 0)
        self.run = None
