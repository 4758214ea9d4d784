"""Tests for the split between a case (segapp.synthetic.anatomy) and its slices
(segapp.synthetic.rendering): what a volume writer relies on."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.synthetic import ORGANS, SLICE_THICKNESS_MM, PhantomSlice, make_case, render_slice
from segapp.synthetic.geometry import pixel_grid
from segapp.synthetic.rendering import _TISSUES, _case_texture, _cut_body

SLICES = (30, 45, 60, 75, 90)  # through the stomach, the bowel loops and the colon


def _same(a: PhantomSlice, b: PhantomSlice) -> bool:
    return (
        np.array_equal(a.image16, b.image16)
        and np.array_equal(a.mask, b.mask)
        and all(np.array_equal(a.organ_masks[k], b.organ_masks[k]) for k in ORGANS)
        and a.file_name == b.file_name
    )


def test_a_case_and_its_slices_are_deterministic():
    one = make_case(np.random.default_rng(17), case_id=3, day=2, size=(360, 310))
    two = make_case(np.random.default_rng(17), case_id=3, day=2, size=(360, 310))
    for part in ("body", "layout", "levels", "scanner", "stomach_look"):
        assert getattr(one, part) == getattr(two, part), part
    forwards = [render_slice(one, z, np.random.default_rng([1, z])) for z in SLICES]
    # Another case object, slices in the other order: a slice depends on (case, z, rng) only.
    backwards = [render_slice(two, z, np.random.default_rng([1, z])) for z in reversed(SLICES)]
    assert all(_same(a, b) for a, b in zip(forwards, reversed(backwards)))
    assert any(sl.mask.any() for sl in forwards)
    # The slice's own rng decides the noise: another stream, another image, the same masks.
    other = render_slice(one, SLICES[0], np.random.default_rng([2, SLICES[0]]))
    assert not np.array_equal(other.image16, forwards[0].image16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_organs_stay_inside_the_body_cavity(seed):
    case = make_case(np.random.default_rng(seed), size=(266, 266))
    g = pixel_grid(case.width, case.height, *case.spacing_mm)
    seen = 0
    for z_index in range(20, 120, 5):  # the abdomen; above and below there are no organs
        sl = render_slice(case, z_index, np.random.default_rng(z_index))
        organs = np.logical_or.reduce([sl.organ_masks[name] for name in ORGANS])
        if not organs.any():
            continue
        seen += 1
        # The cavity at this z, with the same coarse texture the renderer bends the wall by.
        coarse = _case_texture(case, z_index, 0)
        cavity = _cut_body(case, g, z_index * SLICE_THICKNESS_MM, coarse).cavity
        assert not (organs & ~cavity).any(), (seed, z_index)
    assert seen >= 5


def test_every_painted_tissue_has_a_level():
    # The canvas looks levels up by tissue name: a name missing from Levels would fail
    # only when that structure is painted, so check them all here.
    levels = make_case(np.random.default_rng(0)).levels
    for tissue in _TISSUES:
        assert isinstance(getattr(levels, tissue), float), tissue
