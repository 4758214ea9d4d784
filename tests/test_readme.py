"""The documentation works as written: the Python code blocks of ``README.md`` and of every
``docs/**/*.md`` run against the bundled weights, wherever a block lives, and every
``python -m segapp.X`` those pages name is a module whose ``--help`` exits 0.

The blocks name a competition-style slice (``case123_day20_slice_0067_266_266_1.50_1.50.png``):
a bundled example is copied to that name in a fresh working directory. The ``gradio_client``
blocks are pointed at ``python app.py`` started on a free port (slow: ``SEGAPP_SLOW=1``).
Blocks fenced as ```` ```py ```` are run elsewhere (the PACS one against Orthanc, in
``tests/test_dicomweb.py``); this file checks that there are no others.
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
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port
from PIL import Image

from segapp.bundled import EXAMPLES_DIR
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README_URL = "http://127.0.0.1:7860/"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a documentation page."""

    page: str  # the page, relative to the repository root
    number: int  # 1, 2, ... among the page's blocks of the same fence
    code: str

    @property
    def kind(self) -> str:
        """What the block shows, which decides how it is run."""
        if "gradio_client" in self.code:
            for api in ("volume", "batch"):
                if f"/segment_{api}" in self.code:
                    return f"gradio_client_{api}"
            return "gradio_client"
        if "segment_series" in self.code:
            return "segment_series"
        return self.code.splitlines()[0].split()[-1]

    @property
    def id(self) -> str:
        return f"{self.page}#{self.number}-{self.kind}"


def _blocks(fence: str) -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        codes = re.findall(rf"^```{fence}\n(.*?)^```", text, flags=re.M | re.S)
        found += [Block(page.relative_to(ROOT).as_posix(), n, code) for n, code in enumerate(codes, 1)]
    return found


PYTHON_BLOCKS = _blocks("python")
PY_BLOCKS = _blocks("py")  # run by other test files
MODULES = sorted({m for page in PAGES for m in re.findall(r"python -m (segapp(?:\.\w+)+)", page.read_text("utf-8"))})


def _of_kind(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in PYTHON_BLOCKS if b.kind == kind]


def _slice_names(code: str) -> list[str]:
    """The ``.png`` file names the block passes as string literals."""
    return sorted(set(re.findall(r"""["']([\w.-]+\.png)["']""", code)))


def _example_for(name: str) -> Path:
    """A bundled example of the size the name states (``..._W_H_...``), else the first one."""
    examples = sorted(EXAMPLES_DIR.glob("*.png"))
    size = re.search(r"_(\d+_\d+)_\d+\.\d+_\d+\.\d+\.png$", name)
    same = [p for p in examples if size and f"_{size.group(1)}_" in p.name]
    return (same or examples)[0]


def _run_block(block: Block, namespace: dict[str, object], url: str | None = None) -> dict[str, object]:
    code = block.code if url is None else block.code.replace(README_URL, url)
    exec(compile(code, block.page, "exec"), namespace)
    return namespace


@pytest.fixture
def slices_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the repository, holding the slices every block names."""
    monkeypatch.chdir(tmp_path)
    for block in PYTHON_BLOCKS:
        for name in _slice_names(block.code):
            shutil.copyfile(_example_for(name), tmp_path / name)
    return tmp_path


def _dicom_series(folder: Path) -> Any:
    """A small phantom DICOM series (4 slices) written to ``folder``; returns the phantom."""
    phantom = phantom_volume(2, 5, 0, first=66, count=4)
    write_dicom_series(phantom, folder, orientation="rotated-180", reverse=True)
    return phantom


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


def test_every_block_is_one_this_file_runs() -> None:
    # A renamed fence, a dropped block or a new kind of block would otherwise pass unnoticed.
    runs = {"gradio_client", "gradio_client_volume", "gradio_client_batch", "Segmenter", "read_volume"}
    assert {b.kind for b in PYTHON_BLOCKS} == runs, [b.id for b in PYTHON_BLOCKS]
    assert [b.id for b in PY_BLOCKS] == ["docs/pacs.md#1-segment_series"]  # tests/test_dicomweb.py runs it
    # The newcomer's example stays on the first page.
    assert any(b.page == "README.md" and b.kind == "Segmenter" for b in PYTHON_BLOCKS)
    assert {"segapp.predict", "segapp.train", "segapp.evaluate", "segapp.dicomweb"} <= set(MODULES)


def test_pages_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    for page in PAGES[1:]:
        name = page.relative_to(ROOT).as_posix()
        if page.parent.name == "experiments" and page.name != "README.md":  # the experiments' index links them
            assert page.name in (page.parent / "README.md").read_text(encoding="utf-8"), name
            assert "docs/experiments/README.md" in linked
        else:
            assert name in linked, f"{name} is not linked from README.md"
    for link in linked:
        assert (ROOT / link).is_file(), f"README.md links to a missing {link}"


@pytest.mark.parametrize("block", _of_kind("Segmenter"))
def test_python_block_runs_on_the_bundled_weights(block: Block, slices_cwd: Path) -> None:
    # The block's last line is a call on ``paths``, the reader's own list of slices.
    paths = sorted(str(p) for p in slices_cwd.glob("*.png"))
    prediction: Any = _run_block(block, {"paths": paths})["prediction"]
    (name,) = _slice_names(block.code)
    with Image.open(slices_cwd / name) as image:
        assert prediction.mask.shape == (image.height, image.width)  # at the slice's own size
    # The example holds organs; the demonstration weights find some, with areas in mm² from the name.
    found = [stats for stats in prediction.stats.values() if stats.pixels]
    assert found and all(stats.area_mm2 is not None for stats in found)


@pytest.mark.parametrize("block", _of_kind("read_volume"))
def test_volume_block_runs_on_a_dicom_series(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The volume block, on a small phantom DICOM series at the name it reads."""
    monkeypatch.chdir(tmp_path)
    phantom = _dicom_series(tmp_path / "dicom_series")
    result: Any = _run_block(block, {})["result"]
    assert result.labels.shape == phantom.labels.shape
    assert set(result.organs) == {"stomach", "small_bowel", "large_bowel"}
    assert any(organ.volume_ml > 0 for organ in result.organs.values())  # the demonstration weights find organs


# Slow: a second process loading the B0 weights (about 20 s on 2 busy cores). The same endpoints
# are covered in the fast run by tests/ui/test_app_api.py and tests/test_deploy.py.
@pytest.mark.slow
@pytest.mark.parametrize("block", _of_kind("gradio_client"))
def test_gradio_client_block_runs_against_python_app_py(block: Block, slices_cwd: Path, app_url: str,
                                                        capsys) -> None:
    assert README_URL in block.code
    _run_block(block, {}, url=app_url)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(printed) >= 0  # the stomach's area in mm²: the file name gives the spacing


@pytest.mark.slow
@pytest.mark.parametrize("block", _of_kind("gradio_client_volume"))
def test_gradio_client_volume_block_runs_against_python_app_py(block: Block, tmp_path: Path, app_url: str,
                                                               monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert README_URL in block.code
    monkeypatch.chdir(tmp_path)
    _dicom_series(tmp_path / "series")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:  # the name the block sends
        for path in sorted((tmp_path / "series").iterdir()):
            archive.write(path, arcname=f"series/{path.name}")
    _run_block(block, {}, url=app_url)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(printed.split()[0]) >= 0  # the stomach's volume in mL, then the spacing


@pytest.mark.slow
@pytest.mark.parametrize("block", _of_kind("gradio_client_batch"))
def test_gradio_client_batch_block_runs_against_python_app_py(block: Block, slices_cwd: Path, app_url: str,
                                                              capsys) -> None:
    assert README_URL in block.code
    namespace = _run_block(block, {}, url=app_url)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert int(printed) == len(namespace["slices"])  # one CSV row per slice sent
    with zipfile.ZipFile(str(namespace["archive"])) as archive:
        names = archive.namelist()
    assert "stats.csv" in names and sum(name.startswith("masks/") for name in names) == len(namespace["slices"])


@pytest.mark.parametrize("module", MODULES)
def test_modules_the_docs_name_answer_help(module: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as stop:
        # The front modules are imported already (by other tests); running one as __main__ again is fine.
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stop.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out
