"""Model FLOPs of one LLaVA training sample, and GPU peak rates: the one formula that both the plan
(`xllava scale plan`) and the GPU benchmark (bench/gpu_train.py, for MFU) use.

Counted (multiply-add = 2 FLOPs), per sample of s tokens of which n_img are image tokens and
n_sup carry a label:
  forward  = 2 * P_decoder * s                  decoder linears (q,k,v,o,gate,up,down), all tokens
           + 2 * n_layers * h * s^2             attention scores and values, causal (half of s^2)
           + 2 * P_projector * n_img            projector, image tokens only
           + 2 * h * V * n_sup                  LM head at supervised positions only (xllava.train.loss)
  backward = 2 x forward of each part whose weights train (input and weight gradients)
           + 1 x forward of each frozen part the gradient passes through (input gradients only)
           + 6 * P_lora * s                     LoRA adapters (forward + backward), when present
Not counted: the vision tower (its features come from the cache), norms, activations, softmax,
embedding lookups, and the recomputation of gradient checkpointing (model FLOPs, not hardware
FLOPs: MFU as in the PaLM paper, with the causal discount for attention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# dense bf16 tensor-core peaks (no sparsity), FLOP/s, matched on the device name
PEAK_BF16: dict[str, float] = {
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,  # SXM
    "A100": 312.0e12,
    "A6000": 154.8e12,
    "L40S": 362.1e12,
}


@dataclass(frozen=True)
class FlopShape:
    """What the FLOP count needs to know about a LLaVA model."""

    decoder_params: int  # weights of the decoder linears (all layers)
    projector_params: int
    lora_params: int  # 0 without LoRA
    n_layers: int
    hidden: int
    vocab: int


def sample_flops(shape: FlopShape, tokens: int, image_tokens: int, supervised: int, llm_mode: str) -> float:
    """Training FLOPs of one sample. llm_mode: frozen (projector trains), lora, or full."""
    decoder = 2.0 * shape.decoder_params * tokens
    attention = 2.0 * shape.n_layers * shape.hidden * tokens * tokens
    projector = 2.0 * shape.projector_params * image_tokens
    head = 2.0 * shape.hidden * shape.vocab * supervised
    llm_trains = llm_mode == "full"
    forward = decoder + attention + projector + head
    backward = (
        (2.0 if llm_trains else 1.0) * (decoder + head)
        + 2.0 * attention  # no weights: input gradients of Q, K, V
        + 2.0 * projector  # the projector trains in every stage
    )
    adapters = 6.0 * shape.lora_params * tokens if llm_mode == "lora" else 0.0
    return forward + backward + adapters


def peak_flops(device_name: str | None = None) -> tuple[str, float | None]:
    """(name, dense bf16 peak) of a GPU by name, or of the current CUDA device; None if unknown."""
    if device_name is None:
        if not torch.cuda.is_available():
            return "cpu", None
        device_name = torch.cuda.get_device_name()
    for key, peak in PEAK_BF16.items():  # "H100 PCIe" before "H100"
        if key.lower() in device_name.lower():
            return device_name, peak
    return device_name, None
