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
    from playwright.sync_api import sync_playwright

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
