"""The patch embedding as a matmul: the convolution's function and gradients, on its own parameters."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from xllava.train.patch_matmul import PatchMatmulConv2d, patches_as_matmul

TOWERS = {
    "clip": (CLIPVisionModel, CLIPVisionConfig),
    "siglip": (SiglipVisionModel, SiglipVisionConfig),  # its patch embedding has a bias
}


def tower(kind: str) -> torch.nn.Module:
    model_cls, config_cls = TOWERS[kind]
    torch.manual_seed(0)
    return model_cls(config_cls(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2))


@pytest.mark.parametrize("kind", sorted(TOWERS))
def test_tower_forward_and_gradients_match_the_convolution(kind):
    model = tower(kind)
    pixels = torch.randn(3, 3, 64, 64)

    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model(pixel_values=pixels).last_hidden_state
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    conv_out, conv_grads = run()
    with patches_as_matmul(model) as swapped:
        assert swapped == 1
        matmul_out, matmul_grads = run()
    torch.testing.assert_close(matmul_out, conv_out, rtol=1e-4, atol=1e-5)
    assert matmul_grads.keys() == conv_grads.keys()
    for name in conv_grads:
        torch.testing.assert_close(matmul_grads[name], conv_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_remainder_pixels_are_dropped_as_a_convolution_drops_them():
    conv = torch.nn.Conv2d(3, 8, kernel_size=(4, 5), stride=(4, 5), bias=True)
    pixels = torch.randn(2, 3, 18, 23)  # 4 rows and 4 columns of patches, with pixels left over
    torch.testing.assert_close(PatchMatmulConv2d.sharing(conv)(pixels), conv(pixels), rtol=1e-4, atol=1e-5)


def test_training_in_the_block_updates_the_saved_convolution_and_restores_it():
    model = tower("clip")
    conv = model.embeddings.patch_embedding
    before = conv.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)  # created before the swap, as in the stage
    with patches_as_matmul(model):
        assert isinstance(model.embeddings.patch_embedding, PatchMatmulConv2d)
        assert model.embeddings.patch_embedding.weight is conv.weight
        model(pixel_values=torch.randn(2, 3, 64, 64)).last_hidden_state.mean().backward()
        optimizer.step()
    assert model.embeddings.patch_embedding is conv
    assert not torch.equal(conv.weight, before)
    assert set(model.state_dict()) == set(tower("clip").state_dict())


def test_a_convolution_that_is_not_patchwise_is_left_alone():
    model = torch.nn.Module()
    model.patch_embedding = torch.nn.Conv2d(3, 8, kernel_size=4, stride=2)  # overlapping windows
    with patches_as_matmul(model) as swapped:
        assert swapped == 0
        assert type(model.patch_embedding) is torch.nn.Conv2d
