"""The label table's display schemes: colour parsing, palettes, and the colour-blind check.

The check simulates deuteranopia and protanopia (Machado, Oliveira & Fernandes 2009, severity 1.0,
applied in linear sRGB), then measures every pair of organ colours as CIE76 ΔE*ab in CIELAB (D65).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segapp.labels import (
    DEFAULT_SCHEME,
    FOREGROUND,
    LABELS,
    SCHEMES,
    hex_color,
    organ_palette,
    parse_color,
    scheme,
)

# Machado et al. 2009, severity 1.0 (linear RGB -> linear RGB).
MACHADO = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
}
# Two colours this far apart in CIELAB are told apart at a glance (about 9 just-noticeable
# differences of 2.3); the default scheme must keep every organ pair at least this far apart.
MIN_DELTA_E = 20.0


def _linear(rgb) -> np.ndarray:
    c = np.asarray(rgb, dtype=float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def smallest_difference(colors, deficiency: str) -> float:
    """The smallest ΔE*ab between two of ``colors`` as a person with ``deficiency`` sees them."""
    seen = [_lab(np.clip(MACHADO[deficiency] @ _linear(c), 0, 1)) for c in colors]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(seen, 2))


@pytest.mark.parametrize("deficiency", sorted(MACHADO))
def test_the_default_scheme_stays_distinguishable_for_colour_blind_eyes(deficiency: str) -> None:
    organs = scheme(DEFAULT_SCHEME).colors[1:]
    # Measured: protanopia 20.7 (small vs large bowel), deuteranopia 31.4.
    assert smallest_difference(organs, deficiency) >= MIN_DELTA_E


def test_the_classic_scheme_is_not_safe_which_the_simulation_shows() -> None:
    # Red and green collapse for deuteranopes (14.1): the check can tell a safe palette from an unsafe one.
    assert smallest_difference(scheme("classic").colors[1:], "deuteranopia") < MIN_DELTA_E


def test_the_default_scheme_is_the_label_table() -> None:
    assert scheme(DEFAULT_SCHEME).colors == tuple(label.color for label in LABELS)
    assert scheme("no-such-scheme").key == DEFAULT_SCHEME
    assert all(len(s.colors) == len(LABELS) for s in SCHEMES)


def test_colours_parse_from_what_pickers_send() -> None:
    assert parse_color("#E69F00") == (230, 159, 0)
    assert parse_color("#abc") == (170, 187, 204)
    assert parse_color("rgba(230, 159, 0, 1)") == (230, 159, 0)
    assert parse_color("rgb(300 0 12.4)") == (255, 0, 12)
    assert hex_color((230, 159, 0)) == "#e69f00"
    with pytest.raises(ValueError):
        parse_color("orange; background:url(x)")


def test_organ_palette_keeps_the_table_colour_for_what_cannot_be_read() -> None:
    palette = organ_palette(["#ff0000", "not a colour"])
    assert palette[0] == (0, 0, 0)
    assert palette[FOREGROUND[0].id] == (255, 0, 0)
    assert palette[FOREGROUND[1].id] == FOREGROUND[1].color
    assert palette[FOREGROUND[2].id] == FOREGROUND[2].color
    assert organ_palette(None) == tuple(label.color for label in LABELS)
