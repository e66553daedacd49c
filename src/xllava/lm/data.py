"""Text for the `lm` stage: per-language training and held-out text, the mix, the parallel
sequences, and packing into fixed-length blocks.

Packing layout. The epoch's documents form one stream `EOS d1 EOS d2 EOS d3 ...` cut into blocks
of seq_len tokens. Position ids restart at every EOS (and at every block start), and training
passes no attention mask, so transformers builds a per-document causal mask from the position ids:
no token attends across a document boundary. Every token of a block is a label; the EOS that
opens a document is predicted from the end of the document before it (the "document ends here"
prediction, computed in that document's own context), and the EOS predicts the first token of its
document from nothing else. The first token of each block has no target (causal shift), so a
document cut by a block boundary loses one prediction and its continuation restarts at position 0:
both are counted in `PackedData` and reported.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xllava.corpus import sample
from xllava.corpus.readers import read_corpus, split_texts
from xllava.lm.config import LmConfig


@dataclass
class LmTexts:
    train: dict[str, list[str]]  # language (or "parallel") -> documents
    heldout: dict[str, list[str]]  # language -> paragraphs for bits per character


def _capped(texts: list[str], max_chars: int | None) -> list[str]:
    if max_chars is None:
        return texts
    kept, total = [], 0
    for t in texts:
        if total + len(t) > max_chars:
            break
        kept.append(t)
        total += len(t)
    return kept


def parallel_documents(pairs: Sequence[tuple[str, str]], records: Sequence[dict]) -> list[str]:
    """Both orders of every aligned pair, one sequence each: "a\\nb" and "b\\na"."""
    docs = []
    for a, b in pairs:
        for r in records:
            if r.get(a) and r.get(b):
                docs.append(f"{r[a]}\n{r[b]}")
                docs.append(f"{r[b]}\n{r[a]}")
    return docs


def load_texts(cfg: LmConfig, root: Path | None = None) -> LmTexts:
    """Training documents per language (and parallel), and held-out paragraphs per language.

    The LibreOffice sample gives both from its page-level split; a user source is split by content
    hash. Nothing here reads a held-out LibreOffice page for training, nor a training paragraph
    that is also held out (the held-out split is applied before eval_limit)."""
    train: dict[str, list[str]] = {}
    heldout: dict[str, list[str]] = {}
    held_all: set[str] = set()
    for src in cfg.sources:
        if src.lang not in cfg.languages:
            raise ValueError(f"lm.sources: language {src.lang!r} ({src.path}) is not in lm.languages")
        path = Path(src.path)
        if not path.is_absolute() and root is not None:
            path = root / path
        tr, held = split_texts(read_corpus(path, src.text_field, src.lang_filter), cfg.heldout_percent)
        train.setdefault(src.lang, []).extend(tr)
        heldout.setdefault(src.lang, []).extend(held)
    for lang in cfg.languages:
        if lang not in train:
            if lang not in sample.LANGS:
                raise ValueError(f"lm.languages: {lang!r} has no lm.sources entry and is not in the "
                                 f"LibreOffice sample ({sample.LANGS})")
            train[lang] = sample.texts(lang, "train")
            heldout[lang] = sample.texts(lang, "heldout")
        # the sample repeats stock paragraphs ("Enter 키를 눌러 ...") on train and held-out pages alike;
        # training on them would make the held-out figures measure memorisation
        seen = set(heldout[lang])
        held_all |= seen
        train[lang] = _capped([t for t in train[lang] if t not in seen], cfg.max_chars_per_language)
        if cfg.eval_limit is not None:
            heldout[lang] = heldout[lang][: cfg.eval_limit]
        if not train[lang]:
            raise ValueError(f"lm: no training text for language {lang!r}")
    if cfg.parallel:
        records = [r for r in sample.load_records() if r["split"] == "train"
                   and not any(r.get(lang) in held_all for lang in sample.LANGS)]
        train["parallel"] = parallel_documents(cfg.parallel_pairs, records)
        if not train["parallel"]:
            raise ValueError(f"lm.parallel: no aligned records for pairs {cfg.parallel_pairs}")
    return LmTexts(train, heldout)


def tokenize(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def mix_documents(docs: dict[str, list[list[int]]], weights: dict[str, float], tokens_per_epoch: int | None,
                  seed: int) -> tuple[list[list[int]], dict[str, int]]:
    """Documents of one epoch, shuffled, with each key's share of tokens close to its weight.

    Without tokens_per_epoch the budget is the largest one that repeats no document (the scarcest
    key, relative to its weight, is used once); with it, keys cycle through their documents."""
    rng = random.Random(seed)
    avail = {k: sum(len(d) + 1 for d in docs[k]) for k in weights}  # +1: the EOS before each
    for k, n in avail.items():
        if n == 0:
            raise ValueError(f"lm: no tokens for {k!r}")
    total = tokens_per_epoch if tokens_per_epoch is not None else min(avail[k] / w for k, w in weights.items())
    chosen: list[list[int]] = []
    counts: dict[str, int] = {}
    for k, w in weights.items():
        target, order, got, i = round(total * w), list(range(len(docs[k]))), 0, 0
        rng.shuffle(order)
        while got < target:
            d = docs[k][order[i % len(order)]]
            chosen.append(d)
            got += len(d) + 1
            i += 1
        counts[k] = got
    rng.shuffle(chosen)
    return chosen, counts


@dataclass
class PackedData:
    blocks: list[list[int]]
    positions: list[list[int]]
    stream_tokens: int  # EOS + document tokens of the epoch
    dropped_tokens: int = 0  # the shorter last block, when the batch cannot hold it without padding
    split_documents: int = 0  # documents cut by a block boundary (they continue at position 0)
    extra: dict = field(default_factory=dict)


def pack(docs: Sequence[Sequence[int]], eos_id: int, seq_len: int, keep_tail: bool = True) -> PackedData:
    """`EOS d1 EOS d2 ...` in blocks of seq_len, position ids restarting at each EOS and block."""
    stream: list[int] = []
    pos: list[int] = []
    starts = set()
    for d in docs:
        starts.add(len(stream))
        stream.append(eos_id)
        stream.extend(d)
        pos.extend(range(len(d) + 1))
    blocks, positions, split = [], [], 0
    for s in range(0, len(stream), seq_len):
        block = stream[s : s + seq_len]
        p = pos[s : s + seq_len]
        if p[0] != 0:  # a document continuing from the block before: restart its positions
            split += 1
            first_eos = next((i for i, x in enumerate(p) if x == 0), len(p))
            p = list(range(first_eos)) + p[first_eos:]
        blocks.append(block)
        positions.append(p)
    dropped = 0
    if blocks and len(blocks[-1]) < seq_len and not keep_tail:
        dropped = len(blocks.pop())
        positions.pop()
    return PackedData(blocks, positions, len(stream), dropped, split)


class PackedDataset(torch.utils.data.Dataset):
    def __init__(self, packed: PackedData):
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.tensor(self.packed.blocks[i], dtype=torch.long)
        return {"input_ids": ids, "position_ids": torch.tensor(self.packed.positions[i], dtype=torch.long),
                "labels": ids.clone()}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack equal-length blocks. No attention mask: the position ids carry the document boundaries."""
    lengths = {int(it["input_ids"].shape[0]) for it in items}
    if len(lengths) != 1:
        raise ValueError(f"packed blocks of different lengths {sorted(lengths)} in one batch (would need padding)")
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def build_dataset(cfg: LmConfig, texts: LmTexts, tokenizer) -> tuple[PackedDataset, dict]:
    """The packed training set of one epoch and its figures (tokens per key, blocks, dropped)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("lm: the tokenizer has no eos_token, needed between packed documents")
    weights = cfg.weights()
    docs = {k: tokenize(tokenizer, texts.train[k]) for k in weights}
    chosen, counts = mix_documents(docs, weights, cfg.tokens_per_epoch, cfg.seed)
    packed = pack(chosen, eos, cfg.seq_len, keep_tail=cfg.per_process()[0] == 1)
    info = {"tokens_per_key": counts, "stream_tokens": packed.stream_tokens, "blocks": len(packed.blocks),
            "documents": len(chosen), "dropped_tail_tokens": packed.dropped_tokens,
            "split_documents": packed.split_documents,
            "available_chars": {k: sum(map(len, texts.train[k])) for k in weights}}
    return PackedDataset(packed), info
