"""Resize a causal LM's input embeddings and output layer for new tokens and initialise the rows.

Strategies:
- `random`: normal(0, initializer_range), as the X-LLaVA paper did;
- `mean`: the mean of the base rows (Hewitt: keeps the new tokens' logits ordinary, so the
  model does not start emitting them);
- `subword_mean` (default): the mean of the rows of the base tokens that spell the new token
  (EEVE, NVIDIA's "meanconst"); for a tied model the one matrix serves both ends.
Rows of the base vocabulary are never touched, so text of the base vocabulary gets exactly the
same logits over the base tokens as before.
"""

from __future__ import annotations

from typing import Literal

import torch

Init = Literal["random", "mean", "subword_mean"]


def _is_tied(model: torch.nn.Module) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def _fill(weight: torch.Tensor, new_ids: list[int], parts: dict[int, list[int]], n_base: int, init: Init,
          std: float, generator: torch.Generator) -> None:
    base = weight[:n_base].float()
    mean = base.mean(dim=0)
    for i in new_ids:
        if init == "random":
            row = torch.randn(weight.shape[1], generator=generator) * std
        elif init == "subword_mean" and parts.get(i):
            row = base[parts[i]].mean(dim=0)
        else:  # "mean", or a token without base pieces
            row = mean
        weight[i] = row.to(weight.dtype)


@torch.no_grad()
def resize_and_init(
    model: torch.nn.Module,
    n_base: int,
    new_ids: list[int],
    parts: dict[int, list[int]],
    init: Init = "subword_mean",
    pad_to_multiple_of: int | None = None,
    seed: int = 0,
) -> dict:
    """Grow the embedding matrices to hold every new id (never shrink: padded rows stay) and
    initialise the new rows. `parts` maps a new id to the base ids that spell it; `n_base` is the
    base tokenizer's size (rows past it are padding and are left out of the means)."""
    rows_before = model.get_input_embeddings().weight.shape[0]
    n_base = min(n_base, rows_before)
    needed = max([rows_before, *(i + 1 for i in new_ids)])
    tied = _is_tied(model)
    if needed > rows_before or pad_to_multiple_of:
        model.resize_token_embeddings(needed, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    generator = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config.get_text_config(), "initializer_range", 0.02))
    _fill(model.get_input_embeddings().weight, new_ids, parts, n_base, init, std, generator)
    if not tied:
        _fill(model.get_output_embeddings().weight, new_ids, parts, n_base, init, std, generator)
    rows_after = model.get_input_embeddings().weight.shape[0]
    # padding rows added by pad_to_multiple_of: the plain mean, never random junk that could win
    fresh = set(new_ids)
    padding = [i for i in range(rows_before, rows_after) if i not in fresh]
    if padding:
        _fill(model.get_input_embeddings().weight, padding, {}, n_base, "mean", std, generator)
        if not tied:
            _fill(model.get_output_embeddings().weight, padding, {}, n_base, "mean", std, generator)
    model.config.get_text_config().vocab_size = rows_after
    return {"rows_before": rows_before, "rows_after": rows_after, "tied": tied, "init": init,
            "initialised": len(new_ids)}
