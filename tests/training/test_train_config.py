"""Training options: the dataclass-to-argparse helper on throwaway dataclasses, and TrainConfig's parser."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from segapp.training.augment import DOMAIN, PRESETS, AugmentConfig
from segapp.training.config import (
    SAVED_BEFORE,
    TrainConfig,
    TrainingError,
    add_dataclass_arguments,
    augment_config,
    build_parser,
    config_from_args,
    option,
)


@dataclass
class Options:
    name: str = option("x", "a name")
    count: int = option(3, "how many", choices=[1, 2, 3])
    rate: float = option(0.5, "a rate")
    verbose: bool = option(False, "talk")
    limit: int | None = option(None, "an optional int")
    scale: Optional[float] = option(2.0, "an optional float, old spelling")  # noqa: UP045 (the spelling under test)
    label: str | None = option(None, "an optional str")
    sizes: list[int] = option([64, 128], "one or more ints")
    weights: list[float] = option([1.0], "one or more floats")
    tags: list[str] = field(default_factory=list, metadata={"help": "one or more strs"})


def _parse(argv: list[str], config_class: type = Options, **parser_options) -> argparse.Namespace:
    parser = argparse.ArgumentParser(**parser_options)
    add_dataclass_arguments(parser, config_class)
    return parser.parse_args(argv)


def test_scalars_and_bools_parse_to_their_types() -> None:
    args = _parse(["--name", "y", "--count", "2", "--rate", "0.25", "--verbose"])
    assert (args.name, args.count, args.rate, args.verbose) == ("y", 2, 0.25, True)
    assert _parse(["--no-verbose"]).verbose is False
    with pytest.raises(SystemExit):
        _parse(["--count", "5"])  # not among the field's choices
    with pytest.raises(SystemExit):
        _parse(["--rate", "fast"])


def test_optional_fields_take_a_value_or_none() -> None:
    args = _parse(["--limit", "7", "--scale", "0.5", "--label", "abc"])
    assert (args.limit, args.scale, args.label) == (7, 0.5, "abc")
    args = _parse(["--limit", "none", "--scale", "None", "--label", "NONE"])
    assert (args.limit, args.scale, args.label) == (None, None, None)
    with pytest.raises(SystemExit):
        _parse(["--limit", "7.5"])  # still an int when not "none"


def test_list_fields_take_one_or_more_values() -> None:
    args = _parse(["--sizes", "32", "48", "--weights", "0.5", "2", "--tags", "a"])
    assert (args.sizes, args.weights, args.tags) == ([32, 48], [0.5, 2.0], ["a"])
    with pytest.raises(SystemExit):
        _parse(["--sizes"])  # nargs="+": at least one
    with pytest.raises(SystemExit):
        _parse(["--sizes", "1", "x"])


def test_defaults_stay_the_dataclass_and_the_help_names_them() -> None:
    assert set(vars(_parse([])).values()) == {None}  # not given: None, not the dataclass default
    given = vars(_parse(["--sizes", "8", "--limit", "none"], argument_default=argparse.SUPPRESS))
    assert given == {"sizes": [8], "limit": None}
    assert Options(**given) == Options(sizes=[8], limit=None)  # the dataclass fills in the rest
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Options)
    help_text = " ".join(parser.format_help().split())
    assert "one or more ints (default: [64, 128])" in help_text and "an optional int (default: None)" in help_text


def test_option_copies_list_defaults_per_instance() -> None:
    first, second = Options(), Options()
    first.sizes.append(256)
    assert second.sizes == [64, 128]


@pytest.mark.parametrize("annotation", ["dict[str, int]", "list[int] | None", "tuple[int, int]", "bool | None", "int | str", "list[bool]"])
def test_unsupported_field_types_name_the_field(annotation: str) -> None:
    bad = dataclass(type("Bad", (), {"__annotations__": {"odd_one": annotation}, "odd_one": None}))
    with pytest.raises(TypeError, match="'odd_one'"):
        add_dataclass_arguments(argparse.ArgumentParser(), bad)


def test_train_parser_has_one_option_per_field() -> None:
    parser = build_parser()
    assert vars(parser.parse_args([])) == {}  # only what is given overrides --config
    args = parser.parse_args(["--image-size", "64", "--no-hausdorff", "--lr", "0.1", "--scheduler", "constant"])
    assert vars(args) == {"image_size": 64, "hausdorff": False, "lr": 0.1, "scheduler": "constant"}
    flags = {a.dest for a in parser._actions} - {"help", "config"}
    assert flags == set(TrainConfig.__dataclass_fields__)


def test_augmentation_defaults_to_the_domain_preset_and_each_lever_has_an_option() -> None:
    assert augment_config(config_from_args([])) == PRESETS["domain"]
    assert augment_config(config_from_args(["--augment-preset", "classic"])) == AugmentConfig()
    off = augment_config(config_from_args(["--aug-elastic", "0", "--aug-noise-strength", "0.02"]))
    assert off == dataclasses.replace(PRESETS["domain"], elastic=0.0, noise_strength=0.02)
    # An option overrides its lever on either preset; "none" gives the preset's value back.
    assert augment_config(config_from_args(["--augment-preset", "classic", "--aug-zoom", "0.4"])).zoom == 0.4
    assert augment_config(config_from_args(["--aug-zoom", "none"])).zoom == DOMAIN["zoom"]
    help_text = build_parser().format_help()
    for name in DOMAIN:
        assert "--aug-" + name.replace("_", "-") in help_text


def test_bad_augmentation_values_stop_with_a_message() -> None:
    with pytest.raises(TrainingError, match="remap is a probability"):
        config_from_args(["--aug-remap", "1.5"])
    with pytest.raises(TrainingError, match="exclude each other"):
        TrainConfig(aug_blur=0.7, aug_sharpen=0.7)
    with pytest.raises(SystemExit):
        config_from_args(["--augment-preset", "fancy"])


def _saved_run(tmp_path: Path, **config: object) -> Path:
    """A run folder whose train_config.json holds ``config`` (and its own path as ``out``)."""
    out = tmp_path / "run"
    out.mkdir(parents=True)
    (out / "train_config.json").write_text(json.dumps({**config, "out": str(out)}))
    return out


def test_a_run_saved_before_the_presets_resumes_with_classic_augmentation(tmp_path: Path) -> None:
    # A train_config.json written before domain randomisation has none of its keys.
    old = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "augment_preset" and not k.startswith("aug_")}
    out = _saved_run(tmp_path, **{**old, "data": "d"})
    config = config_from_args(["--out", str(out), "--resume"])
    assert config.augment_preset == SAVED_BEFORE["augment_preset"] == "classic"
    assert augment_config(config) == PRESETS["classic"]
    with pytest.raises(TrainingError, match="augment_preset"):
        config_from_args(["--out", str(out), "--resume", "--augment-preset", "domain"])
    with pytest.raises(TrainingError, match="aug_elastic"):
        config_from_args(["--out", str(out), "--resume", "--aug-elastic", "0.3"])
    # A run saved with the keys resumes with what it saved.
    new = _saved_run(tmp_path / "new", **dataclasses.asdict(TrainConfig(aug_zoom=0.2)))
    resumed = augment_config(config_from_args(["--out", str(new), "--resume"]))
    assert resumed == dataclasses.replace(PRESETS["domain"], zoom=0.2)
