"""The batch of slices and the colour schemes in a real browser (Chromium through Playwright).

Skipped when Playwright or Chromium is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import served_page
from PIL import Image

from segapp.labels import scheme
from segapp.synthetic import generate_slice

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("batch-browser")
    paths = []
    for index, seed in enumerate((41, 42, 43)):
        path = folder / f"Doe_Jane_{index}.png"
        Image.fromarray(generate_slice(seed, empty=False).image16).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def page_url(tiny_segmenter):
    with served_page(tiny_segmenter, None) as url:
        yield url


def _swatch_colour(page, organ: str) -> str:
    return page.evaluate(
        f"getComputedStyle(document.querySelectorAll('#legend .swatch')[{organ}]).backgroundColor")


def test_a_batch_fills_the_gallery_and_a_click_opens_the_full_view(browser, page_url: str, batch_files) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(page_url)
    page.locator("#batch").get_by_text("Batch of slices").click()
    page.locator("#batch-upload input[type=file]").set_input_files([str(p) for p in batch_files])
    page.click("#batch-submit")
    page.locator("#batch-summary", has_text="3 of 3 slices segmented").wait_for()
    thumbnails = page.locator("#batch-gallery img")
    assert thumbnails.count() == 3
    table = page.locator("#batch-table").inner_text()
    # The results name slices neutrally (the upload field lists the person's own files, as any upload).
    results = table + page.locator("#batch-gallery").inner_html() + page.locator("#batch-summary").inner_text()
    assert "slice-001.png" in table and "Doe_Jane" not in results
    assert page.locator("#batch-download-zip").is_enabled() and page.locator("#batch-download-csv").is_enabled()
    thumbnails.nth(1).click()
    page.locator("#stats .stats-table").wait_for()
    assert "Stomach" in page.locator("#stats").inner_text()
    sync_api.expect(page.locator("#download-mask")).to_be_enabled()  # enabled by a follow-up event
    # A new colour scheme redraws the shown overlay (no new inference).
    overlay = page.locator("#overlay-view img")
    overlay.wait_for()
    before = overlay.get_attribute("src")
    page.locator("#colours").get_by_text("Colours").first.click()
    page.locator("#colour-scheme").get_by_text("Classic").click()
    page.wait_for_function(
        "(before) => { const img = document.querySelector('#overlay-view img'); return img && img.src !== before; }",
        arg=before)
    page.close()


def test_the_colour_scheme_recolours_the_legend_and_is_remembered(browser, page_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(page_url)
    page.wait_for_selector("#legend .swatch")
    assert _swatch_colour(page, "1") == "rgb(230, 159, 0)"  # Okabe-Ito orange: the label table's
    page.locator("#colours").get_by_text("Colours").first.click()
    stored = page.evaluate("localStorage.getItem('segapp-colours')")
    page.locator("#colour-scheme").get_by_text("Classic").click()
    red = scheme("classic").colors[1]
    page.wait_for_function(
        f"getComputedStyle(document.querySelectorAll('#legend .swatch')[1]).backgroundColor === 'rgb{red}'")
    assert _swatch_colour(page, "1") == f"rgb({red[0]}, {red[1]}, {red[2]})"
    # Remembered in the browser's local storage (nothing on the server): a reload keeps it.
    # gr.BrowserState keeps it encrypted: wait for the stored value to change.
    page.wait_for_function("(before) => localStorage.getItem('segapp-colours') !== before", arg=stored)
    page.wait_for_timeout(1000)  # the page's own load-time store may have been the change seen
    page.reload()
    page.wait_for_selector("#legend .swatch")
    page.wait_for_function(
        f"getComputedStyle(document.querySelectorAll('#legend .swatch')[1]).backgroundColor === "
        f"'rgb({red[0]}, {red[1]}, {red[2]})'")
    context.close()
