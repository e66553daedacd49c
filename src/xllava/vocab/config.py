"""The `vocab` stage's config: where the target-language text comes from, how pieces are learned,
how the new embedding rows start."""

from __future__ import annotations

from typing import Literal

from xllava.strict import Strict

# A piece is added only when it contains a character of the target script, so text without
# that script (English, code) tokenises exactly as before.
SCRIPTS = {
    "ko": r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]",  # jamo, compatibility jamo, syllables
    "zh": r"[\u3400-\u4dbf\u4e00-\u9fff]",
    "ja": r"[\u3040-\u30ff\u4e00-\u9fff]",
}


class VocabConfig(Strict):
    """Expand an LLM's vocabulary for one target language (xllava.vocab)."""

    language: str = "ko"
    # "libreoffice": the shipped ko-en-zh sample (train split); or a .txt, .jsonl or .parquet path
    corpus: str = "libreoffice"
    text_field: str = "text"  # JSONL field holding the text (a string, or LLaVA conversation turns)
    lang_filter: str | None = None  # JSONL: keep records whose `lang` equals this
    heldout_percent: int = 10  # user corpora: share of lines (by content hash) kept for the metrics
    max_train_chars: int | None = None  # cap on the learning text
    # a given vocabulary (one piece per line, "▁" marks a leading space, optional tab + score),
    # used instead of learning one; e.g. KoBERT's vocabulary as in the paper
    pieces_file: str | None = None
    n_pieces: int = 8000  # SentencePiece vocabulary size to learn
    model_type: Literal["bpe", "unigram"] = "bpe"
    character_coverage: float = 0.9995
    script: str | None = None  # regex a piece must match; default: SCRIPTS[language]
    max_added: int | None = None  # at most this many pieces (scaffolding tokens come on top)
    init: Literal["random", "mean", "subword_mean"] = "subword_mean"
    pad_to_multiple_of: int | None = None
    seed: int = 0
    # metrics: held-out text per language (LibreOffice held-out pages unless eval_corpus says otherwise)
    eval_languages: list[str] = ["ko", "en", "zh"]
    eval_limit: int | None = 2000  # paragraphs per language

    def script_pattern(self) -> str:
        if self.script:
            return self.script
        if self.language not in SCRIPTS:
            raise ValueError(f"vocab.script is needed for language {self.language!r} (known: {sorted(SCRIPTS)})")
        return SCRIPTS[self.language]
