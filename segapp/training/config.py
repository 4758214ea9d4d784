"""Training options: the :class:`TrainConfig` dataclass and the command line built from it.

Every field of :class:`TrainConfig` is one option, ``--field-name`` (underscores become dashes);
its ``help`` metadata is the help text. Values come from the defaults, then a ``--config FILE.json``,
then the command line; a ``--resume`` takes the saved run's configuration as its base.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segapp.model.context import check_offsets
from segapp.model.runtime import COMPILE_MODES, DEVICE_HELP
from segapp.model.weights import DEFAULT_BASE
from segapp.training.augment import LEVERS, PRESETS, AugmentConfig, preset
from segapp.training.tracking import REPORT_TO_HELP, TENSORBOARD_CHOICES, WANDB_PROJECT, requested

NONE_WORD = "none"  # on the command line, sets an optional (``X | None``) option to None


class TrainingError(RuntimeError):
    """A problem that stops training, with a message saying what to do."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its help text (and e.g. ``choices``, or ``parse``: the argparse type
    that reads its one command-line word) as metadata; list defaults are copied per instance."""
    metadata = {"help": help, **kwargs}
    if isinstance(default, list):
        return dataclasses.field(default_factory=default.copy, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _lever(name: str, help: str) -> Any:
    """An ``aug_NAME`` option for the AugmentConfig field NAME: None (the preset's value) unless given."""
    values = {preset_name: getattr(config, name) for preset_name, config in PRESETS.items()}
    shown = ", ".join(f"{k} {v}" for k, v in values.items()) if len(set(values.values())) > 1 else f"{values['classic']} in both"
    return option(None, f"{help}; none: the preset's ({shown})")


@dataclass
class TrainConfig:
    """Every training option; the command line and ``--config FILE.json`` fill it."""

    data: str = option("", "data folder with train/ and valid/, each either images/ + masks/ (slices) or "
                       "labelled volumes (NAME_image.nii.gz + NAME_labels.nii.gz, or NAME/ DICOM series + "
                       "NAME_labels.nii.gz)")
    out: str = option("", "run folder to write (best/, last/, metrics.jsonl)")
    base: str = option(DEFAULT_BASE, "starting weights: hub id, model folder, .safetensors, Lightning .ckpt, or 'scratch' "
                     "(random B0; 'scratch:b1' ... 'scratch:b5' for the larger sizes)")
    image_size: int = option(288, "model input height and width in pixels")
    batch_size: int = option(6, "slices per forward pass (per process)")
    grad_accum: int = option(2, "forward passes per optimizer step (effective batch = batch_size x grad_accum x processes)")
    lr: float = option(3e-4, "AdamW learning rate (the peak with OneCycle)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    epochs: int = option(100, "passes over the training set")
    scheduler: str = option("onecycle", "learning-rate schedule", choices=["onecycle", "constant"])
    pct_start: float = option(0.3, "OneCycle: share of steps spent warming up")
    div_factor: float = option(25.0, "OneCycle: initial lr = lr / div_factor")
    final_div_factor: float = option(1e4, "OneCycle: final lr = initial lr / final_div_factor")
    precision: str = option("auto", "auto: bf16 on GPUs that have it, else fp16 on CUDA, fp32 on CPU", choices=["auto", "fp16", "bf16", "fp32"])
    device: str = option("auto", DEVICE_HELP)
    seed: int = option(42, "random seed (shuffling, augmentation, new head)")
    max_steps: int = option(0, "stop after this many optimizer steps (0: no limit; for smoke runs)")
    max_minutes: float = option(0.0, "stop (validating and saving first) after this many minutes of training (0: no limit)")
    valid_every: int = option(1, "validate every N epochs (and at the end)")
    early_stop: int = option(0, "stop after N validations without improvement (0: off)")
    log_every: int = option(50, "write a metrics line every N optimizer steps")
    report_to: str = option("auto", REPORT_TO_HELP)
    tensorboard: str = option("auto", "TensorBoard event files in RUN_DIR/tensorboard: auto (as --report-to says), yes (same as naming it in --report-to), no (leave it out)", choices=list(TENSORBOARD_CHOICES))
    wandb_project: str | None = option(None, f"Weights & Biases project; none: $WANDB_PROJECT, else {WANDB_PROJECT} (entity and mode: WANDB_ENTITY, WANDB_MODE)")
    checkpoint_every: int = option(0, "also save last/ every N optimizer steps (0: at epoch ends only)")
    valid_batch_size: int = option(16, "slices per forward pass in validation")
    hausdorff: bool = option(True, "compute Hausdorff 95 in validation")
    augment: bool = option(True, "augmentation on the device (--no-augment: none at all)")
    augment_preset: str = option("domain", "augmentation set: classic (affine + brightness/contrast/gamma/noise, as before), domain (classic plus every domain-randomisation lever below); an --aug-* option overrides its lever", choices=list(PRESETS))
    # Domain-randomisation levers: none = the preset's value (classic: every probability 0).
    # Their names are AugmentConfig's fields with "aug_" in front (augment_config relies on it).
    aug_remap: float | None = _lever("remap", "probability per slice of a random smooth grey-level curve")
    aug_remap_nonmonotone: float | None = _lever("remap_nonmonotone", "share of those curves that are free, not monotone: tissues may swap brightness")
    aug_bias: float | None = _lever("bias", "probability of a smooth multiplicative bias field")
    aug_bias_strength: float | None = _lever("bias_strength", "largest bias swing: 0.4 = within +-40%%")
    aug_coil: float | None = _lever("coil", "probability of surface-coil shading, top and bottom brighter")
    aug_coil_strength: float | None = _lever("coil_strength", "largest coil gain at the top/bottom edge")
    aug_blur: float | None = _lever("blur", "probability of a Gaussian blur")
    aug_blur_sigma: float | None = _lever("blur_sigma", "largest blur sigma in pixels")
    aug_sharpen: float | None = _lever("sharpen", "probability of an unsharp mask, never with blur")
    aug_sharpen_amount: float | None = _lever("sharpen_amount", "largest unsharp-mask amount")
    aug_noise: float | None = _lever("noise", "probability of white, Rician or correlated noise")
    aug_noise_strength: float | None = _lever("noise_strength", "largest noise standard deviation on the 0..1 scale")
    aug_elastic: float | None = _lever("elastic", "probability of a smooth elastic deformation")
    aug_elastic_magnitude: float | None = _lever("elastic_magnitude", "largest elastic displacement, fraction of the image size")
    aug_zoom: float | None = _lever("zoom", "probability of a zoom in or out with a random centre")
    aug_zoom_in: float | None = _lever("zoom_in", "largest zoom factor")
    aug_zoom_out: float | None = _lever("zoom_out", "smallest zoom factor")
    aug_crop_sides: float | None = _lever("crop_sides", "probability of a horizontal stretch that cuts the body's sides")
    aug_crop_sides_max: float | None = _lever("crop_sides_max", "largest horizontal stretch")
    data_on_device: str = option("auto", "keep the decoded data set on the GPU: auto (when it fits), yes, no", choices=["auto", "yes", "no"])
    fold_head: bool = option(True, "train the decode head in its folded form: same function and gradients, about half the arithmetic (segapp.model.head_folding)")
    compile: str = option("off", "torch.compile the training forward pass (off, default, max-autotune, reduce-overhead); compiles for minutes first, pays off on long GPU runs", choices=list(COMPILE_MODES))
    cudnn_benchmark: bool = option(True, "let cuDNN pick the fastest convolution algorithms (fixed input size)")
    progress: bool = option(True, "show progress bars")
    resume: bool = option(False, "continue from RUN_DIR/last/ (saved configuration, optimizer, step, RNG)")
    description: str = option("", "what the data is, for the model card")
    context: list[int] = option(
        [0, 0, 0], "2.5D input: slice offsets of the three input channels, e.g. -2,0,2 (neighbours found by "
        "the caseN_dayD_slice_SSSS names, or by index in a volume; +1 = one slice toward the head); 0,0,0 is the 2D model",
        parse=lambda text: list(_offsets_argument(text)), metavar="D0,D1,D2",
    )
    context_init: str = option(
        "centre", "a 2.5D run from 2D weights: centre (the first convolution folded into the centre "
        "channel, so the run starts as the 2D model: segapp.model.inflate) or copy (the weights as loaded)",
        choices=["centre", "copy"],
    )

    def __post_init__(self) -> None:
        augment_config(self)  # a bad --aug-* value stops here, before minutes of decoding
        requested(self.report_to, self.tensorboard)  # so does a bad or contradictory --report-to (TrackingError)


def augment_config(config: TrainConfig) -> AugmentConfig:
    """The augmentation of a run: ``config.augment_preset`` with each ``aug_*`` option that is set.

    Raises:
        TrainingError: unknown preset or a value out of range; the message names the option.
    """
    overrides = {name: getattr(config, "aug_" + name) for name in LEVERS if getattr(config, "aug_" + name) is not None}
    try:
        return preset(config.augment_preset, **overrides)
    except ValueError as exc:
        raise TrainingError(f"Augmentation options: {exc} (see --help, --aug-*)") from None


# Options added after runs had been saved, with the value that reproduces those runs: a
# --resume of an older run folder (its train_config.json lacks them) takes these, not the defaults.
SAVED_BEFORE = {"augment_preset": "classic", "context_init": "copy"}

# Options a resumed run may change; the rest must match the saved run.
RESUMABLE = {"epochs", "max_steps", "max_minutes", "valid_every", "early_stop", "log_every", "checkpoint_every",
             "progress", "resume", "device", "valid_batch_size", "data_on_device", "fold_head",
             "compile", "tensorboard", "report_to"}

_SCALARS: dict[Any, type] = {int: int, float: float, str: str}


def _offsets_argument(text: str) -> tuple[int, int, int]:
    """argparse type of ``--context``: ``-2,0,2``."""
    try:
        return check_offsets(text, source="--context")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def glue_dash_values(argv: list[str]) -> list[str]:
    """``--context -2,0,2`` -> ``--context=-2,0,2``, so argparse reads a value that starts with "-"
    as written (it would take it for an option). Applies to the fields with ``parse`` metadata."""
    dash_values = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig) if "parse" in f.metadata}
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in dash_values:
            value = next(tokens, None)
            if value is None:
                out.append(token)
            elif value.startswith("-") and not value.startswith("--"):
                out.append(f"{token}={value}")
            else:
                out += [token, value]
        else:
            out.append(token)
    return out


def _optional(kind: type) -> Any:
    """argparse type for an ``X | None`` option: the word ``none`` (any case) gives None, the rest parses as ``kind``."""

    def parse(text: str) -> Any:
        return None if text.lower() == NONE_WORD else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


def _argument_kwargs(name: str, annotation: Any) -> dict[str, Any]:
    """``add_argument`` keywords for one dataclass field's resolved type annotation.

    Raises:
        TypeError: the type is not bool, int, float, str, ``X | None`` or ``list[X]`` of those three.
    """
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        if inner in _SCALARS:
            return {"type": _optional(_SCALARS[inner])}
    if origin is list and len(args) == 1 and args[0] in _SCALARS:
        return {"type": _SCALARS[args[0]], "nargs": "+"}
    raise TypeError(
        f"field {name!r} has type {annotation!r}, which has no command-line form: use bool, int, float, str, "
        "an optional (X | None) or a list (list[X]) of int, float or str"
    )


def _default_text(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return f" (default: {field.default})"
    if field.default_factory is not dataclasses.MISSING:
        return f" (default: {field.default_factory()})"
    return ""


def add_dataclass_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one ``--field-name`` option per field of the dataclass ``config_class``.

    A field's ``help`` and ``choices`` metadata go to argparse. Forms by type: ``bool`` ->
    ``--name`` / ``--no-name``; ``int``, ``float``, ``str`` -> one value; ``X | None`` (or
    ``Optional[X]``) of those -> one value, where the word ``none`` (any case) means None;
    ``list[X]`` of those -> one or more values (``nargs="+"``); a field with ``parse`` metadata ->
    one value read by that function. The defaults stay the dataclass's
    (the help text shows them): an option not given is None, or absent from the namespace with
    ``argument_default=argparse.SUPPRESS``, so that ``config_class(**vars(args))`` fills it.

    Raises:
        TypeError: a field's type has no command-line form; the message names the field.
    """
    hints = typing.get_type_hints(config_class)  # resolves string annotations (from __future__ import annotations)
    for field in dataclasses.fields(config_class):
        if "parse" in field.metadata:  # its own reader of one word (e.g. "-2,0,2")
            kwargs = {"type": field.metadata["parse"], "metavar": field.metadata.get("metavar")}
        else:
            kwargs = _argument_kwargs(field.name, hints[field.name])
        help_text = field.metadata.get("help", "") + _default_text(field)
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        parser.add_argument("--" + field.name.replace("_", "-"), help=help_text, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m segapp.train`` command line: ``--config`` plus one option per :class:`TrainConfig` field."""
    parser = argparse.ArgumentParser(
        prog="python -m segapp.train",
        description="Fine-tune SegFormer on GI-tract MRI: DIR/{train,valid}, each images/ + masks/ (notebook layout) or labelled volumes (NIfTI, DICOM series).",
        argument_default=argparse.SUPPRESS,  # only options given on the line override --config
    )
    parser.add_argument("--config", help="JSON file of options (keys as below, with underscores)")
    add_dataclass_arguments(parser, TrainConfig)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Defaults <- ``--config`` file <- command-line options; on --resume, the saved run's
    configuration replaces the defaults and the file.

    Raises:
        TrainingError: unreadable config file, unknown keys, or options a resume may not change.
    """
    args = vars(build_parser().parse_args(glue_dash_values(sys.argv[1:] if argv is None else list(argv))))
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
            previous = {**SAVED_BEFORE, **json.loads(saved.read_text(encoding="utf-8"))}
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
    if "context" in values:  # a config file gives a list (or "-2,0,2"); check it as the command line does
        try:
            values["context"] = list(check_offsets(values["context"], source="context"))
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
    return TrainConfig(**values)
