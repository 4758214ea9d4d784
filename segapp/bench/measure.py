"""What every benchmark part measures with: the inputs, round-robin timing, concurrent callers."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from segapp.synthetic import generate_slice

SIZES = [(266, 266), (360, 310), (234, 234), (276, 276)]  # (width, height), as segapp.synthetic takes them


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests, benchmarks and scripts that start the page)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

def phantom_slices(count: int) -> list[np.ndarray]:
    """``count`` (H, W) uint8 phantom slices with organs, cycling through the real sizes."""
    return [generate_slice(100 + i, size=SIZES[i % len(SIZES)], empty=False).image8 for i in range(count)]


def interleaved_ms(runs: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Median ms of each callable over ``repeats`` rounds after one warm-up call each, timed
    round-robin so that load on a shared machine hits all alike."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def concurrent_rate(call: Callable[[int, int], Any], clients: int, per_client: int) -> float:
    """Calls per second when ``clients`` threads each make ``per_client`` calls at once.

    Args:
        call: ``call(client, round)``, with ``client`` in ``0..clients-1`` and ``round`` in
            ``0..per_client-1`` (to pick the client's connection and its next input).
    """

    def worker(client: int) -> int:
        for index in range(per_client):
            call(client, index)
        return per_client

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(worker, range(clients)))
    return total / (time.perf_counter() - start)
