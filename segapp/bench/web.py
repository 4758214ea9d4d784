"""The web path: the app's ``/segment`` request against ``predict`` alone, the page in Chromium,
and the app's start-up (parts 3 and 5 of ``python -m segapp.bench``).

Gradio, ``gradio_client`` and httpx are imported only inside these functions: the benchmark's
other parts run where they are not installed (the GPU machine of ``scripts/gpu_session.sh``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segapp.bench.browser import bench_page, bench_volume_page, page_available
from segapp.bench.measure import concurrent_rate, free_port, interleaved_ms, phantom_slices
from segapp.io.image import save_png

if TYPE_CHECKING:
    import gradio as gr

    from segapp.inference.segmenter import Segmenter

# The start-up part times the repository's ``python app.py``; an installed wheel has no app.py
# (the weights and examples are package data, but the Spaces entry point is not), so it is skipped.
APP = Path(__file__).resolve().parents[2] / "app.py"


def bench_web(segmenter: Segmenter, slices: list[np.ndarray], repeats: int, concurrent: int = 8,
              volume_slices: int = 144) -> dict[str, Any]:
    """One ``/segment`` request against ``predict`` alone, through the plain HTTP API
    (:mod:`segapp.rest_client`) and through ``gradio_client``, each next to a no-op endpoint's
    floor; then ``concurrent`` clients of each kind at once, and the page in Chromium where it can run.

    Returns:
        Medians in ms (``predict_ms``, ``http_request_ms``, ``http_echo_ms``, ``web_request_ms``,
        ``gradio_echo_ms``), overheads as shares of ``predict_ms``, requests/s with ``concurrent``
        clients, ``page`` (:func:`segapp.bench.browser.bench_page` plus ``overhead``, or None),
        ``volume_page`` (:func:`segapp.bench.browser.bench_volume_page` on the volume tab's example
        of ``volume_slices`` slices, or None) and ``page_skipped`` (why the page was not timed, or None).
    """
    # The web stack (Gradio, its client, the page) loads only when the web part runs, so the other
    # parts and --help do without it; gradio_client is a test dependency, not a runtime one.
    import httpx
    from gradio_client import Client, handle_file  # type: ignore[import-untyped]  # ships no type hints

    from segapp import rest_client
    from segapp.ui import build_demo, launch_options

    folder = Path(tempfile.mkdtemp(prefix="segapp-bench-web-"))
    files = []
    for index, gray in enumerate(slices[: 2 if repeats <= 3 else 4]):
        path = folder / f"case1_day1_slice_{index:04d}_{gray.shape[1]}_{gray.shape[0]}_1.50_1.50.png"
        save_png(gray, path)
        files.append(path)
    with contextlib.ExitStack() as closing:  # on leaving: the HTTP clients, then both apps
        demo = build_demo(segmenter, examples_dir=None)
        _, url, _ = demo.launch(**launch_options(port=free_port()), prevent_thread_lock=True, quiet=True)
        closing.callback(demo.close)
        floor_demo, floor_url = _echo_app()
        closing.callback(floor_demo.close)
        client, floor = Client(url, verbose=False), Client(floor_url, verbose=False)
        http = closing.enter_context(httpx.Client(base_url=url, timeout=60))
        floor_http = closing.enter_context(httpx.Client(base_url=floor_url, timeout=60))

        def requests(path: Path) -> dict[str, Callable[[], Any]]:
            return {
                "client": lambda: client.predict(handle_file(str(path)), api_name="/segment"),
                "http": lambda: rest_client.segment(http, path),
                "predict": lambda: segmenter.predict(path),
                # What any Gradio endpoint costs: upload, queue, a file back.
                "client_echo": lambda: floor.predict(handle_file(str(path)), api_name="/echo"),
                "http_echo": lambda: rest_client.download(
                    floor_http, rest_client.call_with_file(floor_http, "echo", path)[0]
                ),
            }

        timings: dict[str, list[float]] = {}
        for path in files:
            for name, value in interleaved_ms(requests(path), repeats, lambda: None).items():
                timings.setdefault(name, []).append(value)
        ms = {name: statistics.median(values) for name, values in timings.items()}

        page_skipped = page_available()
        page = None if page_skipped else bench_page(url, files, repeats, baseline=segmenter.predict)
        volume_page = None
        if not page_skipped:
            from segapp.ui.volume import make_example_zip  # the page's own example (see above)

            volume_page = bench_volume_page(url, make_example_zip(folder, count=volume_slices),
                                            steps=10 if repeats <= 3 else 60)
        clients = [Client(url, verbose=False) for _ in range(concurrent)]
        https = [closing.enter_context(httpx.Client(base_url=url, timeout=120)) for _ in range(concurrent)]

        def nth(client: int, index: int) -> Path:
            return files[(client + index) % len(files)]

        client_rate = concurrent_rate(
            lambda i, r: clients[i].predict(handle_file(str(nth(i, r))), api_name="/segment"), concurrent, repeats
        )
        http_rate = concurrent_rate(lambda i, r: rest_client.segment(https[i], nth(i, r)), concurrent, repeats)
    predict_ms = ms["predict"]
    return {"predict_ms": predict_ms,
            "http_request_ms": ms["http"], "http_overhead": ms["http"] / predict_ms - 1,
            "http_echo_ms": ms["http_echo"],
            "web_request_ms": ms["client"], "web_overhead": ms["client"] / predict_ms - 1,
            "gradio_echo_ms": ms["client_echo"],
            "overhead_beyond_echo": (ms["client"] - ms["client_echo"]) / predict_ms - 1,
            f"http_{concurrent}_clients_requests_per_s": http_rate,
            f"web_{concurrent}_clients_requests_per_s": client_rate,
            # The page in Chromium: Submit to the overlay decoded, vs predict just before each click.
            "page": None if page is None else {**page, "overhead": page["page_submit_ms"] / page["baseline_ms"] - 1},
            "volume_page": volume_page, "page_skipped": page_skipped}


def _echo_app() -> tuple[gr.Blocks, str]:
    """A Gradio app whose endpoint takes a file and returns it: the framework's own floor."""
    import gradio as gr  # the web part only (see bench_web)

    with gr.Blocks() as demo:
        source, target = gr.File(), gr.File()
        gr.Button().click(lambda path: path, inputs=source, outputs=target, api_name="echo")
    demo.queue()
    _, url, _ = demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return demo, url


def bench_startup(weights: str, device: str, timeout: float = 120) -> dict[str, float]:
    """Seconds from launching ``python app.py`` to its first served ``/segment`` answer.

    Raises:
        TimeoutError: Nothing served within ``timeout`` seconds.
        RuntimeError: The app exited first (its last stderr lines in the message).
    """
    # A test dependency, loaded only for this part.
    from gradio_client import Client, handle_file  # type: ignore[import-untyped]  # ships no type hints

    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="segapp-bench-start-"))
    path = folder / "slice_0001_266_266_1.50_1.50.png"
    save_png(phantom_slices(1)[0], path)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(APP), "--weights", weights, "--device", device, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    try:
        while True:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"app did not serve within {timeout} s")
            if process.poll() is not None:
                _, stderr = process.communicate()
                raise RuntimeError(f"app exited: {stderr.decode()[-2000:]}")
            try:
                Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(path)), api_name="/segment")
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.25)
        return {"startup_to_first_prediction_s": time.perf_counter() - start}
    finally:
        process.terminate()
        process.wait(timeout=30)
