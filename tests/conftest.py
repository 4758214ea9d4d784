"""Shared fixtures: tiny random SegFormer models and phantom slices, no network."""

from __future__ import annotations

import os

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
