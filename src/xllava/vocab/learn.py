"""Target-language pieces: learned with SentencePiece from NFC text, or read from a given vocabulary.

Pieces use SentencePiece's convention, "▁" for a space, whatever tokenizer they are spliced
into later. The order matters: a piece's position is its priority when it is spliced, so
single characters come first (every longer piece is built from them), then the learned order
(BPE merge order, or unigram score).
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

SPACE = "▁"


def learn_spm(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 0.9995,
    seed: int = 0,
) -> bytes:
    """A SentencePiece model (serialised proto) learned on NFC text, with the settings of
    Llama-style models: identity normalisation (NFKC would rewrite Korean compatibility jamo),
    digits split, whitespace kept as it is."""
    lines = [unicodedata.normalize("NFC", t) for t in texts if t.strip()]
    if not lines:
        raise ValueError("no text to learn pieces from")
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        normalization_rule_name="identity",
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16,
        hard_vocab_limit=False,  # a small corpus may not support the full size; take what it gives
        num_threads=2,
        minloglevel=2,
    )
    return buf.getvalue()


def pieces_of_model(model: bytes) -> list[str]:
    """The normal pieces of a SentencePiece model, single characters first, then by score."""
    sp = spm.SentencePieceProcessor(model_proto=model)
    normal = [
        (sp.id_to_piece(i), sp.get_score(i), i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))
    ]
    chars = [p for p, _, _ in normal if len(p) == 1]
    longer = [p for p, _, _ in sorted(normal, key=lambda x: (-x[1], x[2])) if len(p) > 1]
    return chars + longer


def read_pieces_file(path: Path) -> list[str]:
    """A given vocabulary: one piece per line, optionally followed by a tab and a score.
    Lines like "[CLS]" or "<unk>" (special tokens of the source vocabulary) are skipped."""
    out: list[str] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            piece = line.rstrip("\r\n").split("\t", 1)[0]
            if not piece:
                continue
            if piece != unicodedata.normalize("NFC", piece):
                raise ValueError(f"{path}:{lineno}: piece {piece!r} is not NFC-normalised")
            if re.fullmatch(r"\[[A-Z]+\]|<[^>]+>", piece):
                continue
            out.append(piece)
    singles = [p for p in out if len(p.replace(SPACE, "")) <= 1]
    return list(dict.fromkeys(singles + out))


def filter_pieces(pieces: Iterable[str], script: str) -> list[str]:
    """Pieces that contain the target script, keep order, drop duplicates."""
    pattern = re.compile(script)
    return [p for p in dict.fromkeys(pieces) if pattern.search(p)]
