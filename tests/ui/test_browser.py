"""The page in a real browser (Chromium through Playwright): upload, segment, example, error, and
the volume tab; no request leaves the machine.

Skipped when Playwright or Chromium is missing. Writes ``test-artifacts/app-page.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers import record_hosts, served_page
from PIL import Image

from segapp.synthetic import generate_slice

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An upload (16-bit, competition name), two examples, and a file that is not an image."""
    folder = tmp_path_factory.mktemp("browser")
    examples = folder / "examples"
    examples.mkdir()
    paths = {}
    for key, seed, where in (
        ("upload", 21, folder),
        ("example_a", 22, examples),
        ("example_b", 23, examples),
    ):
        phantom = generate_slice(seed, empty=False)
        paths[key] = where / phantom.file_name
        Image.fromarray(phantom.image16).save(paths[key])
    paths["examples"] = examples
    paths["bad"] = folder / "report.png"
    paths["bad"].write_text("Discharge letter, not a scan.\n" * 10)
    return paths


@pytest.fixture(scope="module")
def page_url(tiny_segmenter, slices):
    with served_page(tiny_segmenter, slices["examples"]) as url:
        yield url


def _stats_text(page) -> str:
    return page.locator("#stats").inner_text()


def test_upload_segment_example_and_error(browser, page_url: str, slices, phantom_series) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    hosts = record_hosts(page)
    # Offline means complete, too: no request of the page may fail or be refused (the page
    # itself aborts its finished event streams: ERR_ABORTED is not a failure).
    failed: list[str] = []
    page.on(
        "requestfailed",
        lambda request: (
            "ERR_ABORTED" not in (request.failure or "")
            and failed.append(f"{request.url} ({request.failure})")
        ),
    )
    page.on(
        "response",
        lambda response: response.status >= 400 and failed.append(f"{response.url} {response.status}"),
    )
    page.goto(page_url)
    page.wait_for_selector("#submit")
    assert "Medical Image Segmentation System" in page.locator("#app-header").inner_text()
    page.wait_for_function("document.querySelector('#app-header').innerText.includes('cpu')")
    # The theme's font came from the app itself (no font CDN), so the page looks the same offline.
    page.wait_for_function("document.fonts.status === 'loaded'")
    assert page.evaluate(
        "[...document.fonts].some(f => f.family.includes('IBM Plex Sans') && f.status === 'loaded')"
    )

    # Upload a 16-bit slice: the preview reports it as read, then Submit segments it.
    page.locator("#upload input[type=file]").set_input_files(str(slices["upload"]))
    page.locator("#stats", has_text="Ready to segment").wait_for()
    assert "16-bit" in _stats_text(page)
    page.click("#submit")
    page.locator("#stats .stats-table").wait_for()
    stats = _stats_text(page)
    for organ in ("Stomach", "Small bowel", "Large bowel"):
        assert organ in stats
    assert "mm²" in stats and "Device cpu" in stats
    overlay = page.locator("#overlay-view img")
    overlay.wait_for()
    # The <img> is in the page before its file has arrived: wait until it has decoded (fails
    # after the timeout if it never does), rather than asserting at once (a CI flake).
    page.wait_for_function(
        "() => { const img = document.querySelector('#overlay-view img');"
        " return img !== null && img.complete && img.naturalWidth > 0; }"
    )
    assert page.locator("#download-mask").is_enabled()

    # The opacity slider re-renders in place (no new inference): the overlay image changes.
    before = overlay.get_attribute("src")
    page.locator("#opacity input[type=number]").fill("0.9")
    page.locator("#opacity input[type=number]").press("Enter")
    page.wait_for_function(
        "src => document.querySelector('#overlay-view img').getAttribute('src') !== src", arg=before
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-page.png"), full_page=True)

    # Click the second example (examples are listed by name): it fills the upload field and is segmented.
    second = sorted([slices["example_a"], slices["example_b"]])[1]
    page.locator("#examples .gallery-item").nth(1).click()
    page.locator("#upload", has_text=second.name[:12]).wait_for()
    page.locator("#stats .stats-table").wait_for()
    assert "1.50" in _stats_text(page) or "1.63" in _stats_text(page)

    # A file that is not an image: a readable message in the page, and the page keeps working.
    page.click("#clear")
    page.locator("#stats", has_text="Upload an MRI slice").wait_for()
    page.locator("#upload input[type=file]").set_input_files(str(slices["bad"]))
    toast = page.locator("[data-testid=toast-body]", has_text="not an image")
    toast.first.wait_for()
    assert "Upload a PNG" in toast.first.inner_text()

    page.click("#clear")
    page.locator("#upload input[type=file]").set_input_files(str(slices["upload"]))
    page.locator("#stats", has_text="Ready to segment").wait_for()
    page.click("#submit")
    page.locator("#stats .stats-table").wait_for()

    # The volume tab, offline too: a phantom DICOM zip segmented (the 3D viewer's code and
    # meshes load), one slice step by the keyboard.
    page.get_by_role("tab", name="Volume").click()
    page.locator("#vol-upload input[type=file]").set_input_files(str(phantom_series["zip"]))
    page.locator("#vol-card", has_text="Ready").wait_for()
    page.click("#vol-submit")
    page.locator("#vol-card", has_text="Volume results").wait_for()
    page.locator("#vol-mesh canvas").wait_for()
    shown = page.locator("#vol-views .vol-views").get_attribute("data-slice")
    page.locator("#vol-views").click()
    page.keyboard.press("ArrowDown" if shown != "1" else "ArrowUp")
    page.wait_for_function(
        "s => document.querySelector('#vol-views .vol-views').dataset.slice !== s", arg=shown
    )
    # The 3D viewer loads its code in many parts: wait until the page has fetched nothing new for 1 s
    # (Gradio's event stream stays open, so the page is never "network idle").
    loaded = -1
    while loaded != (loaded := page.evaluate("performance.getEntriesByType('resource').length")):
        time.sleep(1.0)

    # Everything the page loaded came from the app itself: no CDN, fonts or analytics hosts.
    app_host = urlparse(page_url).netloc
    assert hosts == {app_host}, f"requests left the app: {sorted(hosts - {app_host})}"
    assert not failed, f"requests of the page failed: {failed}"
    page.close()


def test_page_benchmark_times_submit_to_overlay(browser, page_url: str, slices, tiny_segmenter) -> None:
    """Part 3b of segapp.bench: each round uploads the next slice and times one Submit."""
    from segapp.bench.browser import bench_page, page_available

    assert page_available() is None
    calls: list[Path] = []
    images = [slices["upload"], slices["example_a"]]
    result = bench_page(page_url, images, repeats=2, baseline=calls.append, browser=browser)
    assert result["repeats"] == 2 and result["page_submit_ms"] > 0 and result["baseline_ms"] >= 0
    assert calls == [images[0], images[1], images[0]]  # warm-up round, then two timed rounds
    with pytest.raises(ValueError, match="two"):
        bench_page(page_url, images[:1], repeats=1)
