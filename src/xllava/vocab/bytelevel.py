"""Splice pieces into a byte-level BPE `tokenizer.json` (GPT-2 style: SmolLM2, Llama-3, Qwen) as
real merges that the BPE reaches.

A BPE encodes a pre-token by applying, again and again, the lowest-ranked merge among adjacent
symbols. Merges appended after the base ones therefore fire only once no base merge applies, on
the segmentation the base (plus the merges added before) has produced. Appending the merge
"a b" is useful only if that segmentation actually contains "a" next to "b"; naive splicing of
another BPE's merge list leaves "rank-dead" tokens whose merge never fires.

So each piece is built constructively: segment its byte string with the current merge table,
then append the merge of the first two symbols, re-segment, and repeat until the piece is one
symbol. Prefixes that did not exist become tokens too ("scaffolding"; most are a Hangul lead
byte plus one continuation byte, shared by 64 syllables). By construction every added token
comes out whole when its own bytes are encoded, and a merge whose left symbol holds a byte of
the target script cannot fire in text without that script, so English and Chinese tokenise
exactly as before. The audit in xllava.vocab.metrics checks all this on the real library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

from tokenizers import Tokenizer

from xllava.vocab.ids import check_ids_kept, next_free_id, pin_added_tokens
from xllava.vocab.learn import SPACE


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by ByteLevel: printable Latin-1
    bytes map to themselves, the other 68 bytes to U+0100 onwards in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


def to_bytelevel(text: str) -> str:
    return "".join(byte_to_char()[b] for b in text.encode("utf-8"))


def from_bytelevel(symbol: str) -> str | None:
    """The text a byte-level token stands for, or None when it holds part of a character."""
    try:
        return bytes(char_to_byte()[c] for c in symbol).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def is_bytelevel(tok_json: dict) -> bool:
    def has(node: dict | None) -> bool:
        if not node:
            return False
        if node.get("type") == "ByteLevel":
            return True
        return any(has(n) for n in node.get("pretokenizers", []) + node.get("decoders", []))

    return tok_json.get("model", {}).get("type") == "BPE" and (has(tok_json.get("pre_tokenizer")) or has(tok_json.get("decoder")))


class MergeTable:
    """The merges of a BPE model and the segmentation they produce, as the tokenizers library
    computes it: lowest rank first, leftmost on ties."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.rank: dict[tuple[str, str], int] = {}
        for i, m in enumerate(self.merges):
            self.rank.setdefault(m, i)

    def segment(self, symbols: list[str]) -> list[str]:
        parts = list(symbols)
        while len(parts) > 1:
            best_rank, best_i = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_i = r, i
            if best_rank is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        return parts

    def add_merge(self, a: str, b: str, next_id: int) -> int | None:
        """Append merge a+b; returns the new token id, or None if a+b was already a token."""
        self.rank.setdefault((a, b), len(self.merges))
        self.merges.append((a, b))
        if a + b in self.vocab:
            return None
        self.vocab[a + b] = next_id
        return next_id


@dataclass
class Added:
    """One token the splice added."""

    id: int
    token: str  # as it is stored in the vocabulary (byte-level characters, or "▁" pieces)
    text: str | None  # the text it stands for; None for part of a character
    kind: str  # "piece" (asked for) or "scaffold" (a prefix needed to build a piece)


@dataclass
class SpliceResult:
    tokenizer_json: dict
    added: list[Added]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def n_added(self) -> int:
        return len(self.added)


def merges_of(model: dict) -> list[tuple[str, str]]:
    # tokenizers >= 0.20 writes [a, b] pairs; older files "a b" strings
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]


def splice_bytelevel(tok_json: dict, pieces: list[str], max_added: int | None = None) -> SpliceResult:
    """Add each piece ("▁" = space) to a byte-level BPE tokenizer.json as real merges."""
    if not is_bytelevel(tok_json):
        raise ValueError("splice_bytelevel needs a byte-level BPE tokenizer.json (ByteLevel pre-tokenizer)")
    model = tok_json["model"]
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ValueError("BPE models with subword prefixes/suffixes are not supported")
    base = Tokenizer.from_str(json.dumps(tok_json))
    pinned = pin_added_tokens(tok_json)  # added tokens keep their ids (xllava.vocab.ids)
    table = MergeTable(pinned["model"]["vocab"], merges_of(model))
    next_id = next_free_id(tok_json)
    added: list[Added] = []
    skipped = {"already_a_token": 0, "split_by_pre_tokenizer": 0}
    n_pieces = 0
    for piece in pieces:
        if max_added is not None and n_pieces >= max_added:
            break
        text = piece.replace(SPACE, " ")
        normalized = base.normalizer.normalize_str(text) if base.normalizer else text
        chunks = base.pre_tokenizer.pre_tokenize_str(normalized) if base.pre_tokenizer else [(normalized, None)]
        if len(chunks) != 1:  # the pre-tokenizer cuts it apart, so no merge could ever build it
            skipped["split_by_pre_tokenizer"] += 1
            continue
        target = chunks[0][0]
        if target in table.vocab:
            skipped["already_a_token"] += 1
            continue
        seg = table.segment(list(target))
        while len(seg) > 1:
            new_id = table.add_merge(seg[0], seg[1], next_id)
            if new_id is not None:
                token = seg[0] + seg[1]
                kind = "piece" if token == target else "scaffold"
                added.append(Added(new_id, token, from_bytelevel(token), kind))
                next_id += 1
            seg = table.segment(list(target))
        n_pieces += 1
    out = json.loads(json.dumps(tok_json))
    out["model"]["vocab"] = table.vocab
    out["model"]["merges"] = [list(m) for m in table.merges]
    check_ids_kept(tok_json, out)
    return SpliceResult(out, added, skipped)
