"""The fused frozen RMSNorm (xllava.train.fused_norm) computes what HF's module computes."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

from tests.test_supervised_tail import TEXT, batch, llava
from xllava.config import TrainStageConfig
from xllava.train.fused_norm import rms_norm_fused
from xllava.train.loss import llava_loss
from xllava.train.stage import configure_trainable


def loss_and_grads(model: torch.nn.Module, fused: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    model.zero_grad(set_to_none=True)
    with rms_norm_fused(model, enabled=fused) as swapped:
        loss = llava_loss(model.get_base_model(), supervised_logits_only=True, **batch())
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, swapped


@pytest.mark.parametrize("family", [LlamaConfig, Qwen2Config])
def test_a_lora_model_trains_the_same_with_fused_norms(family) -> None:
    model, _ = configure_trainable(llava(family(**TEXT)), TrainStageConfig(data=["x.jsonl"], llm_mode="lora",
                                                                           lora={"dropout": 0.0}))
    for name, param in model.named_parameters():
        if "norm" in name:  # a norm that is not the identity, so an error in it shows
            with torch.no_grad():
                param.normal_(1.0, 0.3)
    reference_loss, reference, _ = loss_and_grads(model, fused=False)
    loss, grads, swapped = loss_and_grads(model, fused=True)
    assert swapped == 2 * TEXT["num_hidden_layers"] + 1  # two per layer and the final norm
    torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == reference.keys() and any("lora_A" in n for n in grads) and any("projector" in n for n in grads)
    for name in grads:
        torch.testing.assert_close(grads[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)
    assert not any(hasattr(m, "forward") and "forward" in m.__dict__ for m in model.modules())  # swap undone


def test_trainable_norms_and_other_dtypes_take_hf_s_forward() -> None:
    model = llava(LlamaConfig(**TEXT))  # every weight trains: full fine-tuning
    with rms_norm_fused(model) as swapped:
        assert swapped == 0
    norm = model.model.language_model.norm
    norm.weight.requires_grad_(False)
    x = torch.randn(3, 5, TEXT["hidden_size"])
    with rms_norm_fused(model) as swapped:
        assert swapped == 1
        bf16 = norm(x.bfloat16())  # HF's upcast-and-cast path
        assert bf16.dtype == torch.float32  # the fp32 weight times the bf16 normalised input
        norm.weight.requires_grad_(True)  # unfrozen inside the block: HF's path gives its gradient
        norm(x).sum().backward()
        assert norm.weight.grad is not None
    gemma = llava(Gemma3TextConfig(**TEXT, head_dim=8))
    with rms_norm_fused(gemma) as swapped:
        assert swapped == 0  # (1 + weight) norms are not this function's
