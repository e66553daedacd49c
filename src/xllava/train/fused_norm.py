"""A frozen RMSNorm's forward and backward as one autograd function, for training on a CPU.

HF's Llama-family RMSNorm is five torch ops (upcast, square, mean, rsqrt, two products), each
recorded by autograd and each writing an activation the size of its input; the backward replays
them. With the weight frozen (LoRA and frozen-LLM stages) the gradient needs only the input and the
per-token scale: here the forward is one norm pass and two products, the backward four passes.
`python -m xllava.train.fused_norm` times both on SmolLM2's norm. Written by hand because torch's
`F.rms_norm` is a composite of the same ops on a CPU.

Only for the classes in RMS_NORM_CLASSES (weight * x / rms(x); Gemma's (1 + weight) form is not
one), a frozen weight, float32 and a CPU; any other call takes HF's forward. Like fused_lora the swap
changes no module, parameter or saved state: it sets each layer's `forward` for the duration of the
block and removes it on exit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

RMS_NORM_CLASSES = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"}


class _RmsNorm(torch.autograd.Function):
    """weight * x / sqrt(mean(x^2) + eps) over the last dimension, with the weight frozen."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        scale = torch.linalg.vector_norm(x, dim=-1, keepdim=True).div_(x.shape[-1] ** 0.5)
        scale = scale.square_().add_(eps).rsqrt_()  # [..., 1]
        ctx.save_for_backward(x, weight, scale)
        return (x * scale).mul_(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, scale = ctx.saved_tensors
        # d/dx_j: scale * (g w)_j - x_j scale^3 mean((g w) x)
        weighted = grad * weight
        along = (weighted * x).sum(-1, keepdim=True).mul_(scale.pow(3)).div_(x.shape[-1])
        return weighted.mul_(scale).sub_(x * along), None, None


def _fusable(layer: nn.Module) -> bool:
    weight = getattr(layer, "weight", None)
    return (type(layer).__name__ in RMS_NORM_CLASSES and isinstance(weight, nn.Parameter)
            and not weight.requires_grad and hasattr(layer, "variance_epsilon"))


def _fused_forward(layer: nn.Module, hf_forward):
    def forward(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        weight = layer.weight
        if (args or kwargs or weight.requires_grad or hidden_states.dtype != torch.float32
                or weight.dtype != torch.float32 or hidden_states.device.type != "cpu"
                or torch.is_autocast_enabled("cpu")):
            return hf_forward(hidden_states, *args, **kwargs)
        return _RmsNorm.apply(hidden_states, weight, float(layer.variance_epsilon))

    return forward


@contextmanager
def rms_norm_fused(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block every RMSNorm of `model` in RMS_NORM_CLASSES whose weight is frozen runs as
    `_RmsNorm` where the call is float32 on a CPU with the weight still frozen (checked at each
    call). Yields how many layers were swapped (none when not `enabled`)."""
    swapped = [layer for layer in model.modules() if _fusable(layer)] if enabled else []
    for layer in swapped:
        layer.forward = _fused_forward(layer, layer.forward)
    try:
        yield len(swapped)
    finally:
        for layer in swapped:
            layer.__dict__.pop("forward", None)  # the instance attribute; the class's forward shows again


def _bench(tokens: int = 940, steps: int = 200) -> None:
    """Forward and backward of SmolLM2-135M's RMSNorm (576 features, weight frozen) on `tokens` tokens."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(576, eps=1e-5).requires_grad_(False)
    x, grad = torch.randn(tokens, 576, requires_grad=True), torch.randn(tokens, 576)
    times = {}
    for name in ("hf", "fused"):
        with rms_norm_fused(norm, enabled=name == "fused"):
            for i in range(steps + 10):
                if i == 10:
                    started = time.perf_counter()
                norm(x).backward(grad)
        times[name] = (time.perf_counter() - started) / steps * 1e3
    print(f"RMSNorm, {tokens} tokens x 576, forward and backward: "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in times.items()))


if __name__ == "__main__":
    _bench()
