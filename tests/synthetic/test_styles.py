"""Tests for the phantom's contrast families (styles), anatomy variant, arms and artefacts."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from segapp.phantom import main
from segapp.synthetic import (
    ANATOMIES,
    ORGANS,
    SLICE_THICKNESS_MM,
    STYLE_WEIGHTS,
    STYLES,
    Chain,
    dataset_slice,
    generate_dataset,
    generate_slice,
    make_case,
    render_slice,
)
from segapp.synthetic.dataset import case_rng, slice_rng
from segapp.synthetic.geometry import dilate, erode, pixel_grid
from segapp.synthetic.rendering import _case_texture, _cut_body
from segapp.synthetic.volume import phantom_volume

NO_CHAIN = Chain(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))


def _case(seed: int, **options):
    return make_case(case_rng(seed, 1), case_id=1, day=0, size=(266, 266), **options)


def _fat_rim(case, z_index: int) -> np.ndarray:
    """(H, W) bool: the middle of the subcutaneous fat layer at this slice."""
    g = pixel_grid(case.width, case.height, *case.spacing_mm)
    cut = _cut_body(case, g, z_index * SLICE_THICKNESS_MM, _case_texture(case, z_index, 0))
    return cut.inside & (cut.depth > 4) & (cut.depth < cut.fat - 3)


def _organ_slice(case, seed: int):
    """A slice of ``case`` with at least 400 organ pixels."""
    for z in range(30, 110, 4):
        sl = render_slice(case, z, slice_rng(seed, 1, 0, z))
        if sl.mask.astype(bool).sum() > 400:
            return z, sl
    raise AssertionError("no slice with organs")  # pragma: no cover


# --- styles


def test_style_ranges_order_fluid_and_fat_as_documented():
    for seed in range(30):
        t2, t1, bssfp = (_case(seed, style=s).levels for s in ("t2", "t1", "bssfp"))
        assert t2.fluid > 1.4 * t2.fat and t2.sb_fluid > t2.fat  # HASTE: fluid far above fat
        assert t2.muscle < t2.liver < t2.fat
        assert t1.fluid < 0.2 * t1.fat and t1.sb_fluid < t1.fat and t1.sb_chyme < t1.fat  # dark bowel
        assert t1.liver > t1.spleen and t1.kidney > t1.medulla  # T1: liver above spleen, cortex above medulla
        assert bssfp.fluid >= bssfp.fat * 0.99  # bSSFP: fluid about as bright as fat


def test_in_the_image_bowel_content_is_above_fat_in_t2_and_below_in_t1():
    ratios: dict[str, list[float]] = {"t2": [], "t1": []}
    for seed in range(6):
        z, t2 = _organ_slice(_case(seed, style="t2"), seed)
        t1 = render_slice(_case(seed, style="t1"), z, slice_rng(seed, 1, 0, z))
        assert np.array_equal(t1.mask, t2.mask)  # one anatomy in both styles
        organs, fat = erode(erode(t2.mask > 0)), _fat_rim(_case(seed), z)
        for style, sl in (("t2", t2), ("t1", t1)):
            image = sl.image16.astype(np.float64)
            ratios[style].append(np.percentile(image[organs], 97) / np.median(image[fat]))
    # Organs without fluid (stool, food, collapsed loops) stay below fat in t2 too; where there
    # is fluid it outshines the fat. In t1 no organ reaches the fat.
    assert sum(r > 1.2 for r in ratios["t2"]) >= 2, ratios
    assert max(ratios["t1"]) < 0.9, ratios


def test_one_seed_gives_one_anatomy_in_every_style():
    slices = {style: generate_slice(4, empty=False, style=style) for style in STYLES}
    first = slices["bssfp"]
    for sl in slices.values():
        assert sl.file_name == first.file_name and np.array_equal(sl.mask, first.mask)
        assert all(np.array_equal(sl.organ_masks[k], first.organ_masks[k]) for k in ORGANS)
    assert not np.array_equal(slices["t1"].image16, slices["t2"].image16)


def test_mixed_draws_each_style_about_as_often_as_its_weight():
    counts = Counter(make_case(case_rng(7, case), case_id=case).style for case in range(300))
    for style, weight in zip(STYLES, STYLE_WEIGHTS):
        assert abs(counts[style] / 300 - weight) < 0.08, counts
    # A named style overrides the draw and keeps the patient.
    assert _case(3, style="t1").body == _case(3).body and _case(3, style="t1").style == "t1"


def test_bad_style_or_anatomy_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="style 'flair'"):
        generate_slice(0, style="flair")
    with pytest.raises(ValueError, match="anatomy 'mirror'"):
        make_case(np.random.default_rng(0), anatomy="mirror")
    with pytest.raises(ValueError, match="style"):
        generate_dataset(tmp_path / "x", train=1, valid=0, seed=0, style="pd", progress=False)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "y"), "--train", "2", "--style", "pd"])
    assert "invalid choice" in capsys.readouterr().err


# --- determinism and files


def test_style_options_are_deterministic_and_match_the_written_files(tmp_path):
    a = generate_slice(12, style="t2", anatomy="variant")
    b = generate_slice(12, style="t2", anatomy="variant")
    assert np.array_equal(a.image16, b.image16) and np.array_equal(a.mask, b.mask)
    assert main(["--out", str(tmp_path), "--train", "3", "--seed", "5", "--style", "t1", "--anatomy", "variant",
                 "--quiet", "--raw"]) == 0
    from PIL import Image

    for path in sorted((tmp_path / "train").rglob("*.png")):
        case, day = (int(v) for v in path.parents[1].name.removeprefix("case").split("_day"))
        sl = dataset_slice(5, case, day, int(path.name.split("_")[1]), style="t1", anatomy="variant")
        assert np.array_equal(np.asarray(Image.open(path)), sl.image16)
        assert dataset_slice(5, case, day, sl.slice_index).mask.shape == sl.mask.shape


def test_a_styled_volume_is_coherent_and_shares_its_labels_across_styles():
    t2 = phantom_volume(3, 2, 0, first=40, count=40, style="t2")
    t1 = phantom_volume(3, 2, 0, first=40, count=40, style="t1")
    assert np.array_equal(t1.labels, t2.labels) and not np.array_equal(t1.image16, t2.image16)
    masks = t2.labels > 0
    ious = [(a & b).sum() / (a | b).sum() for a, b in zip(masks, masks[1:]) if a.sum() > 300 and b.sum() > 300]
    assert len(ious) > 10 and np.median(ious) > 0.7
    # Every slice is the data set's slice of that name.
    index = t2.slice_numbers.index(60)
    assert np.array_equal(dataset_slice(3, 2, 0, 60, style="t2").image16, t2.image16[index])


# --- masks are where the target organs were painted


@pytest.mark.parametrize("seed", [0, 5])
def test_the_mask_is_exactly_where_the_organs_change_the_image(seed):
    case = _case(seed)
    case = dataclasses.replace(case, scanner=dataclasses.replace(case.scanner, ghost=0.0), overlap=False)
    bare = dataclasses.replace(case, stomach=NO_CHAIN, small_bowel=NO_CHAIN, large_bowel=NO_CHAIN)
    z, sl = _organ_slice(case, seed)
    without = render_slice(bare, z, slice_rng(seed, 1, 0, z))
    assert not without.mask.any()
    # (Float rounding may move a far pixel by one count: that is no change.)
    changed = np.abs(sl.image16.astype(np.int32) - without.image16) > 1
    near = sl.mask > 0
    for _ in range(8):  # blur, the fat plane, ink lines and chemical shift reach a few pixels out
        near = dilate(near)
    assert not (changed & ~near).any()
    assert changed[sl.mask > 0].mean() > 0.9


# --- anatomy: arms, field of view, variant


def test_arms_lie_beside_the_body_in_some_cases_and_not_in_others():
    cases = [make_case(case_rng(1, case), case_id=case) for case in range(80)]
    share = np.mean([case.body.arms for case in cases])
    assert 0.3 < share < 0.6
    # The same patient with and without arms: the arms add bright pixels only outside the body.
    case = make_case(case_rng(1, 6), size=(360, 310))  # a wide field: the arms fit in it
    with_arms = dataclasses.replace(case, body=dataclasses.replace(case.body, arms=True))
    without = dataclasses.replace(case, body=dataclasses.replace(case.body, arms=False))
    z = 60
    g = pixel_grid(case.width, case.height, *case.spacing_mm)
    body = _cut_body(case, g, z * SLICE_THICKNESS_MM, _case_texture(case, z, 0)).inside
    on, off = (render_slice(c, z, np.random.default_rng(0)).image16.astype(np.float64) for c in (with_arms, without))
    outside = ~body
    for _ in range(4):
        outside = erode(outside)
    air = np.median(off[outside])
    assert (off[outside] > 8 * air).mean() < 0.002  # no arms: air around the body
    arms = outside & (on > 8 * air)
    cols = np.flatnonzero(arms.any(axis=0))
    assert arms.sum() > 1500 and cols.min() < case.width * 0.25 and cols.max() > case.width * 0.75


def test_the_field_of_view_cuts_the_body_in_some_cases():
    widths = [make_case(case_rng(2, case), case_id=case, size=(266, 266)).body.a for case in range(80)]
    cut = np.mean([a > 199.5 for a in widths])  # the field's half-width: 266 * 1.5 / 2 mm
    assert 0.1 < cut < 0.4


def test_the_variant_anatomy_lies_outside_the_standard_range():
    assert ANATOMIES == ("standard", "variant")
    standard = [_case(seed) for seed in range(40)]
    variant = [_case(seed, anatomy="variant") for seed in range(40)]
    assert max(c.body.fat for c in standard) < min(c.body.fat for c in variant)  # obese habitus
    assert all(c.body.arms and c.body.a > 199.5 for c in variant)  # arms down, body cut by the field
    lower = [v.layout.z_stomach - s.layout.z_stomach for s, v in zip(standard, variant)]
    assert min(lower) > 30  # ptosis: the stomach sits lower


def test_the_stomach_shows_gas_over_fluid_gas_alone_or_no_gas():
    shares = [make_case(case_rng(4, case), case_id=case).stomach_look.gas_share for case in range(120)]
    level = [s for s in shares if 0 < s < 0.5]
    gas = [s for s in shares if s >= 0.7]
    assert len(level) > 15 and len(gas) > 5 and shares.count(0.0) > 40
