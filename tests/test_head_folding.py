"""The folded decode head equals the original one."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from segapp.head_folding import fold
from segapp.modeling import scratch_config


@pytest.mark.parametrize("kind", ["tiny", "b0"])
def test_folded_logits_equal_the_original(kind: str) -> None:
    from transformers import SegformerForSemanticSegmentation

    torch.manual_seed(0)
    model = make_tiny_model() if kind == "tiny" else SegformerForSemanticSegmentation(scratch_config("b0"))
    # Non-trivial batch-norm statistics, so folding them is tested too.
    bn = model.decode_head.batch_norm
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        expected = model(pixel_values=x).logits
        folded = fold(model)(pixel_values=x).logits
    assert folded.shape == expected.shape
    assert torch.allclose(folded, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(folded.argmax(1), expected.argmax(1))


def test_folding_needs_eval_mode_and_leaves_the_model_alone() -> None:
    model = make_tiny_model().train()
    with pytest.raises(ValueError, match="eval mode"):
        fold(model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(model.decode_head).__name__ == "SegformerDecodeHead"
