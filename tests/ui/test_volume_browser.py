"""The volume tab in Chromium (Playwright): upload a phantom DICOM zip, see progress and the card,
see the organs drawn in the 3D view, step through slices by keyboard and slider, toggle an organ,
download the DICOM-SEG, read it back.

Skipped when Playwright or Chromium is missing. Also checks that the page asks no other host.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from helpers import record_hosts, served_page
from PIL import Image

from segapp.bench.browser import open_volume, percentile, time_slice_steps

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 20_000
# Records every text the progress display over the planes shows (gr.Progress), as it changes:
# the run is over before a test could look, so the page keeps the log itself.
PROGRESS_LOG_JS = """
window.__progress = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('#vol-views .progress-level, #vol-views .progress-text')) {
    const text = el.innerText.trim();
    if (text && !window.__progress.includes(text)) window.__progress.push(text);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def page_url(tiny_segmenter):
    with served_page(tiny_segmenter, None) as url:
        yield url


def _coloured_pixels(png: bytes) -> int:
    """Pixels in organ colours, not the near-white background (clear_color 0.97, 0.98, 0.99) or
    the gray label drawn over the canvas: max - min channel above 40 of 255."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return int(np.count_nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 40))


def _slice(page) -> int:
    return int(page.locator("#vol-views .vol-views").get_attribute("data-slice"))


def test_volume_tab_upload_browse_toggle_download(browser, page_url: str, phantom_series, tmp_path) -> None:
    import pydicom

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    hosts = record_hosts(page)
    page.add_init_script(PROGRESS_LOG_JS)
    open_volume(page, page_url, phantom_series["zip"])
    card = page.locator("#vol-card").inner_text()
    for organ in ("Stomach", "Small bowel", "Large bowel"):
        assert organ in card
    assert "mL" in card and "Device cpu" in card and "6 slices" in card
    # The progress bar showed while the volume ran: its description and slices done of the total.
    shown = page.evaluate("window.__progress")
    assert any("Segmenting" in text for text in shown), shown
    assert any(re.search(r"\b[1-6]/6 slices", text) for text in shown), shown

    # The 3D view draws the organs (WebGL through SwiftShader in headless Chromium).
    page.locator("#vol-mesh canvas").scroll_into_view_if_needed()
    coloured = 0
    for _ in range(40):  # the meshes load and render a moment after the result
        coloured = _coloured_pixels(page.locator("#vol-mesh canvas").screenshot())
        if coloured > 200:
            break
        time.sleep(0.25)
    assert coloured > 200, f"the 3D view shows {coloured} organ-coloured pixels"

    # Keyboard: arrow and page keys move the slider and the shown slice (clamped at the ends).
    page.locator("#vol-views").click()
    start = _slice(page)
    page.keyboard.press("ArrowDown" if start > 1 else "ArrowUp")
    page.wait_for_function(f"document.querySelector('#vol-views .vol-views').dataset.slice !== '{start}'")
    page.keyboard.press("PageUp")
    page.wait_for_function("document.querySelector('#vol-views .vol-views').dataset.slice === '6'")
    assert page.locator("#vol-slice input[type=number]").input_value() == "6"
    # The slider: typing a number (a drag sends the same event).
    page.locator("#vol-slice input[type=number]").fill("2")
    page.locator("#vol-slice input[type=number]").press("Enter")
    page.wait_for_function("document.querySelector('#vol-views .vol-views').dataset.slice === '2'")
    steps = time_slice_steps(page, "ArrowUp", 3, gap_ms=50)
    assert len(steps) == 3 and _slice(page) == 5

    # An organ toggle redraws the planes without segmenting again.
    before = page.locator("#vol-views .vol-axial img").get_attribute("src")
    page.locator("#vol-class-toggles label", has_text="Stomach").click()
    page.wait_for_function(
        "src => document.querySelector('#vol-views .vol-axial img').getAttribute('src') !== src", arg=before)
    assert _slice(page) == 5

    # The DICOM-SEG downloads and reads back.
    with page.expect_download() as download:
        page.click("#vol-download-seg")
    saved = tmp_path / "seg.dcm"
    download.value.save_as(saved)
    assert pydicom.dcmread(saved).Modality == "SEG"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "volume-page.png"), full_page=True)
    page.close()
    # Offline: every request went to the app itself.
    assert hosts == {urlparse(page_url).netloc}, hosts
    assert percentile(steps, 50) > 0
