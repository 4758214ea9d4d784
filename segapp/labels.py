"""The label set: the one source of truth for class ids, names and colours.

Ids follow the notebook and its masks: 0 background, 1 stomach, 2 small bowel,
3 large bowel. Colours are from the Okabe-Ito palette, chosen to stay
distinguishable under the common forms of colour blindness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    """One segmentation class.

    Attributes:
        id: Pixel value in class-id masks (0..3).
        name: Machine name, as in ``config.json``'s ``id2label`` and the competition CSV.
        display: Human name for pages and reports.
        color: RGB colour, 0..255 each.
        snomed: SNOMED CT (code, meaning) of the organ, for DICOM-SEG and RTSTRUCT; None for
            background.
    """

    id: int
    name: str
    display: str
    color: tuple[int, int, int]
    snomed: tuple[str, str] | None = None

    @property
    def hex(self) -> str:
        """Colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


LABELS: tuple[Label, ...] = (
    Label(0, "background", "Background", (0, 0, 0)),
    Label(1, "stomach", "Stomach", (230, 159, 0), ("69695003", "Stomach")),  # Okabe-Ito orange
    Label(2, "small_bowel", "Small bowel", (86, 180, 233), ("30315005", "Small intestine")),  # sky blue
    Label(3, "large_bowel", "Large bowel", (204, 121, 167), ("14742008", "Large intestine")),  # reddish purple
)
NUM_LABELS: int = len(LABELS)
FOREGROUND: tuple[Label, ...] = LABELS[1:]
ID2LABEL: dict[int, str] = {label.id: label.name for label in LABELS}
LABEL2ID: dict[str, int] = {label.name: label.id for label in LABELS}


def palette() -> list[tuple[int, int, int]]:
    """Colours indexed by class id (background black)."""
    return [label.color for label in LABELS]


RGB = tuple[int, int, int]
Palette = tuple[RGB, ...]  # a colour per class id, background first


@dataclass(frozen=True)
class Scheme:
    """A named set of display colours for the page's overlays, legends and 3D view.

    Exported label files (NIfTI label tables, DICOM-SEG, RTSTRUCT, ``labels.json``) always use the
    label table's colours; a scheme only changes what is drawn.
    """

    key: str
    title: str
    colors: Palette


# The default is the label table itself (Okabe-Ito: colour-blind safe, and what exports carry);
# "classic" is the red / green / blue many GI-tract notebooks draw, brighter but not safe for
# red-green colour blindness (tests/test_labels.py checks both under deuteranopia and protanopia).
SCHEMES: tuple[Scheme, ...] = (
    Scheme("okabe-ito", "Okabe-Ito (colour-blind safe)", tuple(label.color for label in LABELS)),
    Scheme("classic", "Classic red / green / blue", ((0, 0, 0), (255, 40, 40), (40, 220, 40), (40, 110, 255))),
)
DEFAULT_SCHEME = SCHEMES[0].key
_COLOR_RE = re.compile(r"#([0-9a-f]{6}|[0-9a-f]{3})|rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+[\d.]+%?)?\s*\)")


def scheme(key: str | None) -> Scheme:
    """The scheme called ``key``; an unknown or missing key gives the default (a stale browser value)."""
    return next((s for s in SCHEMES if s.key == key), SCHEMES[0])


def parse_color(text: str) -> RGB:
    """``#rrggbb``, ``#rgb`` or ``rgb(r, g, b)`` / ``rgba(...)`` (what colour pickers send) -> RGB.

    Raises:
        ValueError: Anything else.
    """
    match = _COLOR_RE.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"not a colour: {text!r}")
    if match.group(1):
        digits = match.group(1)
        digits = "".join(c * 2 for c in digits) if len(digits) == 3 else digits
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    r, g, b = (min(255, max(0, round(float(v)))) for v in match.groups()[1:])
    return r, g, b


def hex_color(rgb: Sequence[int]) -> str:
    """RGB -> ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def organ_palette(colors: Sequence[str | RGB] | None) -> Palette:
    """A palette from one colour per organ (``FOREGROUND`` order; text as :func:`parse_color`
    reads it); None, or any colour that cannot be read, keeps the label table's colour for it."""
    out = [label.color for label in LABELS]
    for label, value in zip(FOREGROUND, colors or ()):
        try:
            out[label.id] = parse_color(value) if isinstance(value, str) else tuple(int(c) for c in value)[:3]  # type: ignore[assignment]
        except (ValueError, TypeError):
            pass  # a damaged browser value: the organ keeps its label-table colour
    return tuple(out)
