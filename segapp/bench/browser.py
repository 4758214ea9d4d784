"""The page in a headless Chromium: what a person at the screen waits for after pressing Submit.

Needs the ``playwright`` Python package and a Chromium binary (``apt-get install chromium``);
:func:`find_chromium` returns None where there is none, and the benchmark then skips this part.
The browser test (``tests/ui/test_browser.py``) launches Chromium the same way.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Headless in a container: no sandbox (no user namespaces), no GPU, no background requests.
# WebGL still works without a GPU: Chromium falls back to SwiftShader (ANGLE on Vulkan, on the CPU),
# so the volume tab's 3D view draws its meshes (tests/ui/test_volume_browser.py checks the pixels).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000
# Pause before each timed step: the browser finishes painting the previous one (on 2 cores its
# work would otherwise land in the next timing), as a person's click meets an idle page.
SETTLE_S = 0.5

# True once the overlay <img> differs from `src` and its file has arrived and decoded.
_NEW_OVERLAY_JS = (
    "src => { const img = document.querySelector('#overlay-view img');"
    " return img !== null && img.getAttribute('src') !== src && img.complete && img.naturalWidth > 0; }"
)


def find_chromium() -> str | None:
    """Path of a Chromium-like browser on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def page_available() -> str | None:
    """None when the browser part can run; otherwise why not (for the benchmark's report)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if find_chromium() is None:
        return "no Chromium on PATH (apt-get install chromium)"
    return None


def bench_page(
    url: str,
    images: Sequence[str | Path],
    repeats: int,
    baseline: Callable[[Path], Any] | None = None,
    browser: Any = None,
) -> dict[str, Any]:
    """Milliseconds from a click on Submit to the new overlay decoded in the page, median of ``repeats``.

    Each round uploads the next of ``images`` (untimed; the page shows its preview), then times
    one click: the request, the model, and the page receiving all its views (overlay, mask,
    confidence, statistics, downloads) until the overlay has decoded. Successive slices differ,
    so each overlay is a new file.

    Args:
        url: The running app's address.
        images: At least two different slice files.
        repeats: Timed rounds, after one untimed warm-up round.
        baseline: Also timed in every round, on the same slice, just before the click (for
            example ``Segmenter.predict``): load on a shared machine then hits both alike.
        browser: A Playwright ``Browser`` to open the page in; None launches Chromium.

    Returns:
        ``page_submit_ms`` and, with a baseline, ``baseline_ms`` (medians) and ``repeats``.

    Raises:
        RuntimeError: :func:`page_available` says the browser part cannot run.
        ValueError: Fewer than two images.
    """
    if len(images) < 2:
        raise ValueError("bench_page needs at least two different slices")
    if browser is not None:
        return _rounds(browser, url, [Path(i) for i in images], repeats, baseline)
    missing = page_available()
    if missing:
        raise RuntimeError(missing)
    from playwright.sync_api import sync_playwright  # a test dependency, checked above

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            return _rounds(launched, url, [Path(i) for i in images], repeats, baseline)
        finally:
            launched.close()


def _rounds(
    browser: Any, url: str, images: list[Path], repeats: int, baseline: Callable[[Path], Any] | None
) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#submit")
        times, base = [], []
        for index in range(repeats + 1):
            image = images[index % len(images)]
            overlay = page.locator("#overlay-view img")
            before = overlay.get_attribute("src") if overlay.count() else None
            if index:
                page.click("#clear")  # empties the upload field, whose file input then returns
            page.locator("#upload input[type=file]").set_input_files(str(image))
            page.locator("#stats", has_text="Ready to segment").wait_for()
            time.sleep(SETTLE_S)
            if baseline is not None:
                start = time.perf_counter()
                baseline(image)
                if index:
                    base.append((time.perf_counter() - start) * 1000)
                time.sleep(SETTLE_S)
            start = time.perf_counter()
            page.click("#submit")
            page.wait_for_function(_NEW_OVERLAY_JS, arg=before, polling=5)
            if index:  # the first round warms the page's code paths
                times.append((time.perf_counter() - start) * 1000)
    finally:
        page.close()
    result: dict[str, Any] = {"page_submit_ms": statistics.median(times), "repeats": repeats}
    if base:
        result["baseline_ms"] = statistics.median(base)
    return result


# ---------------------------------------------------------------------------
# The volume tab

# In the page: press `key` `count` times; for each press, the milliseconds until the planes show
# a new slice number and its axial image has decoded, plus one animation frame (it is painted).
# Presses are `gap` ms apart, as a person scrolling, so each step meets a page that has caught up.
_STEP_JS = """
async ({key, count, gap}) => {
  const views = () => document.querySelector('#vol-views .vol-views');
  const times = [];
  for (let n = 0; n < count; n++) {
    const before = views().dataset.slice;
    const start = performance.now();
    document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
    while (!views() || views().dataset.slice === before) {
      await new Promise(r => setTimeout(r, 1));
      if (performance.now() - start > 10000) throw new Error('the slice did not change');
    }
    const img = views().querySelector('.vol-axial img');
    await img.decode();
    await new Promise(r => requestAnimationFrame(() => r()));
    times.push(performance.now() - start);
    await new Promise(r => setTimeout(r, gap));
  }
  return times;
}
"""


def open_volume(page: Any, url: str, archive: str | Path) -> float:
    """Load the page, open the volume tab, upload ``archive`` and segment it.

    Returns:
        Milliseconds from pressing "Segment volume" to the planes of the result in the page
        (the upload itself is not counted: it depends on the network).
    """
    page.goto(url)
    page.get_by_role("tab", name="Volume").click()
    page.locator("#vol-upload input[type=file]").set_input_files(str(archive))
    page.locator("#vol-card", has_text="Ready").wait_for()
    start = time.perf_counter()
    page.click("#vol-submit")
    page.locator("#vol-views .vol-views[data-slices]").wait_for(timeout=600_000)
    return (time.perf_counter() - start) * 1000


def time_slice_steps(page: Any, key: str = "ArrowUp", count: int = 40, gap_ms: int = 150) -> list[float]:
    """Milliseconds per slice step by the keyboard, measured in the page (see ``_STEP_JS``)."""
    return [float(t) for t in page.evaluate(_STEP_JS, {"key": key, "count": count, "gap": gap_ms})]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear between ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bench_volume_page(url: str, archive: str | Path, *, steps: int = 60, browser: Any = None) -> dict[str, Any]:
    """Upload-to-result time of ``archive`` and the keyboard slice-step latency (p50, p95, max),
    in the volume tab of the page at ``url``; ``steps`` up then ``steps`` down from the middle."""
    if browser is None:
        from playwright.sync_api import sync_playwright  # a test dependency (see page_available)

        executable = find_chromium()
        if executable is None:
            raise RuntimeError("no Chromium on PATH")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                return bench_volume_page(url, archive, steps=steps, browser=chromium)
            finally:
                chromium.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.set_default_timeout(TIMEOUT_MS)
        result_ms = open_volume(page, url, archive)
        page.locator("#vol-slice input[type=number]").fill("1")
        page.locator("#vol-slice input[type=number]").press("Enter")
        page.wait_for_function("document.querySelector('#vol-views .vol-views').dataset.slice === '1'")
        time.sleep(SETTLE_S)
        times = time_slice_steps(page, "ArrowUp", steps) + time_slice_steps(page, "ArrowDown", steps)
    finally:
        page.close()
    return {"volume_result_ms": result_ms, "step_ms_p50": percentile(times, 50),
            "step_ms_p95": percentile(times, 95), "step_ms_max": max(times), "steps": len(times)}
