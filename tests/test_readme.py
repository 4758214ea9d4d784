"""The README works as written: its Python code blocks run against the bundled weights, and every
``python -m segapp.X`` it names is a module whose ``--help`` exits 0.

The blocks name a competition-style slice (``case123_day20_slice_0067_266_266_1.50_1.50.png``):
a bundled example is copied to that name in a fresh working directory. The ``gradio_client``
block is pointed at ``python app.py`` started on a free port (slow: ``SEGAPP_SLOW=1``).
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port
from PIL import Image

from segapp.bundled import EXAMPLES_DIR

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_URL = "http://127.0.0.1:7860/"

PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)
MODULES = sorted(set(re.findall(r"python -m (segapp(?:\.\w+)+)", README)))


def _block_id(block: str) -> str:
    return "gradio_client" if "gradio_client" in block else block.splitlines()[0].split()[-1]


def _slice_names(block: str) -> list[str]:
    """The ``.png`` file names the block passes as string literals."""
    return sorted(set(re.findall(r"""["']([\w.-]+\.png)["']""", block)))


def _example_for(name: str) -> Path:
    """A bundled example of the size the name states (``..._W_H_...``), else the first one."""
    examples = sorted(EXAMPLES_DIR.glob("*.png"))
    size = re.search(r"_(\d+_\d+)_\d+\.\d+_\d+\.\d+\.png$", name)
    same = [p for p in examples if size and f"_{size.group(1)}_" in p.name]
    return (same or examples)[0]


@pytest.fixture
def slices_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the repository, holding the slices every block names."""
    monkeypatch.chdir(tmp_path)
    for block in PYTHON_BLOCKS:
        for name in _slice_names(block):
            shutil.copyfile(_example_for(name), tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` on the bundled weights, on a free port, until the module ends."""
    port = free_port()
    folder = tmp_path_factory.mktemp("readme-app")
    env = {k: v for k, v in os.environ.items() if k not in ("SEGAPP_WEIGHTS", "SEGAPP_VOLUME_WEIGHTS", "SEGAPP_AUTH")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(folder / "cache"))
    log = folder / "app.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu"],
                                   cwd=folder, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # the app's clean stop
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def test_readme_has_the_blocks_this_file_runs() -> None:
    # A renamed fence or a dropped block would otherwise pass unnoticed.
    assert {_block_id(b) for b in PYTHON_BLOCKS} == {"gradio_client", "Segmenter", "read_volume"}
    assert {"segapp.predict", "segapp.train", "segapp.evaluate"} <= set(MODULES)


@pytest.mark.parametrize("block", [b for b in PYTHON_BLOCKS if _block_id(b) == "Segmenter"], ids=_block_id)
def test_python_block_runs_on_the_bundled_weights(block: str, slices_cwd: Path) -> None:
    # The block's last line is a call on ``paths``, the reader's own list of slices.
    paths = sorted(str(p) for p in slices_cwd.glob("*.png"))
    namespace: dict[str, object] = {"paths": paths}
    exec(compile(block, "README.md", "exec"), namespace)
    prediction: Any = namespace["prediction"]
    (name,) = _slice_names(block)
    with Image.open(slices_cwd / name) as image:
        assert prediction.mask.shape == (image.height, image.width)  # at the slice's own size
    # The example holds organs; the demonstration weights find some, with areas in mm² from the name.
    found = [stats for stats in prediction.stats.values() if stats.pixels]
    assert found and all(stats.area_mm2 is not None for stats in found)


def test_volume_block_runs_on_a_dicom_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Volumes section's block, on a small phantom DICOM series at the name it reads."""
    from segapp.synthetic.volume import phantom_volume
    from segapp.synthetic.volume_files import write_dicom_series

    (block,) = [b for b in PYTHON_BLOCKS if _block_id(b) == "read_volume"]
    monkeypatch.chdir(tmp_path)
    phantom = phantom_volume(2, 5, 0, first=66, count=4)
    write_dicom_series(phantom, tmp_path / "dicom_series", orientation="rotated-180", reverse=True)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result: Any = namespace["result"]
    assert result.labels.shape == phantom.labels.shape
    assert set(result.organs) == {"stomach", "small_bowel", "large_bowel"}
    assert any(organ.volume_ml > 0 for organ in result.organs.values())  # the demonstration weights find organs


# Slow: a second process loading the B0 weights (about 20 s on 2 busy cores). The same /segment
# endpoint is covered in the fast run by tests/ui/test_app_api.py and tests/test_deploy.py.
@pytest.mark.slow
def test_gradio_client_block_runs_against_python_app_py(slices_cwd: Path, app_url: str, capsys) -> None:
    (block,) = [b for b in PYTHON_BLOCKS if "gradio_client" in b]
    assert README_URL in block
    exec(compile(block.replace(README_URL, app_url), "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(printed) >= 0  # the stomach's area in mm²: the file name gives the spacing


@pytest.mark.parametrize("module", MODULES)
def test_modules_the_readme_names_answer_help(module: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as stop:
        # The front modules are imported already (by other tests); running one as __main__ again is fine.
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stop.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out
