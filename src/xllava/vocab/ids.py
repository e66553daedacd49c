"""Keep every id of the base tokenizer where it is when pieces are appended to a `tokenizer.json`.

The tokenizers library does not read an added token's id from the file: on load it takes the
model vocabulary's id for that content, or else the next id after the vocabulary. Llama-3 keeps
its 256 special tokens (128000-128255), Qwen3 its 26 and DeepSeek-V3 its 815 outside the BPE
vocabulary, so appending pieces to the vocabulary would move every one of them (and new pieces
would land on ids the trained embedding rows belong to). Writing the added tokens' contents into
the model vocabulary at their own ids pins them; the BPE never produces them from text (no merge
builds them, and added tokens are matched before the model sees the text).
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer


def pin_added_tokens(tok_json: dict) -> dict:
    """A copy whose model vocabulary holds every added token at its id."""
    out = json.loads(json.dumps(tok_json))
    vocab = out["model"]["vocab"]
    taken = {i: t for t, i in vocab.items()}
    for t in out.get("added_tokens", []):
        if t["content"] in vocab:
            continue
        if t["id"] in taken:
            raise ValueError(f"added token {t['content']!r} has id {t['id']}, which the vocabulary gives to "
                             f"{taken[t['id']]!r}")
        vocab[t["content"]] = t["id"]
    return out


def next_free_id(tok_json: dict) -> int:
    """The first id after every id the tokenizer uses (vocabulary and added tokens)."""
    ids = [*tok_json["model"]["vocab"].values(), *(t["id"] for t in tok_json.get("added_tokens", []))]
    return 1 + max(ids, default=-1)


def moved_ids(base: Tokenizer, expanded: Tokenizer) -> list[tuple[str, int, int | None]]:
    """(token, base id, expanded id) for every base token whose id changed, as the library loads them."""
    return [(t, i, expanded.token_to_id(t)) for t, i in base.get_vocab(with_added_tokens=True).items()
            if expanded.token_to_id(t) != i]


def check_ids_kept(base_json: dict, expanded_json: dict) -> None:
    """Raise if loading the expanded tokenizer moves any base token, or puts two tokens on one id."""
    base = Tokenizer.from_str(json.dumps(base_json))
    expanded = Tokenizer.from_str(json.dumps(expanded_json))
    moved = moved_ids(base, expanded)
    if moved:
        raise ValueError(f"{len(moved)} base tokens change id in the expanded tokenizer, e.g. {moved[:3]}")
    vocab = expanded.get_vocab(with_added_tokens=True)
    if len(set(vocab.values())) != len(vocab):
        raise ValueError("the expanded tokenizer gives one id to two tokens")
