"""Training tests: no test logs to Weights & Biases unless it asks to (tests/training/test_wandb.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_wandb_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # --report-to auto would include W&B on a machine with a W&B login; disabled, it never does.
    monkeypatch.setenv("WANDB_MODE", "disabled")
