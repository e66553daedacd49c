"""Splice pieces into a SentencePiece-style BPE `tokenizer.json` (Gemma-3, Mistral, Llama-2 saved
without `tokenizer.model`): "▁" stands for a space, symbols are characters, a character outside
the vocabulary falls back to its UTF-8 bytes (`<0xNN>` tokens that no merge joins).

The HF BPE applies ranked merges as for byte-level BPE, so pieces are built the same constructive
way (xllava.vocab.bytelevel.MergeTable): first every character of the piece becomes a vocabulary
entry (a character in the vocabulary is a starting symbol, no merge needed), then the merge of the
first two symbols of the piece's current segmentation is appended until the piece is one symbol.
New merges rank after all base merges. A merge is only appended when its result holds a character
of the target script, so it can never fire on text without that script: such tokenizers often have
no pre-tokenizer (Mistral tokenises a whole line as one word), and a merge like "▁" + "'" would
otherwise change English.
"""

from __future__ import annotations

import json
import re
import unicodedata

from xllava.vocab.bytelevel import Added, MergeTable, SpliceResult, is_bytelevel, merges_of
from xllava.vocab.ids import check_ids_kept, next_free_id, pin_added_tokens

SPACE = "▁"


def is_spm_json(tok_json: dict) -> bool:
    """A BPE with byte fallback and no byte-level pre-tokenizer."""
    model = tok_json.get("model", {})
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and not is_bytelevel(tok_json)


def splice_spm_json(tok_json: dict, pieces: list[str], script: str, max_added: int | None = None) -> SpliceResult:
    """Add each piece ("▁" = space) to a SentencePiece-style BPE tokenizer.json as characters plus merges."""
    if not is_spm_json(tok_json):
        raise ValueError("splice_spm_json needs a BPE tokenizer.json with byte_fallback and no ByteLevel step")
    model = tok_json["model"]
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ValueError("BPE models with subword prefixes/suffixes are not supported")
    pattern = re.compile(script)
    pinned = pin_added_tokens(tok_json)
    table = MergeTable(pinned["model"]["vocab"], merges_of(model))
    next_id = next_free_id(tok_json)
    added: list[Added] = []
    skipped = {"already_a_token": 0, "merge_outside_script": 0}
    n_pieces = 0
    for raw in pieces:
        if max_added is not None and n_pieces >= max_added:
            break
        piece = unicodedata.normalize("NFC", raw)
        if piece in table.vocab:
            skipped["already_a_token"] += 1
            continue
        for ch in dict.fromkeys(piece):
            if ch not in table.vocab:
                if not pattern.search(ch):  # a new non-script character would change other text
                    break
                table.vocab[ch] = next_id
                added.append(Added(next_id, ch, ch.replace(SPACE, " "), "piece" if ch == piece else "scaffold"))
                next_id += 1
        else:
            seg = table.segment(list(piece))
            while len(seg) > 1:
                if not pattern.search(seg[0] + seg[1]):
                    skipped["merge_outside_script"] += 1
                    break
                new_id = table.add_merge(seg[0], seg[1], next_id)
                if new_id is not None:
                    token = seg[0] + seg[1]
                    added.append(Added(new_id, token, token.replace(SPACE, " "), "piece" if token == piece else "scaffold"))
                    next_id += 1
                seg = table.segment(list(piece))
            n_pieces += 1
            continue
        skipped["merge_outside_script"] += 1
    out = json.loads(json.dumps(tok_json))
    out["model"]["vocab"] = table.vocab
    out["model"]["merges"] = [list(m) for m in table.merges]
    check_ids_kept(tok_json, out)
    return SpliceResult(out, added, skipped)
