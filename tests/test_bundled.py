"""Where the bundled files are found: the example slices live once, in the top-level ``examples/``,
and an installed wheel carries them inside the package (``tests/test_install.py`` builds one)."""

from __future__ import annotations

from pathlib import Path

from segapp.bundled import EXAMPLES_DIR, MODEL_DIR, _examples_dir

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_serves_the_top_level_examples() -> None:
    assert EXAMPLES_DIR == ROOT / "examples"
    assert len(sorted(EXAMPLES_DIR.glob("*.png"))) == 6
    assert (MODEL_DIR / "model.safetensors").is_file()


def test_the_package_copy_wins_once_it_holds_slices(tmp_path: Path) -> None:
    package = tmp_path / "segapp" / "bundled"
    package.mkdir(parents=True)
    assert _examples_dir(package) == tmp_path / "examples"  # a source checkout or an editable install
    (package / "examples").mkdir()  # an empty folder left over from before the move
    assert _examples_dir(package) == tmp_path / "examples"
    (package / "examples" / "case1_day1_slice_0001_266_266_1.50_1.50.png").write_bytes(b"")
    assert _examples_dir(package) == package / "examples"  # an installed wheel
