"""The training forward pass: LLaVA's own computation, minus the work that no label needs.

`LlavaForConditionalGeneration.forward` runs the tower on every sample and the LM head over the
full vocabulary at every position. Here the tower output may come from the feature cache, and the
LM head runs only at positions whose next token carries a label (in instruction data most
positions are image and prompt tokens, and the vocabulary dominates the cost for small LLMs). For
Llama-layout decoders the last layer too runs only there (xllava.train.supervised_tail). And a
right-padded batch goes to the decoder without its padding mask: under causal attention no real
token can attend to a later pad, so only the pads' own outputs change, and no label reads those.
Without a mask torch's attention takes its causal kernel, which skips the blocks above the diagonal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlavaForConditionalGeneration

from xllava.train.features import select_features
from xllava.train.labels import IGNORE
from xllava.train.padding_free import PackedRow, pack_rows, packs
from xllava.train.supervised_tail import supervised_tail_logits, supports_supervised_tail


def mask_for_decoder(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """None where every row is real tokens then pads (causal attention alone gives every real
    token the same view); the mask itself otherwise (left padding, or holes)."""
    mask = attention_mask.bool()
    return None if bool((mask[:, 1:] <= mask[:, :-1]).all()) else attention_mask


def llava_loss(
    model: LlavaForConditionalGeneration,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    image_features: torch.Tensor | None = None,
    supervised_logits_only: bool = True,
) -> torch.Tensor:
    inner = model.model
    embeds = inner.get_input_embeddings()(input_ids)
    if pixel_values is not None:
        image_features = select_features(model, pixel_values.to(embeds.dtype))
    if image_features is not None:
        projected = inner.multi_modal_projector(image_features.to(embeds.dtype))
        slots = (input_ids == model.config.image_token_id).unsqueeze(-1)
        if slots.sum() * embeds.shape[-1] != projected.numel():
            raise ValueError(
                f"image tokens ({int(slots.sum())}) and image features ({projected.shape[:2]}) do not match"
            )
        # under autocast the projector returns bf16 while the embeddings stay fp32: scatter in theirs
        embeds = embeds.masked_scatter(slots, projected.to(embeds.dtype))
    if (labels != IGNORE).logical_and(attention_mask == 0).any():
        raise ValueError("a label sits on a padded position")
    decoder = inner.language_model
    if packs(decoder):  # inside xllava.train.padding_free: the real tokens as one row
        row = pack_rows(embeds, labels, attention_mask, IGNORE)
        return _supervised_loss(model, row.embeds, None, row.targets[None, :-1], supervised_logits_only, row)
    return _supervised_loss(model, embeds, mask_for_decoder(attention_mask), labels[:, 1:], supervised_logits_only)


def _supervised_loss(
    model: LlavaForConditionalGeneration,
    embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    targets: torch.Tensor,
    supervised_logits_only: bool,
    packed: PackedRow | None = None,
) -> torch.Tensor:
    """The mean next-token loss over `targets` [batch, seq - 1] (the label of the token after each
    position, IGNORE where none)."""
    decoder = model.model.language_model
    keep = targets != IGNORE
    if supervised_logits_only and keep.any() and supports_supervised_tail(decoder):
        at = F.pad(keep, (0, 1), value=False)  # the last position predicts nothing
        logits = supervised_tail_logits(decoder, model.lm_head, embeds, attention_mask, at, packed)
        return F.cross_entropy(logits.float(), targets[keep])
    decoder_kwargs = packed.decoder_kwargs() if packed is not None else {}
    hidden = decoder(inputs_embeds=embeds, attention_mask=attention_mask, **decoder_kwargs).last_hidden_state
    hidden = hidden[:, :-1]
    if supervised_logits_only:
        logits = model.lm_head(hidden[keep])
        return F.cross_entropy(logits.float(), targets[keep])
    logits = model.lm_head(hidden)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
