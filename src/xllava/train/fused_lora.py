"""A LoRA projection's forward and backward as one autograd function, for training on a CPU.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate torch ops. On a CPU two
parts of that cost more than the matrix work. The dropout mask is drawn one mt19937 number per
element (`bernoulli_`, single-threaded). And every op writes a fresh activation the size of the
input or output (the dropped input, lora_B's output, its scaled copy, the sum, and their gradients),
so the rank-8 adapter spends its time moving memory. On the smol recipe (SmolLM2-135M, LoRA on the 7
projections of its 30 layers, dropout 0.05, 4 samples of ~172 tokens, 2 cores) a stage-2 step took
6.3 s with peft's modules, 5.2 s without dropout and 4.5 s with the adapters off.

Here:
- one 64-bit draw gives four 16-bit lanes, each compared with p quantised to 1/65536, and kept
  values are scaled by that quantised keep rate: the same distribution up to |dp| <= 2^-17, from
  the same torch generator (seeded and resumed as the Trainer does), a different stream of draws;
- the adapter's output is added into the frozen projection's in place (addmm), and the input
  gradient of both is one addmm/addcmul;
- autograd keeps the input (which the frozen projection needs anyway), the mask and the rank-r
  activation, not the dropped input.

`python -m xllava.train.fused_lora` times one layer's seven projections four ways; bench/train_throughput.py a
whole step. Written by hand because neither torch nor peft fuses this on a CPU. On CUDA peft's
path is already fast (Philox dropout, fused kernels), so `lora_fused` only takes layers on a CPU.
Like patch_matmul the swap changes no module, parameter or saved state: it sets each layer's
`forward` for the duration of the block and removes it on exit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear

LANE_VALUES = 1 << 16


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype = torch.float32,
              device: torch.device | None = None) -> torch.Tensor:
    """A 0/1 mask of `shape`: 1 with probability 1 - p (p quantised to 1/65536)."""
    drop_below = round(p * LANE_VALUES)
    n = shape.numel()
    # random_(min, None) fills all 64 bits (a plain random_() leaves the sign bit 0): four lanes
    draws = torch.empty(-(-n // 4), dtype=torch.int64, device=device).random_(-(1 << 63), None)
    lanes = draws.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    # keep <=> lane as u16 >= drop_below <=> lane as i16 > drop_below - 32768 - 1. On integers
    # clamp(lane - that, 0, 1) is that test as 0/1 in float ops (bool ops are far slower on a CPU);
    # the subtraction reads the int16 lanes and writes float32 in one pass, exact for every lane
    keep = torch.sub(lanes, float(drop_below - LANE_VALUES // 2 - 1)).clamp_(0, 1)
    return keep if dtype == torch.float32 else keep.to(dtype)  # 0 and 1 are exact in any dtype


def keep_scale(p: float) -> float:
    """What kept values are multiplied by: 1 / the quantised keep rate."""
    return 1.0 / (1.0 - round(p * LANE_VALUES) / LANE_VALUES)


def keep_multiplier(shape: torch.Size, p: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """A dropout multiplier of `shape`: keep_scale(p) with probability 1 - p, else 0."""
    return keep_mask(shape, p, dtype, device).mul_(keep_scale(p))


class _LoraProjection(torch.autograd.Function):
    """x W^T + b + s ((x * keep) A^T) B^T, with W and b frozen; keep is drawn when p > 0.

    The mask is kept as 0/1 and its scale folded into the rank-r side (low, grad A) and the
    addcmul's value, where it costs nothing, instead of a pass over the mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.dtype, x.device) if p > 0 else None
        kept = keep_scale(p) if p > 0 else 1.0
        rows = x.reshape(-1, x.shape[-1])
        low = F.linear(rows if keep is None else rows * keep.view_as(rows), lora_a)  # [n, r]
        if keep is not None:
            low.mul_(kept)
        out = F.linear(rows, weight, bias).addmm_(low, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x, keep, low, weight, lora_a, lora_b)
        ctx.scaling, ctx.kept = scaling, kept
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, keep, low, weight, lora_a, lora_b = ctx.saved_tensors
        rows, grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        grad_low = (grad @ lora_b).mul_(ctx.scaling)  # [n, r]
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ weight
            if keep is None:
                grad_x.addmm_(grad_low, lora_a)
            else:  # a rank-r product into zeros: on CPU BLAS 3-4x faster than into a fresh tensor
                grad_x.addcmul_(torch.zeros_like(grad_x).addmm_(grad_low, lora_a), keep.view_as(grad_x),
                                value=ctx.kept)
            grad_x = grad_x.view_as(x)
        if ctx.needs_input_grad[3]:
            grad_a = grad_low.t() @ rows if keep is None else (grad_low.t() @ (rows * keep.view_as(rows))).mul_(ctx.kept)
        if ctx.needs_input_grad[4]:
            grad_b = (grad.t() @ low).mul_(ctx.scaling)
        return grad_x, None, None, grad_a, grad_b, None, None


def _fusable(layer: nn.Module) -> str | None:
    """The one active adapter of a peft lora.Linear whose forward this file computes, or None."""
    if type(layer) is not LoraLinear or len(layer.active_adapters) != 1:
        return None
    (name,) = layer.active_adapters
    if name not in layer.lora_A:
        return None
    base, lora_a, lora_b = layer.get_base_layer(), layer.lora_A[name], layer.lora_B[name]
    dropout = layer.lora_dropout[name]
    if not (type(base) is nn.Linear and type(lora_a) is nn.Linear and type(lora_b) is nn.Linear):
        return None
    fusable = (
        lora_a.bias is None and lora_b.bias is None
        and type(dropout) in (nn.Dropout, nn.Identity) and getattr(dropout, "p", 0.0) < 1
        and name not in getattr(layer, "lora_variant", {})  # DoRA and friends compute their own way
        and not getattr(layer, "fan_in_fan_out", False)
        and base.weight.device.type == "cpu"
        and not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
    )
    return name if fusable else None


def _fused_forward(layer: nn.Module, name: str, peft_forward):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        base, lora_a, lora_b = layer.get_base_layer(), layer.lora_A[name], layer.lora_B[name]
        if (args or kwargs or layer.disable_adapters or layer.merged or list(layer.active_adapters) != [name]
                or not x.dtype == base.weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype
                or base.weight.requires_grad or x.device.type != "cpu"  # a base that trains gets its gradient
                or torch.is_autocast_enabled(x.device.type)):
            return peft_forward(x, *args, **kwargs)
        dropout = layer.lora_dropout[name]
        p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
        return _LoraProjection.apply(x, base.weight, base.bias, lora_a.weight, lora_b.weight,
                                     float(layer.scaling[name]), p)

    return forward


@contextmanager
def lora_fused(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block every fusable LoRA projection of `model` (a peft lora.Linear over an
    nn.Linear, one plain adapter, frozen base, on a CPU) runs as `_LoraProjection`; anything else
    at call time (adapters off or merged, autocast, mixed dtypes, a base weight that trains, another
    device, extra arguments) takes peft's own forward. Yields how many layers were swapped (none when
    not `enabled`)."""
    adapters = {layer: _fusable(layer) for layer in model.modules()} if enabled else {}
    swapped = [layer for layer, name in adapters.items() if name is not None]
    try:
        for layer in swapped:
            layer.forward = _fused_forward(layer, adapters[layer], layer.forward)
        yield len(swapped)
    finally:
        for layer in swapped:
            del layer.forward  # the instance attribute; the class's forward shows again


def _bench(tokens: int = 600, steps: int = 40) -> None:
    """Forward and backward of the 7 rank-8 LoRA projections of one SmolLM2-135M layer (q, k, v, o:
    576 -> 576/192; gate, up: 576 -> 1536; down: 1536 -> 576) on `tokens` tokens: the frozen matrix
    alone, fused without and with dropout 0.05, and peft's modules."""
    from peft import LoraConfig, get_peft_model

    shapes = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
    totals = dict.fromkeys(("frozen", "fused p=0", "fused", "peft"), 0.0)
    torch.manual_seed(0)
    for d_in, d_out in shapes:
        model = get_peft_model(nn.Sequential(nn.Linear(d_in, d_out, bias=False)),
                               LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["0"]))
        x, grad = torch.randn(tokens, d_in, requires_grad=True), torch.randn(tokens, d_out)
        dropout = model.base_model.model[0].lora_dropout["default"]
        for name in totals:
            dropout.p = 0.0 if name == "fused p=0" else 0.05
            with lora_fused(model, enabled=name != "peft"), \
                    model.disable_adapter() if name == "frozen" else torch.enable_grad():
                for i in range(steps + 5):
                    if i == 5:
                        started = time.perf_counter()
                    model(x).backward(grad)
            totals[name] += (time.perf_counter() - started) / steps * 1e3
    print(f"one layer's 7 projections, {tokens} tokens, forward and backward: "
          + ", ".join(f"{name} {ms:.1f} ms" for name, ms in totals.items()))


if __name__ == "__main__":
    _bench()
