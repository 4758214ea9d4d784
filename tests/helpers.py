"""Helpers the tests import (not fixtures): tiny SegFormer models, free loopback ports, torchrun."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segapp.bench.measure import free_port  # the one free-port helper, shared with the bench

TINY = {
    "hidden_sizes": [16, 32, 40, 64],
    "depths": [1, 1, 1, 1],
    "decoder_hidden_size": 32,
    "num_attention_heads": [1, 2, 5, 8],
}


def make_tiny_model(num_labels: int = 4, seed: int = 0):
    """A SegFormer with the B0 layout but a few thousand parameters, random weights."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    return SegformerForSemanticSegmentation(SegformerConfig(num_labels=num_labels, **TINY)).eval()


def save_tiny_model(folder: Path, *, context: tuple[int, int, int] = (0, 0, 0), seed: int = 0) -> Path:
    """A complete model folder of :func:`make_tiny_model` at 64 x 64; ``context``: its 2.5D channel offsets."""
    from segapp.model.processing import ProcessingConfig
    from segapp.model.weights import save_model

    processing = ProcessingConfig(height=64, width=64, context_offsets=context)
    return save_model(make_tiny_model(seed=seed), folder, processing=processing, data="random")



def torchrun_two_cpu(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Two CPU processes under torchrun (gloo), running this checkout's segapp; killed as a group on a hang."""
    import segapp

    repo = str(Path(segapp.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", *args]
    # Own process group, so a hang cannot leave torchrun's workers running after the test.
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s")
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


@contextlib.contextmanager
def served_page(segmenter: Any, examples_dir: Path | None) -> Iterator[str]:
    """The page (``build_demo``) on a free loopback port with the app's style sheet; its URL."""
    from segapp.ui import build_demo, launch_options

    root = Path(__file__).resolve().parents[1]
    demo = build_demo(segmenter, examples_dir=examples_dir)
    options = launch_options(port=free_port(), css_path=root / "assets" / "style.css")
    _, url, _ = demo.launch(**options, prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


def record_hosts(page: Any) -> set[str]:
    """The hosts a Playwright page asks from now on (filled as it runs). In-page URLs (data:
    images of the volume planes, blob: files of the 3D viewer) go to no host and are left out."""
    from urllib.parse import urlparse

    hosts: set[str] = set()
    page.on("request", lambda request: request.url.startswith(("data:", "blob:"))
            or hosts.add(urlparse(request.url).netloc))
    return hosts
