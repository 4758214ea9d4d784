"""A wheel carries what the commands need: built from this checkout, installed (not editable) into a
fresh virtual environment, its ``segapp-predict`` segments a bundled example with the default
weights from a working directory outside the repository. The example slices come from the
checkout's top-level ``examples/`` and land inside the package (``segapp/bundled/examples/``).

Slow (a wheel build and a venv; about a minute), run with ``SEGAPP_SLOW=1``. The venv sees the
system site-packages so that torch is not installed again; the test checks that the segapp it
imports is the wheel's copy, not the editable install or this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.bundled import EXAMPLES_DIR, MODEL_DIR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{argv}\n{(result.stdout + result.stderr)[-4000:]}"
    return result.stdout


def _source_copy(target: Path) -> Path:
    """The files git would commit (tracked and untracked-but-not-ignored) copied to ``target``, so
    the build writes its ``build/`` and ``*.egg-info`` there and not into the checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files are the source")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of the source
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_wheel_install_predicts_with_the_bundled_weights_outside_the_checkout(tmp_path: Path) -> None:
    # Nothing from this checkout or the caller's path may leak into the installed environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SEGAPP_WEIGHTS")}
    env.update(HF_HUB_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    # Build the wheel from a copy of the source, with the setuptools already installed (no network).
    source = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
         cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("segapp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in MODEL_DIR.iterdir():
        assert path.relative_to(ROOT).as_posix() in names, f"{path.name} is not in the wheel"
    # The example slices live once, in the checkout's top-level examples/; the build maps them into
    # the package (setup.py), and nothing else of the checkout's top level goes in.
    assert EXAMPLES_DIR == ROOT / "examples" and not (ROOT / "segapp" / "bundled" / "examples").exists()
    examples = sorted(p.name for p in EXAMPLES_DIR.glob("*.png"))
    assert len(examples) == 6
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("segapp/bundled/examples/") and n.endswith(".png"))
    assert shipped == examples
    assert not any(n.startswith("examples/") for n in names)

    # A fresh venv; --ignore-installed, as the editable segapp of the system site is the same version.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path, env=env)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run([python, "-m", "pip", "install", "--no-deps", "--ignore-installed", wheel], cwd=tmp_path, env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import json, sysconfig, segapp, segapp.bundled as b, segapp.cli as c; print(json.dumps({"
        "'purelib': sysconfig.get_paths()['purelib'], 'segapp': segapp.__file__, 'model': str(b.MODEL_DIR), "
        "'examples': str(b.EXAMPLES_DIR), 'default': c.DEFAULT_WEIGHTS}))"
    )
    where = json.loads(_run([python, "-c", probe], cwd=elsewhere, env=env))
    site = Path(where["purelib"]).resolve()
    assert site.is_relative_to(venv.resolve())
    for key in ("segapp", "model", "examples", "default"):
        assert Path(where[key]).is_relative_to(site), f"{key}: {where[key]} is not the wheel's copy"
    assert Path(where["default"]) == Path(where["model"])
    assert sorted(p.name for p in Path(where["model"]).iterdir()) == sorted(p.name for p in MODEL_DIR.iterdir())
    assert Path(where["examples"]) == Path(where["segapp"]).parent / "bundled" / "examples"
    assert sorted(p.name for p in Path(where["examples"]).glob("*.png")) == examples
    for name in examples:  # the same bytes as the checkout's examples/
        assert (Path(where["examples"]) / name).read_bytes() == (EXAMPLES_DIR / name).read_bytes()

    # The installed command, default weights, on a bundled example, run from outside the repository.
    example = sorted(Path(where["examples"]).glob("*.png"))[0]
    out = elsewhere / "predictions"
    _run([bin_dir / "segapp-predict", example, "--out", out, "--device", "cpu"], cwd=elsewhere, env=env)
    mask_path = out / "masks" / example.name
    assert mask_path.is_file(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    mask = np.asarray(Image.open(mask_path))
    with Image.open(example) as image:
        assert mask.shape == (image.height, image.width)
    # The examples were chosen with at least two organs; the demonstration weights find them.
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
    assert len(set(np.unique(mask).tolist()) - {0}) >= 2
