"""What augmentation draws: the ranges and probabilities (:class:`AugmentConfig`) and the presets.

Apart from the code that draws (:mod:`.geometry`, :mod:`.intensity`, the package's :func:`augment`),
so that those import the contract and nothing imports back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of the random changes; each slice draws its own values.

    The classic set (always on; uniform draws in the ranges):
        rotation_deg: Rotation in [-r, r] degrees.
        scale: (min, max) zoom factor.
        translate: Shift up to this fraction of the image size, each axis.
        brightness: Added offset in [-b, b] on the 0..1 scale.
        contrast: Multiplier range around the slice mean.
        gamma: Exponent range on the 0..1 scale.
        noise_std: Gaussian noise standard deviation up to this (0..1 scale).

    The domain-randomisation levers: a probability per slice (0: off, nothing drawn), then its strength.
        remap: Random smooth grey-level curve; remap_nonmonotone: the share of those curves that are
            free (tissues may swap brightness) rather than monotone.
        bias: Smooth multiplicative field; bias_strength: its largest swing (0.4: within ±40 %).
        coil: Surface-coil shading (top and bottom rows brighter); coil_strength: the edge gain
            before renormalising (0.6: edges up to 1.6 x the middle).
        blur: Gaussian blur; blur_sigma: the largest sigma in pixels.
        sharpen: Unsharp mask (never with blur on one slice); sharpen_amount: the largest amount.
        noise: White, Rician or correlated noise; noise_strength: the largest standard deviation (0..1 scale).
        elastic: Smooth bending; elastic_magnitude: the largest displacement, as a fraction of the image size.
        zoom: Zoom in or out; zoom_in, zoom_out: the largest and smallest factor (log-uniform between).
        crop_sides: Horizontal stretch that cuts the body's sides; crop_sides_max: the largest factor.
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.06
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.03
    remap: float = 0.0
    remap_nonmonotone: float = 0.3
    bias: float = 0.0
    bias_strength: float = 0.4
    coil: float = 0.0
    coil_strength: float = 0.6
    blur: float = 0.0
    blur_sigma: float = 1.5
    sharpen: float = 0.0
    sharpen_amount: float = 1.0
    noise: float = 0.0
    noise_strength: float = 0.05
    elastic: float = 0.0
    elastic_magnitude: float = 0.03
    zoom: float = 0.0
    zoom_in: float = 1.5
    zoom_out: float = 0.8
    crop_sides: float = 0.0
    crop_sides_max: float = 1.4

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augmentation {name} is a probability: give a value in 0..1, not {getattr(self, name)}")
        if self.blur + self.sharpen > 1:
            raise ValueError(f"blur ({self.blur}) and sharpen ({self.sharpen}) exclude each other: their sum must be at most 1")
        if not 0 < self.zoom_out <= self.zoom_in:
            raise ValueError(f"zoom_out ({self.zoom_out}) must be above 0 and at most zoom_in ({self.zoom_in})")
        if self.crop_sides_max < 1:
            raise ValueError(f"crop_sides_max ({self.crop_sides_max}) is a stretch factor: at least 1")
        strengths = ("bias_strength", "coil_strength", "blur_sigma", "sharpen_amount", "noise_strength", "elastic_magnitude")
        for name in strengths:
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be at least 0, not {getattr(self, name)}")

    def domain_levers_on(self) -> bool:
        """Whether any intensity lever of domain randomisation has a probability above 0."""
        return any(getattr(self, name) > 0 for name in ("remap", "bias", "coil", "blur", "sharpen", "noise"))


PROBABILITIES = ("remap", "remap_nonmonotone", "bias", "coil", "blur", "sharpen", "noise", "elastic", "zoom", "crop_sides")
# The fields of the domain levers (probabilities and strengths): the training options --aug-NAME.
_NAMES = [f.name for f in dataclasses.fields(AugmentConfig)]
LEVERS = tuple(_NAMES[_NAMES.index("remap") :])

# Probabilities of the domain preset. Half the slices keep the phantom's own contrast and
# a bias-free field, so the model still sees the clean look it is validated on; 15 % get a
# free curve (0.5 x 0.3), enough to break any rule "bright = fluid-filled bowel" without
# spending most of training on contrasts no real sequence has. Geometry: half the slices
# zoomed, a quarter cut at the sides (real scans of wide patients are), a third bent.
DOMAIN: dict[str, Any] = {"remap": 0.5, "bias": 0.5, "coil": 0.3, "blur": 0.25, "sharpen": 0.15, "noise": 0.5,
          "elastic": 0.3, "zoom": 0.5, "crop_sides": 0.25}
PRESETS = {"classic": AugmentConfig(), "domain": AugmentConfig(**DOMAIN)}


def preset(name: str, **overrides: Any) -> AugmentConfig:
    """The preset ``name`` (``classic`` or ``domain``) with some lever fields replaced.

    Raises:
        ValueError: unknown preset, or a value out of its range (the message names it).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}: choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
