"""Pre- and post-processing: the one path between a grayscale slice and the model.

Training-time validation, the inference service, the command-line tools and the
benchmarks all go through these functions, so they cannot drift apart. The input
size and normalisation come from the model folder's ``preprocessor_config.json``
(see :class:`ProcessingConfig`), never from constants scattered in code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segapp.io.files import write_text_atomic
from segapp.model.context import FLAT, Offsets, check_offsets, format_offsets

PREPROCESSOR_FILE = "preprocessor_config.json"
MIN_REGION_KEY = "segapp_min_region_px"
MIN_COMPONENT_KEY = "segapp_min_component_ml"
CONTEXT_KEY = "segapp_context_offsets"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ProcessingConfig:
    """What the model expects as input.

    Attributes:
        height: Model input height in pixels.
        width: Model input width in pixels.
        image_mean: Per-channel mean of the 0..1 scaled RGB input.
        image_std: Per-channel standard deviation.
        min_region_px: Post-processing: predicted regions (8-connected, per class) smaller than
            this many pixels of the slice become background; 0 turns it off. Chosen per model
            on its validation split (``python -m segapp.tune_postprocessing``) and stored in
            the folder as ``segapp_min_region_px``, so every tool applies the same rule.
        min_component_ml: The 3D clean-up of volumes: 26-connected components of one class
            smaller than this many mL become background; 0 turns it off. Tuned on labelled
            volumes (``python -m segapp.tune_postprocessing --volumes``), stored as
            ``segapp_min_component_ml``.
        context_offsets: The slice offsets of the three input channels
            (:mod:`segapp.model.context`): ``(0, 0, 0)`` feeds the slice itself in every channel
            (2D); e.g. ``(-2, 0, 2)`` feeds the slices two below and two above around it (2.5D).
            Stored as ``segapp_context_offsets`` when not ``(0, 0, 0)``.
    """

    height: int = 288
    width: int = 288
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    min_region_px: int = 0
    min_component_ml: float = 0.0
    context_offsets: Offsets = FLAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_offsets", check_offsets(self.context_offsets, source="context_offsets"))

    @property
    def is_2_5d(self) -> bool:
        """Whether the channels hold neighbouring slices (offsets other than 0, 0, 0)."""
        return self.context_offsets != FLAT

    def describe_input(self) -> str:
        """The channels in words, for model cards and pages."""
        if not self.is_2_5d:
            return "grayscale slice -> 3 equal channels"
        return (f"2.5D: channels = slices at offsets {format_offsets(self.context_offsets)} of the same scan "
                "(+1 = one slice toward the head; edges and gaps: the nearest present slice)")

    @classmethod
    def from_dict(cls, data: dict) -> ProcessingConfig:
        """Read a ``SegformerImageProcessor``-style dict (``size`` as {height, width} or an int)."""
        size = data.get("size", {"height": cls.height, "width": cls.width})
        if isinstance(size, int):
            height = width = size
        elif "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        elif "shortest_edge" in size:
            height = width = int(size["shortest_edge"])
        else:
            raise ValueError(f"{PREPROCESSOR_FILE}: cannot read the input size from {size!r}")
        mean = tuple(float(v) for v in data.get("image_mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in data.get("image_std", IMAGENET_STD))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"{PREPROCESSOR_FILE}: image_mean/image_std must be 3 values, std > 0")
        min_region = data.get(MIN_REGION_KEY, 0)
        if isinstance(min_region, bool) or not isinstance(min_region, int) or min_region < 0:
            raise ValueError(f"{PREPROCESSOR_FILE}: {MIN_REGION_KEY} must be a whole number >= 0, got {min_region!r}")
        min_component = data.get(MIN_COMPONENT_KEY, 0.0)
        if isinstance(min_component, bool) or not isinstance(min_component, (int, float)) or not min_component >= 0:
            raise ValueError(f"{PREPROCESSOR_FILE}: {MIN_COMPONENT_KEY} must be a number of mL >= 0, got {min_component!r}")
        context = check_offsets(data.get(CONTEXT_KEY, list(FLAT)), source=f"{PREPROCESSOR_FILE}: {CONTEXT_KEY}")
        return cls(height=height, width=width, image_mean=mean, image_std=std, min_region_px=min_region,  # type: ignore[arg-type]
                   min_component_ml=float(min_component), context_offsets=context)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ProcessingConfig:
        """Read ``preprocessor_config.json`` from a model folder; defaults when it is absent."""
        path = Path(folder) / PREPROCESSOR_FILE
        if not path.is_file():
            return cls()
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def to_dict(self) -> dict:
        """The ``SegformerImageProcessor`` form, so ``AutoImageProcessor`` reads it too."""
        return {
            "image_processor_type": "SegformerImageProcessor",
            "do_resize": True,
            "size": {"height": self.height, "width": self.width},
            "resample": 2,  # bilinear
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_reduce_labels": False,
            # Ignored by transformers' image processor; read by segapp.
            **({MIN_REGION_KEY: self.min_region_px} if self.min_region_px else {}),
            **({MIN_COMPONENT_KEY: self.min_component_ml} if self.min_component_ml else {}),
            **({CONTEXT_KEY: list(self.context_offsets)} if self.is_2_5d else {}),
        }

    def save(self, folder: str | Path) -> None:
        """Write ``preprocessor_config.json`` into ``folder`` (atomically)."""
        write_text_atomic(Path(folder) / PREPROCESSOR_FILE, json.dumps(self.to_dict(), indent=2) + "\n")


GrayInput = np.ndarray | torch.Tensor


def _as_float_planes(image: GrayInput, device: torch.device) -> torch.Tensor:
    """(H, W) slice or (3, H, W) channel stack, uint8 array or tensor -> (1, C, H, W) float32
    in 0..255 on ``device`` (C = 1 or 3)."""
    tensor = torch.as_tensor(image)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a (H, W) grayscale slice or a (3, H, W) channel stack, got shape {tuple(tensor.shape)}"
        )
    # Move as uint8 (4x less traffic than float), convert on the device.
    return tensor.to(device, non_blocking=True).to(torch.float32)[None]


def resize_gray(
    images: Sequence[GrayInput] | torch.Tensor,
    config: ProcessingConfig,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Resize grayscale slices (or 2.5D channel stacks) to the model's input size.

    Args:
        images: (H, W) uint8 slices (sizes may differ), or a (B, H, W) uint8 tensor; or, for a
            2.5D model, (3, H, W) channel stacks (:func:`segapp.model.context.context_stack`),
            or a (B, 3, H, W) tensor. One batch holds one kind.
        config: Target size.
        device: Where the work happens.

    Returns:
        (B, 1, height, width) for slices, (B, 3, height, width) for stacks; float32 in 0..255 on
        ``device``. Bilinear with antialiasing, like PIL's bilinear resize used by
        ``SegformerImageProcessor``. A slice is resized once, not three times: :func:`normalize`
        spreads it over the channels.
    """
    device = torch.device(device)
    size = (config.height, config.width)
    if isinstance(images, torch.Tensor) and images.ndim in (3, 4):
        batch = images.to(device, non_blocking=True).to(torch.float32)
        if batch.ndim == 3:
            batch = batch[:, None]
        if tuple(batch.shape[-2:]) == size:
            return batch
        return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = []
    for image in images:
        planes = _as_float_planes(image, device)
        if tuple(planes.shape[-2:]) != size:
            planes = F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(planes)
    if not out:
        raise ValueError("no images to preprocess")
    if len({t.shape[1] for t in out}) > 1:
        raise ValueError("a batch holds either slices or channel stacks, not both")
    return torch.cat(out)


def normalize(gray: torch.Tensor, config: ProcessingConfig) -> torch.Tensor:
    """(B, 1, H, W) slices or (B, 3, H, W) stacks, float 0..255 -> (B, 3, H, W) ``pixel_values``.

    Mean and std are applied per channel (ImageNet-style); one slice plane is broadcast to the
    three channels.
    """
    mean = torch.tensor(config.image_mean, device=gray.device, dtype=gray.dtype).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, device=gray.device, dtype=gray.dtype).view(1, 3, 1, 1)
    return (gray / 255.0 - mean) / std


def preprocess(
    images: Sequence[GrayInput] | torch.Tensor,
    config: ProcessingConfig,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Grayscale uint8 slices, or 2.5D channel stacks -> model input.

    Args:
        images: See :func:`resize_gray`: (H, W) slices, (3, H, W) stacks, or batches of either.
        config: The model's processing config.
        device: The model's device.

    Returns:
        ``pixel_values``: (B, 3, height, width) float32 on ``device``.
    """
    return normalize(resize_gray(images, config, device), config)


def postprocess(
    logits: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Model logits -> class-id masks and per-pixel confidence at each slice's own size.

    Args:
        logits: (B, C, h, w) raw scores, usually at 1/4 of the input size.
        sizes: (H, W) of each original slice, B entries.

    Returns:
        masks: B tensors (H, W) uint8 of class ids, on the logits' device.
        confidence: B tensors (H, W) float32 in [0, 1], the winning class's probability.
    """
    if logits.ndim != 4 or logits.shape[0] != len(sizes):
        raise ValueError(f"logits {tuple(logits.shape)} do not match {len(sizes)} sizes")
    logits = logits.float()
    masks: list[torch.Tensor] = []
    confidence: list[torch.Tensor] = []
    # Group equal sizes so a batch of same-sized slices is one upsample call.
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        by_size.setdefault((int(size[0]), int(size[1])), []).append(index)
    results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for size, indices in by_size.items():
        up = F.interpolate(logits[indices], size=size, mode="bilinear", align_corners=False)
        probs = up.softmax(dim=1)  # (b, C, H, W)
        conf, ids = probs.max(dim=1)
        for row, index in enumerate(indices):
            results[index] = (ids[row].to(torch.uint8), conf[row])
    for index in range(len(sizes)):
        masks.append(results[index][0])
        confidence.append(results[index][1])
    return masks, confidence


_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Set predicted regions smaller than ``min_px`` pixels to background.

    Args:
        mask: (H, W) uint8 class ids (0 is background).
        min_px: Smallest region kept, in pixels of ``mask``; 0 or 1 keeps everything.

    Returns:
        A new (H, W) uint8 mask; regions are 8-connected and taken per class, so two touching
        organs are judged separately. Background is never changed.
    """
    if min_px <= 1 or not mask.any():
        return mask.copy()
    # Only models that use the clean-up need scipy loaded; scipy ships no type information.
    from scipy import ndimage  # type: ignore[import-untyped]

    out = mask.copy()
    for class_id in np.unique(mask):
        if class_id == 0:
            continue
        regions, count = ndimage.label(mask == class_id, structure=_EIGHT_NEIGHBOURS)
        sizes = np.bincount(regions.ravel(), minlength=count + 1)
        small = sizes < min_px
        small[0] = False  # label 0 is everything outside this class
        if small.any():
            out[small[regions]] = 0
    return out
