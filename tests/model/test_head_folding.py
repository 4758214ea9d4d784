"""The folded decode head equals the original one."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny_model

from segapp.model.head_folding import fold
from segapp.model.weights import scratch_config


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


def _without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout and drop-path draw random numbers in layout-dependent order; switch them off so
    the two forms can be compared exactly."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    return model


@pytest.mark.parametrize("kind", ["tiny", "b0"])
def test_folded_training_has_the_same_loss_gradients_and_batch_norm_updates(kind: str) -> None:
    import copy

    from transformers import SegformerForSemanticSegmentation

    from segapp.model.head_folding import FoldedTraining
    from segapp.training.loss import segmentation_loss

    torch.manual_seed(0)
    model = make_tiny_model() if kind == "tiny" else SegformerForSemanticSegmentation(scratch_config("b0"))
    original = _without_dropout(model).train()
    twin = copy.deepcopy(original)
    x = torch.randn(3, 3, 64, 96)
    labels = torch.randint(0, 4, (3, 16, 24))
    loss_a = segmentation_loss(original(pixel_values=x).logits, labels)
    loss_b = segmentation_loss(FoldedTraining(twin)(pixel_values=x).logits, labels)
    assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    loss_a.backward()
    loss_b.backward()
    named_b = dict(twin.named_parameters())
    # Relative to the largest gradient: some are exactly zero in theory (a per-channel constant
    # before batch norm) and only float noise in practice.
    scale = max(p.grad.abs().max() for p in original.parameters() if p.grad is not None)
    for name, param in original.named_parameters():
        assert param.grad is not None and named_b[name].grad is not None, name
        assert (param.grad - named_b[name].grad).abs().max() / scale < 1e-4, name
    bn_a, bn_b = original.decode_head.batch_norm, twin.decode_head.batch_norm
    assert torch.allclose(bn_a.running_mean, bn_b.running_mean, atol=1e-5)
    assert torch.allclose(bn_a.running_var, bn_b.running_var, rtol=1e-4)
    # Eval mode (running statistics) agrees too.
    original.eval()
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(original(pixel_values=x).logits, FoldedTraining(twin)(pixel_values=x).logits, atol=1e-4)


def test_folded_training_shares_the_models_parameters() -> None:
    from segapp.model.head_folding import FoldedTraining

    model = make_tiny_model()
    wrapper = FoldedTraining(model)
    assert {id(p) for p in wrapper.parameters()} == {id(p) for p in model.parameters()}
    assert set(wrapper.state_dict()) == {f"model.{k}" for k in model.state_dict()}
