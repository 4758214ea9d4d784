"""Shared fixtures: tiny random SegFormer models and phantom slices, no network.

Plain helpers that tests import live in ``tests/helpers.py``: ``from conftest import`` would
find whichever conftest module was loaded last (there is one in ``tests/ui/`` too).
"""

from __future__ import annotations

import os

import pytest
from helpers import make_tiny_model

# Never reach the network from tests: hub look-ups must fail fast, analytics stay off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# No test logs to Weights & Biases, whatever login this machine has; the W&B tests opt in (offline).
os.environ.setdefault("WANDB_MODE", "disabled")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SEGAPP_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set SEGAPP_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
