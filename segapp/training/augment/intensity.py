"""The intensity part of augmentation: grey-level curves, bias fields, blur and sharpening, noise,
and the classic brightness / contrast / gamma window. Image only; masks never change here.

Images are (B, C, H, W) float. Every random value is drawn per slice and shared by its C
channels (neighbouring slices of one scan see one scanner); only the noise itself is drawn per
pixel and channel. A lever whose probability is 0 draws nothing and changes nothing; a slice
not drawn for a lever comes back bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segapp.training.augment.config import AugmentConfig
from segapp.training.augment.geometry import chance, uniform

REMAP_POINTS = 6  # control points of a grey-level curve on 0..1 (the first is black: air stays dark)
LUT_SIZE = 256  # entries of the sampled curve
LUT_SMOOTH = 10.0  # Gaussian sigma (entries) that rounds the curve's corners
BIAS_GRID = 4  # control points per axis of a bias field: one or two swells across the body
SHARPEN_SIGMA = (0.5, 1.5)  # radius range (px) of the unsharp mask
CORRELATED_SIGMA = (0.7, 2.0)  # blur (px) that gives correlated noise its grain


def _per_slice(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1), to scale a (B, C, H, W) batch slice by slice."""
    return values.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- grey-level curves


def remap_curves(b: int, config: AugmentConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, LUT_SIZE) random smooth grey-level curves on 0..1, sampled at ``linspace(0, 1, LUT_SIZE)``.

    Monotone ones (sorted control values: the tissues keep their order of brightness, with a
    new spacing) and, for a ``config.remap_nonmonotone`` share, free ones (any tissue may become
    the brightest: inversions and swaps). Both start near 0, so air stays dark, as in every MR
    sequence. Piecewise linear through :data:`REMAP_POINTS` points, then smoothed with a Gaussian
    on the odd extension of the ends, which keeps a monotone curve monotone and a line a line.
    """
    k = REMAP_POINTS
    steps = uniform((b, k - 1), 0.05, 1.0, generator, device).cumsum(1)
    low = uniform((b, 1), 0.0, 0.08, generator, device)
    high = uniform((b, 1), 0.85, 1.0, generator, device)
    monotone = low + (high - low) * torch.cat([torch.zeros_like(low), steps / steps[:, -1:]], 1)
    free = torch.cat([low, uniform((b, k - 1), 0.0, 1.0, generator, device)], 1)
    points = torch.where(chance(b, config.remap_nonmonotone, generator, device)[:, None], free, monotone)
    lut = F.interpolate(points[:, None], size=LUT_SIZE, mode="linear", align_corners=True)  # (B, 1, L)
    radius = math.ceil(3 * LUT_SMOOTH)
    taps = torch.arange(-radius, radius + 1, device=device, dtype=lut.dtype)
    kernel = torch.exp(-(taps**2) / (2 * LUT_SMOOTH**2))
    left = 2 * lut[..., :1] - lut[..., 1 : radius + 1].flip(-1)
    right = 2 * lut[..., -1:] - lut[..., -radius - 1 : -1].flip(-1)
    padded = torch.cat([left, lut, right], -1)
    return F.conv1d(padded, (kernel / kernel.sum()).view(1, 1, -1))[:, 0].clamp(0, 1)


def apply_curves(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map (B, C, H, W) values on 0..1 through per-slice curves (B, L), linearly between entries."""
    b, last = x.shape[0], lut.shape[1] - 1
    position = x.reshape(b, -1).clamp(0, 1) * last
    index = position.floor().long().clamp(max=last - 1)
    frac = position - index
    below, above = lut.gather(1, index), lut.gather(1, index + 1)
    return (below + frac * (above - below)).view_as(x)


def remap(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """A random grey-level curve on a ``config.remap`` share of the slices (x on 0..1)."""
    b, device = x.shape[0], x.device
    curves = remap_curves(b, config, generator, device)
    drawn = chance(b, config.remap, generator, device)
    return torch.where(_per_slice(drawn), apply_curves(x, curves), x)


# ----------------------------------------------------------------------------- bias fields


def bias_field(b: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
    """(B, 1, H, W) smooth multiplicative field within [1 - s, 1 + s], s up to ``config.bias_strength``.

    A :data:`BIAS_GRID` square of Gaussian draws, upsampled bicubic and scaled so its largest
    swing is exactly s; 1 where the slice is not drawn (probability ``config.bias``).
    """
    coarse = torch.randn((b, 1, BIAS_GRID, BIAS_GRID), generator=generator, device=device)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    strength = uniform(b, 0.0, config.bias_strength, generator, device) * chance(b, config.bias, generator, device)
    return 1 + _per_slice(strength) * field


def coil_field(b: int, height: int, config: AugmentConfig, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
    """(B, 1, H, 1) surface-coil shading: the top (anterior) and bottom (posterior) rows brighter than the middle.

    1 + a d^2 above the centre row c, 1 + p d^2 below it (d the distance from c, 1 at the top and
    bottom rows; c within ±0.2 of the middle; a and p up to ``config.coil_strength`` each), divided by its maximum so the
    middle darkens rather than the edges saturating; 1 where not drawn (probability ``config.coil``).
    """
    rows = torch.linspace(-1, 1, height, device=device)[None, :]  # (1, H)
    centre = uniform((b, 1), -0.2, 0.2, generator, device)
    top, bottom = (uniform((b, 1), 0.0, config.coil_strength, generator, device) for _ in range(2))
    drawn = chance(b, config.coil, generator, device)[:, None]
    offset = rows - centre  # scaled per side so that each edge row reaches exactly its gain
    above = offset < 0
    reach = torch.where(above, 1 + centre, 1 - centre)
    shade = 1 + torch.where(above, top, bottom) * (offset / reach) ** 2 * drawn
    return (shade / shade.amax(1, keepdim=True)).view(b, 1, height, 1)


# ----------------------------------------------------------------------------- blur and sharpening


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each slice of (B, C, H, W) with its own Gaussian, sigma (B,) in pixels (0: unchanged).

    Separable, as one grouped convolution per axis over all B x C images; reflected edges, so the
    border does not darken.
    """
    b, c, height, width = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernels = torch.exp(-(taps[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (B, K)
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    flat = x.reshape(1, b * c, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernels[:, None, :, None], groups=b * c)
    return flat.view(b, c, height, width)


def blur_or_sharpen(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur (``config.blur`` of the slices, sigma up to ``blur_sigma`` px) or an unsharp mask
    (``config.sharpen``, amount up to ``sharpen_amount``); never both on one slice."""
    b, device = x.shape[0], x.device
    pick = torch.rand(b, generator=generator, device=device)
    blurred, sharpened = pick < config.blur, (pick >= config.blur) & (pick < config.blur + config.sharpen)
    blur_sigma = uniform(b, 0.3, max(config.blur_sigma, 0.3), generator, device)
    sharpen_sigma = uniform(b, *SHARPEN_SIGMA, generator, device)
    amount = uniform(b, 0.2, max(config.sharpen_amount, 0.2), generator, device)
    zero = torch.zeros_like(amount)
    sigma = torch.where(blurred, blur_sigma, torch.where(sharpened, sharpen_sigma, zero))
    weight = torch.where(blurred, torch.ones_like(amount), torch.where(sharpened, -amount, zero))
    radius = math.ceil(3 * max(config.blur_sigma, SHARPEN_SIGMA[1]))
    out = x + _per_slice(weight) * (gaussian_blur(x, sigma, radius) - x)
    return torch.where(_per_slice(blurred | sharpened), out, x)


# ----------------------------------------------------------------------------- noise


def textured_noise(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Noise of one of three textures on a ``config.noise`` share of the slices (x on 0..1).

    White Gaussian; Rician (the magnitude of complex Gaussian noise: positive speckle in the
    air, as in magnitude MR images); or spatially correlated (white noise blurred by 0.7-2 px,
    rescaled to unit variance: the grain of parallel imaging and interpolation). Standard
    deviation up to ``config.noise_strength`` of the grey range, drawn as strength x u^2 (u uniform).
    """
    b, device = x.shape[0], x.device
    drawn = chance(b, config.noise, generator, device)
    kind = torch.randint(0, 3, (b,), generator=generator, device=device)
    # Squared uniform: mostly mild noise, now and then the strongest (gamma < 1 later amplifies it in the dark).
    std = _per_slice(uniform(b, 0.07, 1.0, generator, device) ** 2 * config.noise_strength)
    grain = uniform(b, *CORRELATED_SIGMA, generator, device)
    real = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    imaginary = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    radius = math.ceil(3 * CORRELATED_SIGMA[1])
    taps = torch.arange(-radius, radius + 1, device=device, dtype=x.dtype)
    kernels = torch.exp(-(taps[None] ** 2) / (2 * grain[:, None] ** 2))
    # A separable kernel's 2D L2 norm is the product of its 1D ones: divide it out for unit variance.
    norm = (kernels**2).sum(1) / kernels.sum(1) ** 2
    correlated = gaussian_blur(real, grain, radius) / _per_slice(norm)
    white = x + std * real
    rician = torch.sqrt((x + std * real) ** 2 + (std * imaginary) ** 2)
    noisy = torch.where(_per_slice(kind == 0), white, torch.where(_per_slice(kind == 1), rician, x + std * correlated))
    return torch.where(_per_slice(drawn), noisy, x)


# ----------------------------------------------------------------------------- all of it


def domain_randomisation(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """The domain-randomisation levers on (B, C, H, W) images in 0..255, in the order an MR image forms.

    Grey-level curve (the tissue contrast of another sequence), then bias and coil fields (the
    receive coils), blur or sharpening (resolution and reconstruction filters), noise. Levers at
    probability 0 are skipped without a draw: with all off, this returns ``x`` itself.
    """
    if not config.domain_levers_on():
        return x
    b, _, height, _ = x.shape
    y = x / 255.0
    if config.remap > 0:
        y = remap(y, config, generator)
    if config.bias > 0:
        y = y * bias_field(b, height, x.shape[3], config, generator, x.device)
    if config.coil > 0:
        y = y * coil_field(b, height, config, generator, x.device)
    if config.blur > 0 or config.sharpen > 0:
        y = blur_or_sharpen(y, config, generator)
    if config.noise > 0:
        y = textured_noise(y, config, generator)
    return y.clamp(0, 1) * 255.0


def photometric(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, gamma and light white noise on (B, C, H, W) images in 0..255 (the classic set)."""
    b, device = images.shape[0], images.device
    x = images / 255.0
    gamma = uniform(b, *config.gamma, generator, device).view(b, 1, 1, 1)
    x = x.clamp_min(0).pow(gamma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(b, *config.contrast, generator, device).view(b, 1, 1, 1)
    brightness = uniform(b, -config.brightness, config.brightness, generator, device).view(b, 1, 1, 1)
    x = (x - mean) * contrast + mean + brightness
    sigma = uniform(b, 0.0, config.noise_std, generator, device).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    x = x + sigma * noise
    return x.clamp(0, 1) * 255.0
