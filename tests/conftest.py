"""Shared fixtures: tiny random SegFormer models and phantom slices, no network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Never reach the network from tests: hub look-ups must fail fast, analytics stay off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SEGAPP_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set SEGAPP_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A complete saved model folder (config, safetensors, preprocessor config, card) of a tiny model."""
    from segapp.model.processing import ProcessingConfig
    from segapp.model.weights import save_model

    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(make_tiny_model(), folder, processing=ProcessingConfig(height=64, width=64), data="random")
    return folder


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_model_dir):
    from segapp.inference.segmenter import Segmenter

    return Segmenter.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory: pytest.TempPathFactory):
    """A small notebook-layout data set from the phantom generator (12 train, 4 valid slices)."""
    from segapp.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("phantom")
    generate_dataset(folder, train=12, valid=4, seed=5, progress=False)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: tiny tensors on a shared 2-core machine stall when oversubscribed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
