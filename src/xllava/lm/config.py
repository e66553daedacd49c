"""The `lm` stage's config: which text, in what mix, and how the LLM is trained on it.

Defaults follow the paper (appendix C): LoRA r 8, alpha 32, dropout 0.05 on every projection,
lr 5e-5, AdamW betas 0.9/0.99, seed 42; plus the new embedding rows, which LoRA alone leaves
untouched."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from xllava.strict import Strict
from xllava.training_config import TrainingConfig


class LmSource(Strict):
    """A user corpus for one language: plain text (a document per line), JSONL or Parquet."""

    lang: str
    path: str  # relative paths resolve against the run directory
    text_field: str = "text"
    lang_filter: str | None = None  # JSONL: keep records whose `lang` equals this


class LoraConfig(Strict):
    """LoRA on the LLM: stage 2 (`instruct.lora`) and LM pretraining (`lm.lora`)."""

    r: int = 8  # adapter rank
    alpha: int = 32  # scale alpha / r on the adapter's output
    dropout: float = 0.05  # on the adapter's input
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # each LoRA projection (dropout, adapter, frozen weight) as one autograd function on a CPU
    # (xllava.train.fused_lora): the same model, faster, another dropout stream
    fused: bool = True


class LmConfig(TrainingConfig):
    """Continue causal-LM training of an (expanded) LLM on target-language and English text (xllava.lm)."""

    languages: list[str] = ["ko", "en"]  # the languages trained and measured
    # "libreoffice": the shipped aligned ko-en-zh sample (its train/heldout page split); `sources`
    # replaces it per language
    corpus: Literal["libreoffice"] = "libreoffice"
    sources: list[LmSource] = []
    heldout_percent: int = 10  # user corpora: share of lines (by content hash) held out
    # share of training tokens per language (and "parallel"); renormalised. Missing keys get 0 except
    # when `mix` is empty: then every language and parallel (if on) gets an equal share
    mix: dict[str, float] = {}
    # aligned pairs in one sequence, both orders ("en\nko" and "ko\nen"), from the LibreOffice train split
    parallel: bool = False
    parallel_pairs: list[tuple[str, str]] = [("en", "ko")]
    # tokens of one epoch; None: the largest budget that repeats no document
    tokens_per_epoch: int | None = None
    max_chars_per_language: int | None = None  # cap on each language's training text (before mixing)
    seq_len: int = 512  # tokens per packed training block
    eval_limit: int | None = 400  # held-out paragraphs per language for bits per character
    eval_batch_size: int = 8  # held-out paragraphs per forward pass when measuring

    mode: Literal["lora", "full"] = "lora"  # LoRA adapters (plus `embeddings`) or every weight
    lora: LoraConfig = LoraConfig()
    # lora mode: which embedding/output rows train too. "new": rows past the base vocabulary (from the
    # vocab stage's xllava_vocab.json); "all": every row; "none": LoRA only
    embeddings: Literal["new", "all", "none"] = "new"
    embedding_lr: float | None = None  # None: lr
    # the training knobs come from TrainingConfig; the lm stage's defaults are the paper's (appendix C)
    lr: float = Field(5e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    scheduler: str = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    # micro_batch 1 trains the epoch's shorter last block too (no padding anywhere); with more, that
    # block is dropped and counted
    batch_size: int = Field(8, ge=1)
    micro_batch: int | None = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)
    # also train the unexpanded base (from xllava_vocab.json) for the same number of steps and report
    # its bits per character beside the expanded model's
    compare_unexpanded: bool = False

    @model_validator(mode="after")
    def _check(self) -> LmConfig:
        unknown = set(self.mix) - set(self.languages) - {"parallel"}
        if unknown:
            raise ValueError(f"lm.mix has keys {sorted(unknown)} that are neither lm.languages nor 'parallel'")
        if any(w < 0 for w in self.mix.values()):
            raise ValueError("lm.mix weights must be >= 0")
        if self.seq_len < 8:
            raise ValueError("lm.seq_len must be at least 8")
        return self

    def weights(self) -> dict[str, float]:
        keys = [*self.languages, *(["parallel"] if self.parallel else [])]
        raw = {k: self.mix.get(k, 0.0) for k in keys} if self.mix else {k: 1.0 for k in keys}
        total = sum(raw.values())
        if total <= 0:
            raise ValueError("lm.mix gives every language weight 0")
        return {k: w / total for k, w in raw.items() if w > 0}
