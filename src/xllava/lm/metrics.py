"""Held-out bits per character: the code length of a text under the model, divided by its length.

Per character rather than per token, so that the base and the expanded tokenizer (which cut the
same text into very different numbers of tokens) compare fairly. Each paragraph is scored as
`EOS t1 .. tn`: the EOS stands for "a document starts", and every token of the text is predicted,
the first one included. Long paragraphs are scored in windows of max_len tokens, each window
carrying the token before it as context, so every text token is predicted exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

LN2 = math.log(2.0)


def _windows(ids: list[int], max_len: int) -> list[tuple[list[int], int]]:
    """(inputs, n_targets): inputs[0] is context, inputs[1:] are scored."""
    out = []
    for s in range(1, len(ids), max_len - 1):
        out.append((ids[s - 1 : s - 1 + max_len], len(ids[s : s - 1 + max_len])))
    return out


@torch.no_grad()
def sequence_bits(model, sequences: Sequence[Sequence[int]], batch_size: int = 8, max_len: int = 512,
                  pad_id: int = 0) -> list[float]:
    """Sum of -log2 p(token | tokens before) over positions 1.. of each sequence."""
    model.eval()
    device = next(model.parameters()).device
    pieces = [(i, w, n) for i, seq in enumerate(sequences) for w, n in _windows(list(seq), max_len)]
    pieces.sort(key=lambda x: len(x[1]))  # similar lengths together: little padding in evaluation
    bits = [0.0] * len(sequences)
    for b in range(0, len(pieces), batch_size):
        chunk = pieces[b : b + batch_size]
        width = max(len(w) for _, w, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (_, w, _) in enumerate(chunk):
            ids[j, : len(w)] = torch.tensor(w)
            mask[j, : len(w)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:].to(device)
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask[:, 1:].to(device)
        for j, (i, _, n) in enumerate(chunk):
            bits[i] += float(nll[j, :n].sum()) / LN2
    return bits


def bits_per_character(model, tokenizer, texts: Sequence[str], batch_size: int = 8, max_len: int = 512) -> dict:
    """{"bpc", "bits", "chars", "tokens", "texts"} of the texts under the model."""
    if not texts:
        raise ValueError("bits_per_character: no texts")
    eos = tokenizer.eos_token_id
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    bits = sequence_bits(model, [[eos, *ids] for ids in encoded], batch_size, max_len, pad)
    chars = sum(len(t) for t in texts)
    return {"bpc": sum(bits) / chars, "bits": sum(bits), "chars": chars,
            "tokens": sum(len(ids) for ids in encoded), "texts": len(texts)}


def bpc_table(model, tokenizer, heldout: dict[str, list[str]], batch_size: int = 8, max_len: int = 512) -> dict:
    return {lang: bits_per_character(model, tokenizer, texts, batch_size, max_len) for lang, texts in heldout.items()}
