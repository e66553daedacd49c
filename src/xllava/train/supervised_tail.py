"""The last decoder layer, the final norm and the LM head, run only where a label is.

A label needs the last layer's output at its own position only. The last layer's keys and values are
still needed at every position (the labelled tokens attend to them), but its queries, attention
output, MLP, final norm and LM head are not. In instruction data most positions carry no label (the
tiny recipe: 6%), so for a 2-layer LM this skips close to half of a training step's matrix work; for
SmolLM2's 30 layers about 3% (bench/train_throughput.py measures both). The loss and every gradient
equal the full forward's (tests/test_supervised_tail.py).

Written by hand because no library does this: HF runs every layer at every position. Only for the
decoder layouts in DECODER_ROTATE_HALF (Llama's: pre-norm attention and MLP, rotary queries and keys,
full causal attention). For any other layout, a sliding window, or a layer whose weights an engine
shards (FSDP, ZeRO-3), `supports_supervised_tail` is false and the caller takes the full forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers.models.llama import modeling_llama
from transformers.models.qwen2 import modeling_qwen2

from xllava.train.padding_free import PACKED_SDPA, PackedRow

# decoder class name -> the rotate_half its attention's rotary embedding uses (the module's own, not a
# copy). Its apply_rotary_pos_emb rotates queries and keys together; here they sit at different
# positions, and calling it once for each would rotate every tensor twice.
DECODER_ROTATE_HALF: dict[str, Callable] = {
    "LlamaDecoderLayer": modeling_llama.rotate_half,
    "Qwen2DecoderLayer": modeling_qwen2.rotate_half,
}
ATTENTION_IMPLEMENTATIONS = {"sdpa", "eager", PACKED_SDPA}


class _LastLayerReached(Exception):
    """Raised by the hook on the last decoder layer: the layers before it have run."""

    def __init__(self, hidden: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor]):
        super().__init__()
        self.hidden = hidden
        self.position_embeddings = position_embeddings


def supports_supervised_tail(decoder: torch.nn.Module) -> bool:
    """Whether `decoder` (the HF base model of the LLM, e.g. LlamaModel) can take the sparse tail."""
    layers = getattr(decoder, "layers", None)
    if not layers or type(layers[-1]).__name__ not in DECODER_ROTATE_HALF:  # FSDP2 renames the class
        return False
    config = decoder.config
    if getattr(config, "_attn_implementation", None) not in ATTENTION_IMPLEMENTATIONS:
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or []):
        return False
    # ZeRO-3 marks its partitioned parameters; their data is gathered only inside module calls
    return not any(hasattr(p, "ds_id") for p in layers[-1].parameters())


def hidden_before_last_layer(
    decoder: torch.nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None, **decoder_kwargs
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run the HF decoder up to its last layer; return that layer's input and its rotary cos/sin.

    The decoder's own forward builds the mask and position embeddings (so every attention backend
    and transformers version does it its own way); a hook stops it where the last layer starts."""

    def stop(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        raise _LastLayerReached(hidden, kwargs["position_embeddings"])

    handle = decoder.layers[-1].register_forward_pre_hook(stop, with_kwargs=True)
    try:
        decoder(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False, **decoder_kwargs)
    except _LastLayerReached as reached:
        return reached.hidden, reached.position_embeddings
    finally:
        handle.remove()
    raise RuntimeError("the decoder's last layer was never called")


def supervised_tail_logits(
    decoder: torch.nn.Module,
    lm_head: torch.nn.Module,
    embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    keep: torch.Tensor,
    packed: PackedRow | None = None,
) -> torch.Tensor:
    """LM-head logits at the positions where `keep` [batch, seq] is true, in row-major order.

    Equal to `lm_head(decoder(embeds).last_hidden_state)[keep]`, with the last layer's queries,
    attention output, MLP and the head computed at those positions only. For a `packed` row (embeds
    [1, tokens, hidden], xllava.train.padding_free) each token attends within its own sample."""
    decoder_kwargs = packed.decoder_kwargs() if packed is not None else {}
    hidden, (cos, sin) = hidden_before_last_layer(decoder, embeds, attention_mask, **decoder_kwargs)
    layer = decoder.layers[-1]
    attn = layer.self_attn
    rotate_half = DECODER_ROTATE_HALF[type(layer).__name__]

    def rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # [b, heads, n, d]
        return t * cos[:, None] + rotate_half(t) * sin[:, None]

    batch, seq, _ = hidden.shape

    # the kept positions of each row, left-aligned into [batch, most]; the rest point at 0 (unused)
    counts = keep.sum(1)
    most = int(counts.max())
    positions = torch.arange(seq, device=keep.device)
    rank = torch.where(keep, positions, seq + positions).argsort(dim=1)[:, :most]
    valid = torch.arange(most, device=keep.device)[None, :] < counts[:, None]
    rows = torch.where(valid, rank, 0)

    normed = layer.input_layernorm(hidden)
    head_dim = attn.head_dim
    keys = attn.k_proj(normed).view(batch, seq, -1, head_dim).transpose(1, 2)
    values = attn.v_proj(normed).view(batch, seq, -1, head_dim).transpose(1, 2)
    keys = rotary(keys, cos, sin)

    def at_rows(t: torch.Tensor) -> torch.Tensor:  # [b, seq, d] -> [b, most, d]
        return t.expand(batch, -1, -1).gather(1, rows[..., None].expand(-1, -1, t.shape[-1]))

    queries = attn.q_proj(at_rows(normed)).view(batch, most, -1, head_dim).transpose(1, 2)
    queries = rotary(queries, at_rows(cos), at_rows(sin))

    # causal over real tokens; padded query slots see position 0 only, so no row is all masked
    allowed = positions[None, None, :] <= rows[..., None]
    if attention_mask is not None:  # None: right padding, where causal is enough (see xllava.train.loss)
        allowed = allowed & attention_mask.bool()[:, None, :]
    if packed is not None:  # within the query's own sample
        allowed = allowed & (packed.sample_of[None, None, :] == packed.sample_of[rows][..., None])
    allowed = allowed | (~valid[..., None] & (positions == 0)[None, None, :])
    attended = F.scaled_dot_product_attention(
        queries, keys, values,
        attn_mask=allowed[:, None],
        dropout_p=attn.attention_dropout if layer.training else 0.0,
        scale=attn.scaling,
        enable_gqa=queries.shape[1] != keys.shape[1],
    )
    attended = attn.o_proj(attended.transpose(1, 2).reshape(batch, most, -1))
    out = at_rows(hidden) + attended
    out = out + layer.mlp(layer.post_attention_layernorm(out))
    return lm_head(decoder.norm(out[valid]))
