"""Padding-free micro-batches: a micro-batch's samples packed into one row, each attending only to itself.

A right-padded micro-batch of 4 samples runs every projection, norm and MLP over its padding rows
too. Packed, the decoder sees only real tokens: the samples follow each other in one row, their
position ids restart at 0, and attention runs once per sample (causal, on that sample's own slice),
so every output and gradient equals the padded batch's up to rounding (tests/test_padding_free.py).

HF transformers packs this way only for flash-attention kernels (which need a CUDA device); with
torch's sdpa it builds one block-diagonal mask over the whole row, which makes attention cost grow
with the square of the row, not of each sample. So here the attention is a function registered with
transformers' AttentionInterface under `PACKED_SDPA`: per sample, transformers' own sdpa call. Only
for decoders whose layers all use full causal attention (no sliding window, which would need the
window inside each slice), and only while `padding_free` holds the model: outside it the config says
sdpa again, and a saved model never names the packed function. TRL refuses padding-free training for
vision-language data; here it is the default (`padding_free` in a stage's config).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

PACKED_SDPA = "xllava_packed_sdpa"


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    sample_bounds: tuple[int, ...] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, run on each sample's slice [start, end) of a packed row
    (`sample_bounds`: 0, end of sample 1, end of sample 2, ..., row length); a call without bounds
    is plain sdpa. query, key, value: [1, heads, row, head_dim]; returns [1, row, heads, head_dim]."""
    if sample_bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)
    slices = [
        sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                               None, is_causal=True, **kwargs)[0]
        for start, end in zip(sample_bounds[:-1], sample_bounds[1:], strict=True)
    ]
    return torch.cat(slices, dim=1), None


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)


def full_causal_layers(config) -> bool:
    """Whether every layer of the decoder config attends to all earlier tokens (no sliding window)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return all(kind == "full_attention" for kind in layer_types)
    return getattr(config, "sliding_window", None) is None or not getattr(config, "use_sliding_window", True)


def packs(decoder: torch.nn.Module) -> bool:
    """Whether `decoder` (the LLM's base model) runs packed rows now, i.e. is inside `padding_free`."""
    return getattr(decoder.config, "_attn_implementation", None) == PACKED_SDPA


def language_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The LLM's base model (e.g. LlamaModel) inside a LLaVA model, peft-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.language_model


@contextmanager
def padding_free(model: torch.nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within the block the attention of `model`'s LLM (a LLaVA model, peft-wrapped or not) is
    `PACKED_SDPA`, where its config says sdpa and its layers are all full causal attention; yields
    whether it is (eager and flash_attention_2 keep padded batches)."""
    config = language_decoder(model).config
    switch = enabled and config._attn_implementation == "sdpa" and full_causal_layers(config)
    if switch:
        config._attn_implementation = PACKED_SDPA
    try:
        yield switch
    finally:
        if switch:
            config._attn_implementation = "sdpa"


@dataclass
class PackedRow:
    embeds: torch.Tensor  # [1, tokens, hidden]: every real token of the micro-batch, sample after sample
    targets: torch.Tensor  # [tokens]: the label each token predicts (the next one), IGNORE where none
    position_ids: torch.Tensor  # [1, tokens]: each sample's positions from 0
    sample_of: torch.Tensor  # [tokens]: which sample each token belongs to
    bounds: tuple[int, ...]  # 0, then where each sample ends

    def decoder_kwargs(self) -> dict:
        return {"position_ids": self.position_ids, "sample_bounds": self.bounds}


def pack_rows(embeds: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor, ignore: int) -> PackedRow:
    """The real tokens of a padded micro-batch (embeds [batch, seq, hidden], labels and mask
    [batch, seq]) as one row. Each token's target is the next token's label within its own sample."""
    real = attention_mask.bool()
    lengths = real.sum(1)
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore)
    positions = real.cumsum(1) - 1  # the rank among the sample's real tokens
    sample = torch.arange(real.shape[0], device=real.device)[:, None].expand_as(real)
    ends = lengths.cumsum(0)
    return PackedRow(
        embeds=embeds[real][None],
        targets=targets[real],
        position_ids=positions[real][None],
        sample_of=sample[real],
        bounds=(0, *ends.tolist()),
    )
