"""Redraw the README's page screenshots on the bundled weights, in headless Chromium.

    python scripts/screenshots.py            # assets/screenshot.png, volume-screenshot.png,
                                             # batch-screenshot.png and palette-screenshot.png

Starts ``app.py`` (bundled weights, CPU) on a free loopback port; the slice tab segments the first
bundled example, the volume tab the 144-slice phantom example series (the one the tab offers).
Needs Playwright and Chromium (``/usr/bin/chromium`` or $SEGAPP_CHROMIUM); nothing leaves the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segapp.bench.browser import CHROMIUM_ARGS, find_chromium, open_volume  # noqa: E402
from segapp.bench.measure import free_port  # noqa: E402
from segapp.bundled import EXAMPLES_DIR  # noqa: E402
from segapp.ui.volume import make_example_zip  # noqa: E402

VIEWPORT = {"width": 1280, "height": 1000}


def _wait_until_up(url: str, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not come up at {url}")


def _wait_for_meshes(page, seconds: float = 30) -> None:
    """Until the 3D view shows organ colours (the meshes load and draw after the planes)."""
    import io

    import numpy as np
    from PIL import Image

    canvas = page.locator("#vol-mesh canvas")
    canvas.scroll_into_view_if_needed()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rgb = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(np.int16)
        if np.count_nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 40) > 200:
            return
        time.sleep(0.5)


def _small_png(path: Path, colours: int = 192) -> None:
    """Re-save a screenshot with a palette of ``colours`` (docs PNGs stay well under 600 KB)."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colours, dither=Image.Dither.NONE).save(path, optimize=True)


def _batch_and_palette_shots(page) -> None:
    """The batch panel with every bundled example segmented, then the page in the classic scheme."""
    page.locator("#batch").get_by_text("Batch of slices").click()
    page.locator("#batch-upload input[type=file]").set_input_files([str(p) for p in sorted(EXAMPLES_DIR.glob("*.png"))])
    page.click("#batch-submit")
    page.locator("#batch-summary", has_text="slices segmented").wait_for()
    time.sleep(1.5)
    page.locator("#batch").screenshot(path=str(ROOT / "assets" / "batch-screenshot.png"))
    _small_png(ROOT / "assets" / "batch-screenshot.png")
    page.locator("#batch-gallery img").first.click()
    page.locator("#colours").get_by_text("Colours").first.click()
    page.locator("#colour-scheme").get_by_text("Classic").click()
    page.get_by_role("tab", name="Confidence").click()
    time.sleep(2.0)
    page.locator("#colours").screenshot(path=str(ROOT / "assets" / "palette-top.png"))
    page.locator("#main-row").screenshot(path=str(ROOT / "assets" / "palette-row.png"))
    from PIL import Image

    with Image.open(ROOT / "assets" / "palette-top.png") as top, Image.open(ROOT / "assets" / "palette-row.png") as row:
        sheet = Image.new("RGB", (max(top.width, row.width), top.height + row.height), "white")
        sheet.paste(top, (0, 0))
        sheet.paste(row, (0, top.height))
        sheet.save(ROOT / "assets" / "palette-screenshot.png")
    for part in ("palette-top.png", "palette-row.png"):
        (ROOT / "assets" / part).unlink()
    _small_png(ROOT / "assets" / "palette-screenshot.png")


def main() -> int:
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        print("Chromium not found", file=sys.stderr)
        return 1
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("SEGAPP_WEIGHTS", None)
        env.pop("SEGAPP_VOLUME_WEIGHTS", None)
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu"],
                                   cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(url, process)
            archive = make_example_zip(Path(scratch), count=144)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(120_000)
                page.goto(url)
                page.wait_for_selector("#submit")
                page.wait_for_function("document.querySelector('#app-header').innerText.includes('cpu')")
                page.locator("#upload input[type=file]").set_input_files(str(sorted(EXAMPLES_DIR.glob("*.png"))[0]))
                page.locator("#stats", has_text="Ready to segment").wait_for()
                page.click("#submit")
                page.locator("#stats .stats-table").wait_for()
                time.sleep(1.0)
                page.screenshot(path=str(ROOT / "assets" / "screenshot.png"), full_page=True)
                _batch_and_palette_shots(page)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(120_000)
                open_volume(page, url, archive)
                _wait_for_meshes(page)
                page.screenshot(path=str(ROOT / "assets" / "volume-screenshot.png"), full_page=True)
                _small_png(ROOT / "assets" / "volume-screenshot.png", colours=256)  # the 3D view's shading
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print("wrote assets/screenshot.png, volume-screenshot.png, batch-screenshot.png and palette-screenshot.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
