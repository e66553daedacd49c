"""A LoRA projection's forward and backward as one autograd function, for training on a CPU.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate torch ops. On a CPU two
parts of that cost more than the matrix work. The dropout mask is drawn one mt19937 number per
element (`bernoulli_`, single-threaded). And every op writes a fresh activation the size of the
input or output (the dropped input, lora_B's output, its scaled copy, the sum, and their gradients),
so the rank-8 adapter spends its time moving memory. On the smol recipe (SmolLM2-135M, LoRA on the 7
projections of its 30 layers, dropout 0.05, 4 samples of ~172 tokens, 2 cores) a stage-2 step took
6.3 s with peft's modules, 5.2 s without dropout and 4.5 s with the adapters off.

Here:
- the mask is drawn as the gaps between dropped elements (geometric, `dropped_positions`): about
  n * p draws instead of n, the same distribution as n Bernoulli draws, from the same torch
  generator (seeded and resumed as the Trainer does), a different stream of draws;
- the adapter's output is added into the frozen projection's in place (addmm), and so is its
  input gradient, corrected at the dropped elements only;
- autograd keeps the input (which the frozen projection needs anyway), the dropped elements'
  indices and the rank-r activation, not a mask or the dropped input.

`python -m xllava.train.fused_lora` times one layer's seven projections four ways; bench/train_throughput.py a
whole step. Written by hand because neither torch nor peft fuses this on a CPU. On CUDA peft's
path is already fast (Philox dropout, fused kernels), so `lora_fused` only takes layers on a CPU.
Like patch_matmul the swap changes no module, parameter or saved state: it sets each layer's
`forward` for the duration of the block and removes it on exit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear


def dropped_positions(n: int, p: float, device: torch.device | None = None) -> torch.Tensor:
    """The sorted flat indices, in [0, n), that dropout with rate p zeroes: each index independently
    with probability p.

    Drawn as the gaps between dropped indices, which for independent Bernoulli(p) draws are
    geometric: floor(log(V) / log(1 - p)) + 1 with V uniform on (0, 1], in float64. That is about
    n * p draws instead of n (20x fewer at p = 0.05), from the torch generator (seeded and resumed
    as the Trainer does it)."""
    expected = n * p
    chunk = int(expected + 6 * math.sqrt(expected * (1 - p)) + 16)  # overshoots n nearly always
    per_log = 1.0 / math.log1p(-p)
    pieces, last = [], torch.tensor(-1, dtype=torch.int64, device=device)
    while int(last) < n:
        v = torch.rand(chunk, dtype=torch.float64, device=device)
        gaps = torch.log1p(-v).mul_(per_log).floor_().add_(1).to(torch.int64)  # 1 - v is uniform on (0, 1]
        positions = gaps.cumsum_(0).add_(last)
        pieces.append(positions)
        last = positions[-1]
    positions = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return positions[: int(torch.searchsorted(positions, n))]


def keep_multiplier(shape: torch.Size, p: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """The dense dropout multiplier of the same draw: 0 at `dropped_positions`, 1 / (1 - p) elsewhere."""
    keep = torch.full((shape.numel(),), 1.0 / (1.0 - p), dtype=dtype, device=device)
    return keep.index_fill_(0, dropped_positions(shape.numel(), p, device), 0.0).view(shape)


def _dropped(rows: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """A copy of `rows` [n, d] with the elements at the flat indices `dropped` set to 0."""
    out = rows.clone(memory_format=torch.contiguous_format)
    out.view(-1).index_fill_(0, dropped, 0.0)
    return out


class _LoraProjection(torch.autograd.Function):
    """x W^T + b + s ((x * keep) A^T) B^T / (1 - p), with W and b frozen; keep drops each element of
    x with probability p.

    No mask the size of x is built or kept: the forward zeroes the dropped elements of a copy of x,
    autograd keeps their indices (about p of the elements), and the backward adds the adapter's
    input gradient everywhere and takes it back at those indices. The 1 / (1 - p) is folded into the
    rank-r side (low, grad A) and the alpha of the products, where it costs nothing."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float, p: float) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        dropped = dropped_positions(rows.numel(), p, x.device) if p > 0 else None
        low = F.linear(rows if dropped is None else _dropped(rows, dropped), lora_a)  # [n, r]
        if dropped is not None:
            low.mul_(1.0 / (1.0 - p))
        out = F.linear(rows, weight, bias).addmm_(low, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x, dropped, low, weight, lora_a, lora_b)
        ctx.scaling, ctx.kept = scaling, 1.0 / (1.0 - p)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, dropped, low, weight, lora_a, lora_b = ctx.saved_tensors
        rows, grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        # the rank-r products in the layouts CPU BLAS runs 2-3x faster: [n, out] x [r, out]^T, and
        # grad B as the transpose of [r, n] x [n, out]
        grad_low = F.linear(grad, lora_b.t().contiguous()).mul_(ctx.scaling)  # [n, r]
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ weight).addmm_(grad_low, lora_a, alpha=ctx.kept)
            if dropped is not None:  # a dropped element passed nothing to the adapter: its share back
                token = dropped // rows.shape[1]
                feature = dropped - token * rows.shape[1]
                share = torch.einsum("kr,kr->k", grad_low.index_select(0, token),
                                     lora_a.t().contiguous().index_select(0, feature))
                grad_x.view(-1).index_add_(0, dropped, share, alpha=-ctx.kept)
            grad_x = grad_x.view_as(x)
        if ctx.needs_input_grad[3]:
            grad_a = grad_low.t() @ (rows if dropped is None else _dropped(rows, dropped))
            if dropped is not None:
                grad_a.mul_(ctx.kept)
        if ctx.needs_input_grad[4]:
            grad_b = (low.t() @ grad).mul_(ctx.scaling).t()
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
            layer.__dict__.pop("forward", None)  # the instance attribute; the class's forward shows again


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
