"""Vocabulary expansion: learn target-language pieces, splice them as real merges (byte-level BPE)
or pieces (SentencePiece BPE), resize and initialise the embeddings, measure the tokenizers.

The names below are imported lazily so that `xllava vocab --help` does not load torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xllava.vocab.config import VocabConfig
    from xllava.vocab.stage import run_vocab_stage
    from xllava.vocab.table import render_markdown

__all__ = ["VocabConfig", "run_vocab_stage", "render_markdown"]
_WHERE = {"VocabConfig": "config", "run_vocab_stage": "stage", "render_markdown": "table"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"xllava.vocab.{_WHERE[name]}"), name)
    raise AttributeError(name)
