"""One model loader and one saver for every weights source.

Sources :func:`load_model` accepts:

- ``"scratch"``: a SegFormer-B0-sized model with random weights (offline training);
  ``"scratch:b1"`` ... ``"scratch:b5"``: the other published sizes, also random;
- a local HuggingFace model folder (``config.json`` + ``model.safetensors``);
- a bare ``.safetensors`` file (architecture inferred from the tensor shapes);
- a PyTorch Lightning ``.ckpt`` as the notebook saved it (``state_dict`` keys prefixed
  ``model.``; variant B0-B5 inferred from the shapes; read with ``weights_only=True``);
- a HuggingFace hub id such as ``nvidia/segformer-b0-finetuned-ade-512-512``.

All of them end in ``SegformerForSemanticSegmentation.from_pretrained`` on a folder, so
the library's own renaming of legacy weight names (transformers 4.x checkpoints) applies
to every source. The saved model folder is the contract between training and serving:
``config.json`` (with ``id2label``), ``model.safetensors``, ``preprocessor_config.json``
and a model card ``README.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from segapp.io.files import atomic_folder, previous_path, recover_interrupted_swap
from segapp.labels import FOREGROUND, ID2LABEL, LABEL2ID, NUM_LABELS
from segapp.model.processing import PREPROCESSOR_FILE, ProcessingConfig

log = logging.getLogger(__name__)

SCRATCH = "scratch"
DEFAULT_BASE = "nvidia/segformer-b0-finetuned-ade-512-512"
CARD_FILE = "README.md"
WEIGHTS_FILE = "model.safetensors"

# MiT encoder variants (Xie et al. 2021). Attention heads are not visible in tensor
# shapes, so they come from this table; every published variant uses (1, 2, 5, 8).
VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}
STANDARD_HEADS = [1, 2, 5, 8]


class ModelLoadError(RuntimeError):
    """Weights that cannot be loaded; the message says why and what to do instead."""


@dataclass
class LoadedModel:
    """A model together with what inference needs to know about it.

    Attributes:
        model: The SegFormer, in eval mode, on the CPU unless a device was given.
        processing: Input size and normalisation (from ``preprocessor_config.json``).
        source: What was asked for (path or hub id), as given.
        kind: One of ``scratch``, ``folder``, ``safetensors``, ``lightning``, ``hub``.
        variant: ``b0`` ... ``b5`` when the encoder matches a published variant, else ``custom``.
        card: The model card text when the source has one.
    """

    model: Any  # SegformerForSemanticSegmentation; typed loosely to keep transformers lazy
    processing: ProcessingConfig
    source: str
    kind: str
    variant: str
    card: str | None = None


def _transformers():
    # transformers takes seconds to import: loaded with the first model, so --help and the page start fast.
    import transformers
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    # Loading bars are noise in a server log and in tests.
    transformers.utils.logging.disable_progress_bar()
    return SegformerConfig, SegformerForSemanticSegmentation


def scratch_config(variant: str = "b0", num_labels: int = NUM_LABELS) -> Any:
    """A ``SegformerConfig`` of a published variant with our label set."""
    SegformerConfig, _ = _transformers()
    spec = VARIANTS[variant]
    return SegformerConfig(
        num_labels=num_labels,
        id2label=dict(ID2LABEL) if num_labels == NUM_LABELS else None,
        label2id=dict(LABEL2ID) if num_labels == NUM_LABELS else None,
        num_attention_heads=STANDARD_HEADS,
        **spec,
    )


def variant_name(config: Any) -> str:
    """``b0`` ... ``b5`` when ``config`` matches a published variant, else ``custom``."""
    for name, spec in VARIANTS.items():
        if (
            list(config.hidden_sizes) == spec["hidden_sizes"]
            and list(config.depths) == spec["depths"]
            and config.decoder_hidden_size == spec["decoder_hidden_size"]
        ):
            return name
    return "custom"


# Weight names of both transformers 4.x ("encoder.block.0.1.") and 5.x ("stages.0.blocks.1.").
_PATCH = re.compile(r"(?:encoder\.patch_embeddings\.|stages\.)(\d+)\.(?:patch_embeddings\.)?proj\.weight$")
_BLOCK = re.compile(r"(?:encoder\.block\.(\d+)\.(\d+)\.|stages\.(\d+)\.blocks\.(\d+)\.)")
_SR = re.compile(r"(?:attention\.self\.sr|attention\.sequence_reduction\.sequence_reduction)\.weight$")
_FC1 = re.compile(r"mlp\.(?:dense1|fc1)\.weight$")


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> Any:
    """Infer a ``SegformerConfig`` from SegFormer weights (legacy or current names).

    Args:
        state: Weight name -> tensor, without any wrapper prefix.

    Returns:
        The config; ``num_labels`` is the classifier's output count.

    Raises:
        ModelLoadError: the tensors are not a SegFormer's.
    """
    SegformerConfig, _ = _transformers()
    patches: dict[int, torch.Tensor] = {}
    depth: dict[int, set[int]] = {}
    sr: dict[int, int] = {}
    mlp: dict[int, float] = {}
    for key, tensor in state.items():
        if m := _PATCH.search(key):
            patches[int(m.group(1))] = tensor
        if m := _BLOCK.search(key):
            stage = int(m.group(1) or m.group(3))
            block = int(m.group(2) or m.group(4))
            depth.setdefault(stage, set()).add(block)
            if _SR.search(key):
                sr[stage] = int(tensor.shape[-1])
            if _FC1.search(key):
                mlp[stage] = tensor.shape[0] / tensor.shape[1]
    classifier = state.get("decode_head.classifier.weight")
    fuse = state.get("decode_head.linear_fuse.weight")
    if not patches or classifier is None or fuse is None:
        raise ModelLoadError(
            "These weights are not a SegFormer for semantic segmentation (no patch embeddings or "
            "decode head found). Use weights saved by segapp or by transformers' "
            "SegformerForSemanticSegmentation."
        )
    stages = sorted(patches)
    hidden = [int(patches[s].shape[0]) for s in stages]
    heads = STANDARD_HEADS if all(h % n == 0 for h, n in zip(hidden, STANDARD_HEADS)) else [1] * len(stages)
    config = SegformerConfig(
        num_encoder_blocks=len(stages),
        hidden_sizes=hidden,
        depths=[len(depth.get(s, ())) for s in stages],
        patch_sizes=[int(patches[s].shape[-1]) for s in stages],
        strides=[4] + [2] * (len(stages) - 1),
        sr_ratios=[sr.get(s, 1) for s in stages],
        mlp_ratios=[int(round(mlp.get(s, 4))) for s in stages],
        num_attention_heads=heads,
        decoder_hidden_size=int(fuse.shape[0]),
        num_labels=int(classifier.shape[0]),
    )
    if int(classifier.shape[0]) == NUM_LABELS:
        config.id2label, config.label2id = dict(ID2LABEL), dict(LABEL2ID)
    return config


def _read_lightning(path: Path) -> dict[str, torch.Tensor]:
    """State dict of a Lightning/PyTorch checkpoint, read without unpickling objects."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ModelLoadError(
            f"Refusing to load {path.name}: it holds Python objects beyond plain tensors, and loading "
            "those would run arbitrary code (torch.load weights_only=True failed: "
            f"{type(exc).__name__}). If you trust the file, extract its weights once with "
            "`torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pt')` or save "
            "them as .safetensors, then load that."
        ) from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path.name} holds no state dict of tensors.")
    # The notebook's LightningModule kept the HF model as `self.model`.
    prefixes = ("model.", "module.")
    stripped = {}
    for key, tensor in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        stripped[key] = tensor
    return stripped


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable safetensors file ({exc}). It may be truncated or "
            "corrupt: copy it again or re-export it."
        ) from None


def _looks_like_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)) and not source.endswith(
        (".ckpt", ".pt", ".pth", ".safetensors")
    )


def _from_folder(folder: Path, *, reset_head: bool) -> Any:
    _, SegformerForSemanticSegmentation = _transformers()
    kwargs: dict[str, Any] = {}
    if reset_head:
        kwargs = {
            "num_labels": NUM_LABELS,
            "id2label": dict(ID2LABEL),
            "label2id": dict(LABEL2ID),
            "ignore_mismatched_sizes": True,
        }
    try:
        return SegformerForSemanticSegmentation.from_pretrained(str(folder), **kwargs)
    except SafetensorError as exc:
        raise ModelLoadError(
            f"The weights in {folder} are not a readable safetensors file ({exc}). They may be "
            "truncated or corrupt: copy them again or re-export them."
        ) from None
    except pickle.UnpicklingError:  # a pytorch_model.bin holding objects: torch refused it
        raise ModelLoadError(
            f"Refusing to load the weights in {folder}: a pickle file holding Python objects beyond "
            "plain tensors, and loading those would run arbitrary code. If you trust it, load it once "
            "yourself and save the model again with save_pretrained (safetensors)."
        ) from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"Could not load the model in {folder}: {exc}") from None


def _from_state_dict(state: dict[str, torch.Tensor], *, reset_head: bool) -> Any:
    # Through a folder, so transformers renames legacy weight names for us.
    config = config_from_state_dict(state)

    with tempfile.TemporaryDirectory(prefix="segapp-load-") as tmp:
        config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(tmp, WEIGHTS_FILE))
        return _from_folder(Path(tmp), reset_head=reset_head)


def _from_hub(repo_id: str, *, reset_head: bool) -> tuple[Any, Path]:
    # Only a hub id needs the hub client (and its HTTP stack) loaded.
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.md", "*.bin"]
        )
    except Exception as exc:  # noqa: BLE001 - network, auth and offline errors all end here
        raise ModelLoadError(
            f"Could not get '{repo_id}' from the HuggingFace hub ({type(exc).__name__}: {exc}). "
            "Without network access use local weights instead: a model folder "
            "(e.g. segapp/bundled/model or a training run's best/), a .safetensors file, a Lightning "
            "checkpoint (.ckpt), or 'scratch' for random initialisation. A hub model that was "
            "downloaded before is found in the cache with HF_HUB_OFFLINE=1."
        ) from None
    return _from_folder(Path(folder), reset_head=reset_head), Path(folder)


def load_model(
    source: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    reset_head: bool = False,
) -> LoadedModel:
    """Load SegFormer weights from any supported source (see module docstring).

    Args:
        source: ``"scratch"`` (or ``"scratch:b1"`` ...), a folder, a ``.safetensors`` or ``.ckpt``/``.pt`` file, or a hub id.
        device: Where the model ends up; weights are read on the CPU and moved once.
        reset_head: Replace the classifier with a fresh 4-class head (fine-tuning a base such as
            the 150-class ADE20K model). Without it, a model with another label count is refused.

    Returns:
        The model in eval mode on ``device`` with its processing config and card.

    Raises:
        ModelLoadError: missing, corrupt, unsafe or incompatible weights; unreachable hub id.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    card: str | None = None
    processing = ProcessingConfig()
    if text == SCRATCH or text.startswith(SCRATCH + ":"):
        variant = text.partition(":")[2] or "b0"
        if variant not in VARIANTS:
            raise ModelLoadError(f"{text!r}: the scratch sizes are {', '.join(f'scratch:{v}' for v in VARIANTS)} "
                                 "('scratch' alone is b0)")
        _, SegformerForSemanticSegmentation = _transformers()
        torch.manual_seed(0)  # reproducible random init; training reseeds anyway
        model, kind = SegformerForSemanticSegmentation(scratch_config(variant)), "scratch"
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder but not a model folder (no config.json). Point to a folder "
                "written by segapp training or save_pretrained, or to a weights file."
            )
        model, kind = _from_folder(path, reset_head=reset_head), "folder"
        processing = ProcessingConfig.from_folder(path)
        card = _read_card(path)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            # A weights file inside a model folder: use the folder's config.
            if (path.parent / "config.json").is_file() and path.name == WEIGHTS_FILE:
                return load_model(path.parent, device=device, reset_head=reset_head)
            state, kind = _read_safetensors(path), "safetensors"
        elif suffix in (".ckpt", ".pt", ".pth", ".bin"):
            state, kind = _read_lightning(path), "lightning"
        else:
            raise ModelLoadError(
                f"{path.name}: unknown weights format. Use a model folder, a .safetensors file or a "
                "Lightning .ckpt."
            )
        model = _from_state_dict(state, reset_head=reset_head)
    elif _looks_like_hub_id(text) and not (path.parent != Path(".") and path.parent.is_dir()):
        # "org/name" is a hub id unless "org" is a local folder (then a local path was meant).
        model, folder = _from_hub(text, reset_head=reset_head)
        kind = "hub"
        processing = _hub_processing(folder, model, reset_head=reset_head)
        card = _read_card(folder)
    elif previous_path(path).is_dir():
        # A save killed between its two renames (see save_model): the last complete version.
        log.warning("%s is missing; loading %s, left by an interrupted save", path, previous_path(path))
        return load_model(previous_path(path), device=device, reset_head=reset_head)
    else:
        raise ModelLoadError(
            f"Weights not found: '{text}' is neither an existing file or folder nor a hub id (org/name)."
        )
    num_labels = int(model.config.num_labels)
    if num_labels != NUM_LABELS:
        raise ModelLoadError(
            f"The weights in '{text}' predict {num_labels} classes, but segapp segments {NUM_LABELS} "
            f"({', '.join(ID2LABEL.values())}). Fine-tune them first "
            "(python -m segapp.train --base ...), which puts a new 4-class head on them."
        )
    model.config.id2label, model.config.label2id = dict(ID2LABEL), dict(LABEL2ID)
    for param in model.parameters():
        # Renamed legacy weights can arrive with permuted strides; DDP and kernels want dense ones.
        param.data = param.data.contiguous()
    model.eval().to(device)
    return LoadedModel(model, processing, text, kind, variant_name(model.config), card)


def _hub_processing(folder: Path, model: Any, *, reset_head: bool) -> ProcessingConfig:
    """Processing config of a hub model; a base model's own (e.g. 512) is replaced by ours when
    fine-tuning starts, because our input size is a training choice."""
    if reset_head or not (folder / PREPROCESSOR_FILE).is_file():
        return ProcessingConfig()
    return ProcessingConfig.from_folder(folder)


def _read_card(folder: Path) -> str | None:
    card = folder / CARD_FILE
    return card.read_text(encoding="utf-8") if card.is_file() else None


def render_card(
    *,
    variant: str,
    processing: ProcessingConfig,
    data: str = "",
    command: str = "",
    metrics: Mapping[str, Any] | None = None,
    notes: str = "",
) -> str:
    """The model card (``README.md``) of a saved model folder.

    Args:
        variant: Encoder variant name (``b0`` ...).
        processing: Input size and normalisation, restated for readers.
        data: What the model was trained on.
        command: The exact command that produced it.
        metrics: Validation figures: ``{"per_class": {name: {metric: value}}, <scalar>: value}``.
        notes: Free text (e.g. intended use).
    """
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-segmentation",
        "tags: [segformer, medical-imaging, mri, gi-tract, segapp]",
        "---",
        "",
        f"# SegFormer-{variant.upper()} for GI-tract MRI segmentation (segapp)",
        "",
        "Segments axial abdominal MRI slices into "
        + ", ".join(f"{lab.id} {lab.name}" for lab in FOREGROUND)
        + " (0 is background). Load it with `segapp.Segmenter.from_pretrained(folder)` or "
        "`python app.py --weights folder`.",
        "",
        f"Input: {processing.describe_input()} -> {processing.height} x {processing.width} "
        f"(bilinear) -> mean {list(processing.image_mean)}, std {list(processing.image_std)}.",
        "",
    ]
    if processing.is_2_5d:
        lines += [
            f"This is a 2.5D model: `segapp_context_offsets` {list(processing.context_offsets)} in "
            "`preprocessor_config.json`. Volumes (a DICOM series, NIfTI, a case-day folder) are segmented "
            "with each slice's neighbours; a single slice is segmented with itself in every channel, "
            "and the result says so.",
            "",
        ]
    if notes:
        lines += [notes.strip(), ""]
    if data:
        lines += ["## Data", "", data.strip(), ""]
    if command:
        lines += ["## How it was made", "", "```bash", command.strip(), "```", ""]
    if metrics:
        lines += ["## Validation", ""]
        per_class = metrics.get("per_class", {})
        if per_class:
            columns = sorted({k for row in per_class.values() for k in row})
            lines.append("| class | " + " | ".join(columns) + " |")
            lines.append("|---|" + "---|" * len(columns))
            for name, row in per_class.items():
                cells = [_fmt(row.get(c)) for c in columns]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        for key, value in metrics.items():
            if key != "per_class" and not isinstance(value, Mapping):
                lines.append(f"- {key}: {_fmt(value)}")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def save_model(
    model: Any,
    folder: str | os.PathLike[str],
    *,
    processing: ProcessingConfig | None = None,
    data: str = "",
    command: str = "",
    metrics: Mapping[str, Any] | None = None,
    notes: str = "",
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete model folder atomically.

    The folder gets ``config.json`` (with ``id2label``/``label2id``), ``model.safetensors``,
    ``preprocessor_config.json`` and a model card ``README.md``. Everything is written to
    a temporary sibling first and swapped in by renames, so a crash leaves either the old
    folder or the new one, never a mix; during the swap the old one is kept as
    ``<folder>.previous`` until the new one is in place (:func:`segapp.io.files.atomic_folder`).

    Args:
        model: A ``SegformerForSemanticSegmentation`` (a DDP/compiled wrapper is unwrapped).
        folder: Destination; replaced if it exists.
        processing: Input config to save (defaults to 288 x 288, ImageNet statistics).
        data, command, metrics, notes: Model card contents (see :func:`render_card`).
        extra: Called with the temporary folder to add files (e.g. training state) that must
            appear together with the weights.

    Returns:
        The folder's path.
    """
    _transformers()  # silences the library's progress bars
    target = Path(folder)
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    processing = processing or ProcessingConfig()
    model.config.id2label, model.config.label2id = dict(ID2LABEL), dict(LABEL2ID)
    with atomic_folder(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        processing.save(tmp)
        card = render_card(
            variant=variant_name(model.config),
            processing=processing,
            data=data,
            command=command,
            metrics=metrics,
            notes=notes,
        )
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        if extra is not None:
            extra(tmp)
        _readable_by_others(tmp)
    return target


def _readable_by_others(folder: Path) -> None:
    """safetensors writes its file private (0600): give every file the permissions a normal new
    file gets, so a server running as another user (e.g. a container's uid 1000) can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~umask)


# The name training code calls on --resume: a save killed between its two renames left only
# <folder>.previous (see segapp.io.files.atomic_folder).
recover_interrupted_save = recover_interrupted_swap


def hash_state(digest: Any, network: Any) -> None:
    """Feed a network's parameters and buffers (names, dtypes, shapes, values) into a hashlib
    digest: equal weights give equal hashes, whatever file they came from."""
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"|{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")


def weights_fingerprint(network: Any) -> str:
    """Short content hash (16 hex digits of sha256) of a network's weights, for outputs that must
    name exactly what made them (DICOM exports)."""
    digest = hashlib.sha256()
    hash_state(digest, getattr(network, "_orig_mod", network))
    return digest.hexdigest()[:16]


def model_summary(loaded: LoadedModel) -> dict[str, Any]:
    """Short JSON-friendly description of a loaded model (for pages and logs)."""
    params = sum(p.numel() for p in loaded.model.parameters())
    return {
        "source": loaded.source,
        "kind": loaded.kind,
        "variant": loaded.variant,
        "parameters": params,
        "input_size": [loaded.processing.height, loaded.processing.width],
        "labels": json.loads(json.dumps(ID2LABEL)),
    }
