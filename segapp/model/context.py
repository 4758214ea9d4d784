"""2.5D input: which slices fill the model's three input channels.

A 2D model (offsets ``(0, 0, 0)``) sees one slice in all three channels. A 2.5D model sees
neighbouring slices of the same scan: channel ``c`` holds the slice ``offsets[c]`` steps away,
e.g. ``(-2, 0, 2)``. The offsets are stored with the model (``segapp_context_offsets`` in
``preprocessor_config.json``, see :class:`segapp.model.processing.ProcessingConfig`), and every
path (training, validation, evaluate, predict, the Segmenter, the page, the benchmark) finds the
neighbours with :func:`context_indices` and builds the stack with :func:`context_stack`.

**Direction.** Offsets count along the display order of :class:`segapp.io.volume.ScanVolume`:
+1 is the next slice toward the head (slice 0 is the most inferior). Competition slice numbers
grow toward the feet (:mod:`segapp.io.casefolder`), so for a named slice ``SSSS`` offset ``d``
means slice number ``SSSS - d``. Both conventions give the same channels for the same anatomy:
a model trained on the prepared PNG layout reads a case-day folder or a DICOM series the same way.

**Edges and gaps.** When the slice ``d`` steps away is not there (past the end of the volume, or
a missing slice number), the channel takes the present slice nearest to it on the way from the
slice itself: the volume behaves as if it ended at the gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from segapp.io.naming import parse_slice_name

Offsets = tuple[int, int, int]
FLAT: Offsets = (0, 0, 0)  # today's 2D input: the slice in every channel


def check_offsets(value: object, *, source: str = "context offsets") -> Offsets:
    """Three whole numbers as a tuple, or a ValueError naming ``source`` and the value.

    Accepts a sequence of three ints, or a string ``"-2,0,2"`` (what the command line gives).
    """
    items: object = value
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        try:
            items = [int(part) for part in items]  # type: ignore[union-attr]
        except ValueError:
            raise ValueError(f"{source} must be three whole numbers such as -2,0,2; got {value!r}") from None
    if (
        not isinstance(items, (list, tuple))
        or len(items) != 3
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items)
    ):
        example = "-2,0,2" if isinstance(value, str) else "[-2, 0, 2]"
        raise ValueError(f"{source} must be three whole numbers such as {example}; got {value!r}")
    return int(items[0]), int(items[1]), int(items[2])


def format_offsets(offsets: Sequence[int]) -> str:
    """``-2,0,2``: the command line's form, also used in messages."""
    return ",".join(str(int(d)) for d in offsets)


def single_slice_notice(offsets: Sequence[int]) -> str:
    """What a 2.5D model's result says when it was given one slice without its neighbours."""
    return (
        f"This model reads neighbouring slices (offsets {format_offsets(offsets)}); a single slice was "
        "given, so it was used in every channel. Results are better on a whole series: use the "
        "Volume tab, or give predict the whole case-day folder or series."
    )


def context_indices(positions: Sequence[int] | np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """For each slice, the index of the slice that fills each input channel.

    Args:
        positions: (N,) distinct integer positions of the slices along the scan, in display order
            units (+1 = one slice toward the head); any order, gaps allowed. A volume's slices are
            ``range(Z)``.
        offsets: The three channel offsets.

    Returns:
        (N, 3) int64 indices into ``positions``: row ``i``, channel ``c`` is the slice at
        ``positions[i] + offsets[c]`` when present, else the present slice nearest to that
        position between it and ``positions[i]`` (so past an edge or across a gap the
        channel holds the last slice before it; offset 0 is always the slice itself).

    Raises:
        ValueError: two slices at one position.
    """
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    order = np.argsort(pos, kind="stable")
    ordered = pos[order]
    if ordered.size > 1 and np.any(ordered[1:] == ordered[:-1]):
        raise ValueError("two slices share one position: neighbours are ambiguous")
    out = np.empty((pos.size, 3), dtype=np.int64)
    for channel, offset in enumerate(offsets):
        target = pos + int(offset)
        if offset >= 0:  # the highest present position <= target (the slice itself at worst)
            rank = np.searchsorted(ordered, target, side="right") - 1
        else:  # the lowest present position >= target
            rank = np.searchsorted(ordered, target, side="left")
        out[:, channel] = order[rank]
    return out


SlicePlace = tuple[str, int]
"""Where a slice lies: (its scan's key, its position in display order, +1 = one slice toward the
head). Slices of one key form one scan; the key is only compared, never shown."""


def slice_places(names: Sequence[str]) -> list[SlicePlace | None]:
    """The places of competition-named slices (``caseN_dayD_slice_SSSS...``, or ``slice_SSSS...``
    inside a ``caseN_dayD`` folder): key ``caseN_dayD``, position ``-SSSS`` (slice numbers grow
    toward the feet). None for a name that gives no case, day and slice number."""
    places: list[SlicePlace | None] = []
    for name in names:
        parsed = parse_slice_name(name)
        if parsed is None or parsed.case is None or parsed.day is None:
            places.append(None)
        else:
            places.append((f"case{parsed.case}_day{parsed.day}", -parsed.slice))
    return places


def volume_places(key: str, depth: int) -> list[SlicePlace]:
    """The places of a volume's ``depth`` slices in display order (slice ``k`` at position ``k``)."""
    return [(key, k) for k in range(depth)]


def placed_context_indices(places: Sequence[SlicePlace | None], offsets: Sequence[int]) -> np.ndarray:
    """:func:`context_indices` for slices of several scans, each scan on its own.

    Args:
        places: Each slice's :data:`SlicePlace`, or None for a slice of unknown place.
        offsets: The three channel offsets.

    Returns:
        (N, 3) int64 indices into ``places``. A slice of unknown place, or one whose place
        repeats another's in its scan (every slice of that scan then), has only itself.
    """
    out = np.repeat(np.arange(len(places), dtype=np.int64)[:, None], 3, axis=1)
    groups: dict[str, list[tuple[int, int]]] = {}
    for index, place in enumerate(places):
        if place is not None:
            groups.setdefault(place[0], []).append((index, place[1]))
    for members in groups.values():
        indices = np.array([i for i, _ in members], dtype=np.int64)
        positions = [p for _, p in members]
        if len(set(positions)) != len(positions):
            continue  # ambiguous: leave these slices on their own
        out[indices] = indices[context_indices(positions, offsets)]
    return out


def named_context_indices(names: Sequence[str], offsets: Sequence[int]) -> np.ndarray:
    """:func:`placed_context_indices` of competition-named slices (:func:`slice_places`): (N, 3)
    int64 indices into ``names``; a slice without a competition name has only itself."""
    return placed_context_indices(slice_places(names), offsets)


def context_stack(planes: Sequence[np.ndarray] | Mapping[int, np.ndarray] | np.ndarray, neighbours: np.ndarray,
                  index: int) -> np.ndarray:
    """The (3, H, W) channel stack of slice ``index``: ``planes[neighbours[index, c]]`` in channel c.

    Args:
        planes: The slices, (H, W) each, by index (a (Z, H, W) array works too, and a mapping
            that holds at least the slice and its neighbours).
        neighbours: (N, 3) from :func:`context_indices` or :func:`named_context_indices`.
        index: The slice.

    Returns:
        (3, H, W) in the planes' dtype. A neighbour of another size than the slice (slices
        that were named as one case-day but are not) is replaced by the slice itself.
    """
    centre = planes[index]
    chosen = [planes[int(j)] for j in neighbours[index]]
    return np.stack([plane if plane.shape == centre.shape else centre for plane in chosen])


__all__ = [
    "FLAT",
    "Offsets",
    "SlicePlace",
    "check_offsets",
    "context_indices",
    "context_stack",
    "format_offsets",
    "named_context_indices",
    "placed_context_indices",
    "single_slice_notice",
    "slice_places",
    "volume_places",
]
