"""The label set: the one source of truth for class ids, names and colours.

Ids follow the notebook and its masks: 0 background, 1 stomach, 2 small bowel,
3 large bowel. Colours are from the Okabe-Ito palette, chosen to stay
distinguishable under the common forms of colour blindness.
"""

from __future__ import annotations

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
