"""Load, overload and hostile-input test of the app's ``/segment`` API, over loopback only.

``python scripts/load_test.py [--weights segapp/bundled/model [--spawn] | --url http://127.0.0.1:PORT]``

Phases (each bounded in requests; the load phase also by ``--time-limit-s``, every request by
a 120 s timeout):

1. reference: every input once, one request at a time: the single-threaded masks;
2. load: ``--clients`` concurrent clients (own ``gradio_client.Client`` each) send ``--requests``
   requests each, cycling through mixed valid slices (8-bit RGB PNG examples, 16-bit PNG,
   16-bit TIFF, JPEG; four image sizes); requests/s, latency percentiles, errors, and whether
   every mask equals the reference mask of its input byte for byte;
3. overload: bursts of simultaneous requests well beyond the bounded queue; counts the clear
   "queue is full, try again" answers, and the resident memory before and after each burst;
4. corpus (``--corpus-rounds N``): the hostile corpus of ``tests/hostile_corpus.py`` N times:
   every file must get its expected result or a clear refusal; resident-memory growth;
5. soak (``--soak-s S``, opt-in): steady load for S seconds, resident memory sampled.

Where the server runs: by default in this process on a free loopback port (the resident
memory measured is then the server's plus the clients'); with ``--spawn`` as
``python app.py --weights W`` in a child process, whose memory is measured alone; with
``--url`` an app already running on this machine (``--server-pid`` to measure its memory).
Prints a table and the figures as JSON (also written to ``--json``). Exit status 1 when any
request got an answer other than its result or "busy", or any mask differed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import html
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # segapp from this checkout; the corpus from tests/

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from segapp import rest_client  # noqa: E402  (after the path set-up above)
from segapp.bench.measure import free_port  # noqa: E402
from segapp.bundled import EXAMPLES_DIR, MODEL_DIR  # noqa: E402
from segapp.rest_client import file_payload  # noqa: E402

BUSY = "busy"  # outcome of a request the bounded queue turned away
REQUEST_TIMEOUT_S = 120.0  # one request; a hang beyond this is counted as an error


# ---------------------------------------------------------------------------- small helpers


def rss_mib(pid: int | None = None) -> float | None:
    """Resident memory of a process (this one by default) in MiB; None where /proc is missing."""
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def check_loopback(url: str) -> str:
    """``url`` normalised to end in ``/``.

    Raises:
        ValueError: Not http(s), or the host is not a loopback address (this tool never
            loads another machine).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme not in ("http", "https") or not loopback:
        raise ValueError(f"{url}: only loopback URLs (http://127.0.0.1:PORT/) are allowed")
    return url if url.endswith("/") else url + "/"


def percentiles(values_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of latencies in ms (None when there are none)."""
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    data = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(data.max())}


class RssSampler:
    """Samples resident memory every ``interval_s`` in a background thread while active."""

    def __init__(self, pid: int | None = None, interval_s: float = 0.5) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        start = time.perf_counter()

        def run() -> None:
            while not self._stop.is_set():
                value = rss_mib(self.pid)
                if value is not None:
                    self.samples.append((time.perf_counter() - start, value))
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak(self) -> float | None:
        return max((v for _, v in self.samples), default=None)


# ---------------------------------------------------------------------------- server and inputs


@contextlib.contextmanager
def serve(segmenter: Any, *, port: int | None = None) -> Iterator[str]:
    """The app's page around ``segmenter`` (a Segmenter or a callable returning one), launched
    in this process on 127.0.0.1 with the production launch settings; yields its URL."""
    from segapp.ui import build_demo, launch_options

    demo = build_demo(segmenter, examples_dir=None)
    _, url, _ = demo.launch(**launch_options(port=port or free_port()), prevent_thread_lock=True, quiet=True)
    try:
        yield check_loopback(url)
    finally:
        demo.close()


@contextlib.contextmanager
def spawn(
    weights: str, *, device: str = "cpu", startup_timeout_s: float = 180.0
) -> Iterator[tuple[str, int]]:
    """``python app.py --weights W`` in its own process on a free loopback port; yields (URL, pid).

    Raises:
        RuntimeError: The app exited or did not answer within ``startup_timeout_s`` (its
            stderr is in the message).
    """
    import subprocess

    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "app.py"),
        "--weights",
        weights,
        "--device",
        device,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _wait_until_serving(process, port, log, startup_timeout_s), process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_serving(process: Any, port: int, log: Any, timeout_s: float) -> str:
    """The app's URL once it answers; RuntimeError with its output if it exits or times out."""
    import httpx

    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"app.py did not start: {log.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def make_inputs(folder: str | os.PathLike[str], *, phantoms: int = 4, seed: int = 0) -> list[Path]:
    """Mixed valid slices in ``folder``: the bundled examples (8-bit RGB PNG, three sizes) and
    phantom slices as 16-bit PNG, 16-bit TIFF and 8-bit JPEG (a fourth size)."""
    from PIL import Image

    from segapp.synthetic import generate_slice

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for example in sorted(EXAMPLES_DIR.glob("*.png")):
        paths.append(Path(shutil.copy(example, folder / example.name)))
    kinds = ("png16", "tiff16", "jpeg8", "png16")
    for i in range(phantoms):
        phantom = generate_slice(seed + i, empty=False, size=(234, 234) if i % 2 else None)
        kind = kinds[i % len(kinds)]
        stem = phantom.file_name.removesuffix(".png")
        if kind == "png16":
            path = folder / f"{stem}.png"
            Image.fromarray(phantom.image16).save(path)
        elif kind == "tiff16":
            path = folder / f"{stem}.tif"
            Image.fromarray(phantom.image16).save(path)
        else:
            path = folder / f"{stem}.jpg"
            Image.fromarray(phantom.image8).save(path, quality=90)
        paths.append(path)
    return paths


def new_client(url: str, downloads: Path) -> Any:
    """A gradio_client Client of its own (its own session), quiet, downloading into ``downloads``.

    Its HTTP timeout is a browser's patience (``REQUEST_TIMEOUT_S``), not httpx's 5 s default:
    under overload an upload may wait its turn, and the server's answer is what is measured.
    """
    import gradio_client

    return gradio_client.Client(
        url, verbose=False, download_files=str(downloads), httpx_kwargs={"timeout": REQUEST_TIMEOUT_S}
    )


def read_mask(path: str) -> np.ndarray:
    """The class-id mask PNG the API returned, as an (H, W) uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image)


def segment(client: Any, payload: Any, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[np.ndarray, dict]:
    """One ``/segment`` call: (mask, statistics). Raises what the client raises; TimeoutError
    after ``timeout_s``."""
    job = client.submit(payload, api_name="/segment")
    result = job.result(timeout=timeout_s)
    return read_mask(result[0]), result[1]


def classify_error(exc: BaseException) -> str:
    """A short label for a failed request: ``busy``, ``app-error: <message>``, ``timeout``, ..."""
    name = type(exc).__name__
    if name == "QueueError" or "queue is full" in str(exc).lower():
        return BUSY
    if name == "AppError":
        return f"app-error: {html.unescape(str(exc))[:160]}"
    if isinstance(exc, TimeoutError) or name == "TimeoutError":
        return "timeout"
    return f"{name}: {str(exc)[:160]}"


# ---------------------------------------------------------------------------- phases


@dataclass
class Phase:
    """Figures of one phase."""

    name: str
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    wall_s: float = 0.0
    requests_per_s: float = 0.0
    latency: dict[str, float | None] = field(default_factory=dict)
    rss_mib: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def reference_masks(
    url: str, inputs: Sequence[Path], downloads: Path
) -> tuple[dict[Path, np.ndarray], Phase]:
    """Each input once, sequentially, from one client: the single-threaded masks."""
    import gradio_client

    client = new_client(url, downloads)
    masks: dict[Path, np.ndarray] = {}
    latencies = []
    start = time.perf_counter()
    for path in inputs:
        t0 = time.perf_counter()
        masks[path], _ = segment(client, gradio_client.handle_file(str(path)))
        latencies.append((time.perf_counter() - t0) * 1000)
    phase = Phase("reference (1 client)", requests=len(inputs), ok=len(inputs))
    phase.wall_s = time.perf_counter() - start
    phase.requests_per_s = len(inputs) / phase.wall_s
    phase.latency = percentiles(latencies)
    return masks, phase


def run_load(
    url: str,
    inputs: Sequence[Path],
    reference: dict[Path, np.ndarray],
    downloads: Path,
    *,
    clients: int = 32,
    requests: int = 20,
    duration_s: float | None = None,
    time_limit_s: float = 600.0,
    rss_pid: int | None = None,
    name: str | None = None,
) -> Phase:
    """``clients`` concurrent clients, ``requests`` each (or until ``duration_s`` has passed),
    cycling through ``inputs``; every mask is compared with ``reference``."""
    import gradio_client

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    counts = {"requests": 0, "ok": 0, "mismatches": 0}
    start = time.perf_counter()
    deadline = start + (duration_s if duration_s is not None else time_limit_s)
    barrier = threading.Barrier(clients)

    def user(index: int) -> None:
        client = new_client(url, downloads)
        barrier.wait()
        j = 0
        while (duration_s is not None or j < requests) and time.perf_counter() < deadline:
            path = inputs[(index + j) % len(inputs)]
            j += 1
            t0 = time.perf_counter()
            try:
                mask, _ = segment(client, gradio_client.handle_file(str(path)))
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
                with lock:
                    counts["requests"] += 1
                    errors[classify_error(exc)] += 1
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                counts["requests"] += 1
                counts["ok"] += 1
                latencies.append(elapsed)
                if not np.array_equal(mask, reference[path]):
                    counts["mismatches"] += 1

    with RssSampler(rss_pid, interval_s=1.0) as sampler, ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, range(clients)))
    wall = time.perf_counter() - start
    label = name or (
        f"load ({clients} clients x {requests})"
        if duration_s is None
        else f"soak ({clients} clients, {duration_s:.0f} s)"
    )
    phase = Phase(label, counts["requests"], counts["ok"], dict(errors), counts["mismatches"])
    phase.wall_s = wall
    phase.requests_per_s = counts["ok"] / wall if wall else 0.0
    phase.latency = percentiles(latencies)
    values = [v for _, v in sampler.samples]
    if values:
        # Growth after the first tenth of the run (allocator and caches warm up) to the end.
        warm = values[max(0, len(values) // 10)]
        phase.rss_mib = {
            "start": values[0],
            "warm": warm,
            "peak": max(values),
            "end": values[-1],
            "growth_after_warmup": values[-1] - warm,
            "second_half_slope_mib_per_min": _slope_per_minute(sampler.samples[len(sampler.samples) // 2 :]),
        }
    return phase


def call_segment(
    url: str, payload: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S
) -> tuple[str, str, float]:
    """One ``/segment`` call through Gradio's REST route (:mod:`segapp.rest_client`), as ``curl``
    would make it: one session per call.

    Returns:
        (outcome: ``ok``, ``busy`` or ``app-error: ...``; the server's text for a refusal;
        milliseconds until the server accepted or refused the request).
    """
    import httpx

    with httpx.Client(base_url=url, timeout=timeout_s) as http:
        t0 = time.perf_counter()
        try:
            event_id = rest_client.join(http, "segment", [payload, None])
        except rest_client.QueueFullError as full:
            return BUSY, str(full), (time.perf_counter() - t0) * 1000
        join_ms = (time.perf_counter() - t0) * 1000
        try:
            rest_client.result(http, "segment", event_id)
        except rest_client.EndpointError as error:
            return f"app-error: {error.message[:160]}", error.message, join_ms
        except RuntimeError:
            return "no result", "", join_ms
    return "ok", "", join_ms


def _slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples in MiB per minute: a leak shows as a steady
    positive slope, a warm cache as none."""
    if len(samples) < 10:  # too short a stretch to tell a trend from noise
        return None
    seconds, mib = np.asarray(samples, dtype=np.float64).T
    return float(np.polyfit(seconds, mib, 1)[0] * 60)


def _burst(url: str, path: Path, size: int) -> tuple[Counter[str], list[float], list[str]]:
    """``size`` requests released at once (files uploaded beforehand, so only the queue's answer
    is timed): (outcome counts, milliseconds to each "busy", the busy answers' text)."""
    data = path.read_bytes()
    payloads = [file_payload(upload(url, path.name, data)) for _ in range(size)]
    outcomes: Counter[str] = Counter()
    busy_ms: list[float] = []
    busy_text: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(size)

    def one(index: int) -> None:
        barrier.wait()
        try:
            outcome, text, join_ms = call_segment(url, payloads[index])
        except Exception as exc:  # noqa: BLE001 - every answer is counted
            outcome, text, join_ms = classify_error(exc), "", 0.0
        with lock:
            outcomes[outcome] += 1
            if outcome == BUSY:
                busy_ms.append(join_ms)
                busy_text.append(text)

    with ThreadPoolExecutor(size) as pool:
        list(pool.map(one, range(size)))
    return outcomes, busy_ms, busy_text


def overload_probe(
    url: str,
    path: Path,
    *,
    bursts: Sequence[int] = (64, 192),
    rss_pid: int | None = None,
) -> Phase:
    """Bursts of simultaneous requests well beyond the bounded queue, through the REST route (one
    session each, as from many ``curl`` users): each must be answered or turned away as busy,
    quickly; resident memory before, during and after each burst."""
    from segapp.ui.page import CONCURRENCY, QUEUE_SIZE

    phase = Phase("overload (queue answers busy)")
    busy_ms: list[float] = []
    busy_text: list[str] = []
    start = time.perf_counter()
    for number, size in enumerate(bursts, 1):
        before = rss_mib(rss_pid)
        with RssSampler(rss_pid, interval_s=0.25) as sampler:
            outcomes, times, texts = _burst(url, path, size)
        busy_ms += times
        busy_text += texts[:1]
        answered = outcomes.pop("ok", 0)
        phase.requests += size
        phase.ok += answered
        for key, value in outcomes.items():
            phase.errors[key] = phase.errors.get(key, 0) + value
        phase.extra[f"burst_{number}"] = {
            "size": size,
            "answered": answered,
            "busy": outcomes.get(BUSY, 0),
            "other_errors": sum(v for k, v in outcomes.items() if k != BUSY),
            "rss_before_mib": before,
            "rss_peak_mib": sampler.peak,
            "rss_after_mib": rss_mib(rss_pid),
        }
    phase.wall_s = time.perf_counter() - start
    phase.latency = percentiles(busy_ms)  # how fast the server says "busy"
    phase.extra.update(
        queue_size=QUEUE_SIZE, concurrency=CONCURRENCY, busy_answer=busy_text[0] if busy_text else None
    )
    return phase


def upload(url: str, filename: str, data: bytes) -> str:
    """Upload bytes under any file name (as a browser would); returns the server-side path."""
    import httpx

    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        return rest_client.upload(http, filename, data)


@dataclass
class CorpusOutcome:
    """What the API answered for one corpus file."""

    key: str
    ok: bool  # the answer is the expected kind (a result for valid files, a refusal for bad ones)
    detail: str  # the refusal message, or "H x W" of a result
    mask: np.ndarray | None = None
    seconds: float = 0.0


def send_corpus_file(client: Any, url: str, item: Any, timeout_s: float = REQUEST_TIMEOUT_S) -> CorpusOutcome:
    """Upload one hostile file under its own (hostile) name and segment it; classify the answer."""
    t0 = time.perf_counter()
    try:
        try:
            mask, stats = segment(client, file_payload(upload(url, item.filename, item.data)), timeout_s)
        except concurrent.futures.CancelledError:
            # gradio_client can lose a fast error reply under concurrency (its event-stream reader
            # sees the job finished before the message): ask once more; the answer is then judged.
            mask, stats = segment(client, file_payload(upload(url, item.filename, item.data)), timeout_s)
    except Exception as exc:  # noqa: BLE001 - the answer is judged, not raised
        label = classify_error(exc)
        message = label.removeprefix("app-error: ")
        clear = (
            label.startswith("app-error: ")
            and item.error is not None
            and re.search(item.error, message, re.IGNORECASE) is not None
            and "Traceback" not in message
        )
        return CorpusOutcome(item.key, clear, label, None, time.perf_counter() - t0)
    shape_ok = item.valid and (stats["height"], stats["width"]) == item.expected.shape == mask.shape
    return CorpusOutcome(
        item.key, bool(shape_ok), f"{mask.shape[0]} x {mask.shape[1]}", mask, time.perf_counter() - t0
    )


def corpus_rounds(
    url: str,
    downloads: Path,
    *,
    rounds: int = 10,
    workers: int = 4,
    max_pixels: int | None = None,
    rss_pid: int | None = None,
) -> tuple[Phase, list[list[CorpusOutcome]]]:
    """The hostile corpus ``rounds`` times, ``workers`` files at a time.

    Returns:
        The phase (``ok`` counts expected answers; ``mismatches`` counts valid files whose
        mask differs from the first round's) and every round's outcomes in corpus order.
    """
    from hostile_corpus import hostile_corpus

    if max_pixels is None:
        from segapp.ui.callbacks import APP_MAX_PIXELS

        max_pixels = APP_MAX_PIXELS
    corpus = hostile_corpus(max_pixels=max_pixels)
    clients = [new_client(url, downloads) for _ in range(workers)]
    phase = Phase(f"hostile corpus ({len(corpus)} files x {rounds})")
    results: list[list[CorpusOutcome]] = []
    rss_after: list[float | None] = []
    latencies: list[float] = []
    start = time.perf_counter()
    for _ in range(rounds):
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(
                pool.map(lambda ij: send_corpus_file(clients[ij[0] % workers], url, ij[1]), enumerate(corpus))
            )
        results.append(outcomes)
        rss_after.append(rss_mib(rss_pid))
        for outcome in outcomes:
            phase.requests += 1
            latencies.append(outcome.seconds * 1000)
            if outcome.ok:
                phase.ok += 1
            else:
                phase.errors[f"{outcome.key}: {outcome.detail}"] = (
                    phase.errors.get(f"{outcome.key}: {outcome.detail}", 0) + 1
                )
        for first, later in zip(results[0], outcomes):
            if (
                first.mask is not None
                and later.mask is not None
                and not np.array_equal(first.mask, later.mask)
            ):
                phase.mismatches += 1
    phase.wall_s = time.perf_counter() - start
    phase.requests_per_s = phase.requests / phase.wall_s
    phase.latency = percentiles(latencies)
    if rss_after and rss_after[0] is not None:
        phase.rss_mib = {
            "after_round_1": rss_after[0],
            "after_last_round": rss_after[-1],
            "growth_after_round_1": rss_after[-1] - rss_after[0],
            "per_round": rss_after,
        }
    phase.extra = {
        "files": len(corpus),
        "rounds": rounds,
        "refusals_expected": sum(not c.valid for c in corpus),
    }
    return phase, results


# ---------------------------------------------------------------------------- report


def table(phases: Sequence[Phase]) -> str:
    """The phases as a fixed-width text table."""

    def fmt(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    head = f"{'phase':38s} {'requests':>8s} {'ok':>6s} {'errors':>7s} {'busy':>5s} {'mismatch':>8s} {'req/s':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'RSS +MiB':>8s}"
    lines = [head, "-" * len(head)]
    for p in phases:
        busy = p.errors.get(BUSY, 0)
        errors = sum(p.errors.values()) - busy
        growth = p.rss_mib.get("growth_after_warmup", p.rss_mib.get("growth_after_round_1"))
        lines.append(
            f"{p.name[:38]:38s} {p.requests:8d} {p.ok:6d} {errors:7d} {busy:5d} {p.mismatches:8d} "
            f"{fmt(p.requests_per_s, 1):>7s} {fmt(p.latency.get('p50_ms')):>8s} {fmt(p.latency.get('p95_ms')):>8s} "
            f"{fmt(p.latency.get('p99_ms')):>8s} {fmt(growth, 1):>8s}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python scripts/load_test.py", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--weights",
        default=str(MODEL_DIR),
        help="weights to serve in-process (default: the bundled model)",
    )
    where.add_argument("--url", help="a running app on this machine, e.g. http://127.0.0.1:7860/")
    parser.add_argument(
        "--spawn",
        action="store_true",
        help="serve --weights from `python app.py` in a child process (its memory is measured alone) instead of in-process",
    )
    parser.add_argument(
        "--server-pid", type=int, help="with --url: the server's process id, to measure its memory"
    )
    parser.add_argument("--device", default="cpu", help="device for in-process serving (default cpu)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--requests", type=int, default=20, help="requests per client (default 20)")
    parser.add_argument(
        "--bursts", default="64,192", help="overload burst sizes, comma-separated ('' skips the probe)"
    )
    parser.add_argument(
        "--corpus-rounds", type=int, default=0, help="send the hostile corpus this many times (0: skip)"
    )
    parser.add_argument(
        "--soak-s", type=float, default=0.0, help="steady load for this many seconds after the rest (0: skip)"
    )
    parser.add_argument("--soak-clients", type=int, default=8, help="clients during the soak (default 8)")
    parser.add_argument(
        "--time-limit-s", type=float, default=900.0, help="stop the load phase after this long (default 900)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def run(args: argparse.Namespace, url: str, downloads: Path, rss_pid: int | None) -> dict[str, Any]:
    """All phases against ``url``; returns the report (also printed)."""
    inputs = make_inputs(downloads / "inputs")
    reference, ref_phase = reference_masks(url, inputs, downloads)
    phases = [ref_phase]
    phases.append(
        run_load(
            url,
            inputs,
            reference,
            downloads,
            clients=args.clients,
            requests=args.requests,
            time_limit_s=args.time_limit_s,
            rss_pid=rss_pid,
        )
    )
    bursts = [int(b) for b in args.bursts.split(",") if b.strip()]
    if bursts:
        phases.append(overload_probe(url, inputs[0], bursts=bursts, rss_pid=rss_pid))
        # Afterwards the server answers as before.
        after, _ = reference_masks(url, inputs[:2], downloads)
        phases[-1].extra["same_answers_after"] = all(
            np.array_equal(after[p], reference[p]) for p in inputs[:2]
        )
    if args.corpus_rounds:
        phase, _ = corpus_rounds(url, downloads, rounds=args.corpus_rounds, rss_pid=rss_pid)
        after, _ = reference_masks(url, inputs[:2], downloads)
        phase.extra["same_answers_after"] = all(np.array_equal(after[p], reference[p]) for p in inputs[:2])
        phases.append(phase)
    if args.soak_s:
        phases.append(
            run_load(
                url,
                inputs,
                reference,
                downloads,
                clients=args.soak_clients,
                duration_s=args.soak_s,
                rss_pid=rss_pid,
            )
        )
    report = {
        "url": url,
        "inputs": [p.name for p in inputs],
        "rss_measured": "server process" if rss_pid else "this process (server and clients)",
        "phases": [asdict(p) for p in phases],
    }
    print(table(phases))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    downloads = Path(tempfile.mkdtemp(prefix="segapp-load-"))
    try:
        if args.url:
            url = check_loopback(args.url)
            report = run(args, url, downloads, args.server_pid)
        elif args.spawn:
            with spawn(args.weights, device=args.device) as (url, pid):
                report = run(args, url, downloads, pid)
            report.update(weights=args.weights, device=args.device, server="python app.py (child process)")
        else:
            import torch

            from segapp.inference.segmenter import Segmenter

            segmenter = Segmenter.from_pretrained(args.weights, device=args.device)
            with serve(segmenter) as url:
                report = run(args, url, downloads, None)
            report.update(
                weights=args.weights,
                device=args.device,
                server="in-process",
                torch_threads=torch.get_num_threads(),
            )
        report["cpu_count"] = os.cpu_count()
        text = json.dumps(report, indent=2, default=float)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    except (ValueError, RuntimeError) as exc:  # bad --url, app.py failing to start, ModelLoadError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(downloads, ignore_errors=True)
    failed = any(p["mismatches"] or any(k != BUSY for k in p["errors"]) for p in report["phases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
