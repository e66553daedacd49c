"""The fused LoRA projection (xllava.train.fused_lora) computes what peft computes, and its dropout is dropout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from xllava.train.fused_lora import dropped_positions, keep_multiplier, lora_fused


@pytest.mark.parametrize("p", [0.05, 0.5])
def test_keep_multiplier_is_unbiased_dropout(p: float) -> None:
    torch.manual_seed(0)
    keep = keep_multiplier(torch.Size([1000, 4096]), p)
    scale = float(keep.max())
    assert keep.shape == (1000, 4096)
    assert sorted(keep.unique().tolist()) == pytest.approx([0.0, 1 / (1 - p)]) and scale > 1
    dropped = (keep == 0).flatten().float()
    assert abs(float(dropped.mean()) - p) < 1e-3
    # independent elements: neighbours drop together at rate p^2, and the draw reaches the end
    assert abs(float((dropped[1:] * dropped[:-1]).mean()) - p * p) < 1e-3
    assert abs(float(dropped[-dropped.numel() // 10 :].mean()) - p) < 3e-3
    assert abs(float(keep.mean()) - 1.0) < 3e-3  # scaled by the keep rate: E[x * keep] = x
    torch.manual_seed(0)
    assert torch.equal(keep_multiplier(torch.Size([1000, 4096]), p), keep)  # the seeded torch generator


@pytest.mark.parametrize(("n", "p"), [(1, 0.5), (7, 0.99), (50, 1e-6)])
def test_dropped_positions_are_sorted_indices_below_n(n: int, p: float) -> None:
    torch.manual_seed(1)
    draws = [dropped_positions(n, p) for _ in range(200)]
    for positions in draws:
        assert positions.dtype == torch.int64 and bool((positions[1:] > positions[:-1]).all())
        assert positions.numel() == 0 or 0 <= int(positions.min()) and int(positions.max()) < n
    rate = sum(d.numel() for d in draws) / (200 * n)
    assert abs(rate - p) < 0.1


def lora_model(dropout: float, bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(24, 40, bias=bias), nn.Tanh(), nn.Linear(40, 16, bias=bias))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["0", "2"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would hide errors in A's gradient
            nn.init.normal_(param)
    return model


def output_and_grads(model: nn.Module, x: torch.Tensor, seed: int = 5) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), {"x": x.grad, **grads}


def assert_same(a: tuple[torch.Tensor, dict], b: tuple[torch.Tensor, dict]) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
    assert a[1].keys() == b[1].keys() and len(a[1]) == 5  # x and the four adapter matrices
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("bias", [True, False])
def test_without_dropout_fused_equals_peft(bias: bool) -> None:
    model = lora_model(0.0, bias)
    model.train()
    x = torch.randn(3, 7, 24)
    reference = output_and_grads(model, x)
    with lora_fused(model) as swapped:
        assert swapped == 2
        assert_same(output_and_grads(model, x), reference)


def test_with_dropout_fused_equals_peft_under_the_same_mask() -> None:
    """peft's own modules, fed the mask the fused function draws from the same seed."""
    model = lora_model(0.3)
    model.train()
    x = torch.randn(3, 7, 24)
    with lora_fused(model):
        fused = output_and_grads(model, x, seed=5)

    masks = iter([])

    class SameMask(nn.Module):  # peft's dropout slot, applying the fused path's draws in call order
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t * next(masks)

    layers = [model.base_model.model[0], model.base_model.model[2]]
    originals = [layer.lora_dropout["default"] for layer in layers]
    for layer in layers:
        layer.lora_dropout["default"] = SameMask()
    torch.manual_seed(5)
    # the fused forward draws each layer's mask first; layer 2's input has 40 features
    masks = iter([keep_multiplier(torch.Size([3, 7, 24]), 0.3), keep_multiplier(torch.Size([3, 7, 40]), 0.3)])
    try:
        reference = output_and_grads(model, x, seed=999)  # the masks are drawn already
    finally:
        for layer, original in zip(layers, originals, strict=True):
            layer.lora_dropout["default"] = original
    assert_same(fused, reference)
    assert not torch.equal(fused[1]["x"], output_and_grads(lora_model(0.0), x)[1]["x"])  # dropout acted


def test_swap_leaves_state_and_falls_back_where_it_cannot_fuse() -> None:
    model = lora_model(0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 24)
    model.eval()  # eval: no dropout, so fused and peft agree exactly
    peft_out = model(x)
    with lora_fused(model):
        assert model.state_dict().keys() == before.keys()
        torch.testing.assert_close(model(x), peft_out)
        with model.disable_adapter():  # adapters off: peft's own forward, the base alone
            base_out = model(x)
        inner = model.base_model.model
        torch.testing.assert_close(base_out, inner[2].base_layer(torch.tanh(inner[0].base_layer(x))))
        assert not torch.allclose(base_out, peft_out)
    layer = model.base_model.model[0]
    assert "forward" not in vars(layer)  # the swap is undone
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_bf16_base_under_fp32_adapters_takes_peft_s_path() -> None:
    model = lora_model(0.0)
    model.base_model.model[0].base_layer.to(torch.bfloat16)  # peft keeps adapters in fp32 beside it
    x = torch.randn(2, 5, 24, dtype=torch.bfloat16)
    layer = model.base_model.model[0]
    reference = layer(x)
    with lora_fused(model):
        torch.testing.assert_close(layer(x), reference)


def test_only_frozen_cpu_lora_linears_are_fused() -> None:
    model = lora_model(0.1)
    model.base_model.model[2].base_layer.weight.requires_grad_(True)  # a trained base weight: peft's path
    with lora_fused(model) as swapped:
        assert swapped == 1
    # and one unfrozen inside the block: peft's path, so the base weight gets its gradient
    with lora_fused(model):
        model.base_model.model[0].base_layer.weight.requires_grad_(True)
        model(torch.randn(2, 24)).sum().backward()
    assert model.base_model.model[0].base_layer.weight.grad is not None
    plain = nn.Sequential(nn.Linear(4, 4))
    with lora_fused(plain) as swapped:
        assert swapped == 0


def test_a_lora_stage_trains_the_same_fused_and_unfused(fast_run: Path, tmp_path: Path) -> None:
    """Stage 2 through the Trainer (LoRA, dropout 0 so both draw nothing): the same loss at every
    step, and the merged models equal."""
    from tests.conftest import fast_recipe
    from xllava.train.stage import train_stage

    losses, weights = {}, {}
    for fused in (True, False):
        recipe = fast_recipe(fast_run, "instruct.llm_mode=lora", "instruct.lora.dropout=0.0",
                             f"instruct.lora.fused={fused}")
        result = train_stage(recipe.instruct, fast_run / "align" / "model", tmp_path / f"fused-{fused}",
                             fast_run, "instruct")
        losses[fused] = [h["loss"] for h in result.log_history if "loss" in h]
        weights[fused] = load_file(next(result.model_dir.glob("*.safetensors")))
    assert len(losses[True]) == 4 and losses[True][-1] != losses[True][0]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert weights[True].keys() == weights[False].keys()
    for name, tensor in weights[True].items():
        torch.testing.assert_close(tensor, weights[False][name], rtol=1e-4, atol=1e-6, msg=name)
