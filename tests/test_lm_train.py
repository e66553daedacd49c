"""Training of the `lm` stage on a small scratch LLM expanded with Korean pieces: held-out bits
per character fall, LoRA mode trains only the new embedding rows, the merged export is plain HF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from xllava.config import LLMConfig, ScratchLLMConfig
from xllava.corpus import sample
from xllava.lm.config import LmConfig
from xllava.lm.stage import run_lm_stage
from xllava.model.llm_sources import build_scratch_llm
from xllava.vocab.config import VocabConfig
from xllava.vocab.stage import run_vocab_stage


@pytest.fixture(scope="module")
def expanded(tmp_path_factory) -> Path:
    """A 2-layer Llama with a 600-token byte BPE learned on English, then expanded for Korean."""
    root = tmp_path_factory.mktemp("lm")
    scratch = ScratchLLMConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    base = build_scratch_llm(LLMConfig(source="scratch", scratch=scratch), root / "base",
                             sample.texts("en", "train", limit=3000))
    vocab = VocabConfig(n_pieces=1500, max_train_chars=100_000, eval_limit=20, eval_languages=["ko", "en"])
    return Path(run_vocab_stage(vocab, base, root / "vocab")["model_dir"])


def small(**kw) -> LmConfig:
    base = dict(seq_len=128, batch_size=4, micro_batch=1, max_chars_per_language=40_000, eval_limit=40,
                lr=1e-2, embedding_lr=5e-2, max_steps=60, logging_steps=10, save_steps=30, eval_batch_size=16)
    return LmConfig(**{**base, **kw})


def test_lora_new_rows_lowers_bpc_and_keeps_old_rows(expanded: Path, tmp_path: Path) -> None:
    n_base = json.loads((expanded / "xllava_vocab.json").read_text())["n_base"]
    before = AutoModelForCausalLM.from_pretrained(expanded).get_input_embeddings().weight.detach().clone()
    assert before.shape[0] > n_base + 100
    figures = run_lm_stage(small(parallel=True), expanded, tmp_path)
    bpc = figures["bpc"]
    assert bpc["after"]["ko"] < 0.95 * bpc["before"]["ko"], bpc
    assert bpc["after"]["en"] < bpc["before"]["en"], bpc
    assert figures["trained_rows"] == before.shape[0] - n_base
    assert figures["fused_lora_projections"] == 2 * 7  # the 7 projections of 2 layers, on a CPU
    # the merged export is a plain causal LM: old rows as they were, new rows trained
    model = AutoModelForCausalLM.from_pretrained(figures["model_dir"])
    tok = AutoTokenizer.from_pretrained(figures["model_dir"])
    after = model.get_input_embeddings().weight.detach()
    assert torch.equal(after[:n_base], before[:n_base])
    assert (after[n_base:] - before[n_base:]).abs().amax(dim=1).gt(0).float().mean() > 0.5
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert "peft" not in json.dumps(model.config.to_dict()) and len(tok) == after.shape[0]
    assert json.loads((Path(figures["model_dir"]) / "xllava_lm.json").read_text())["embeddings"] == "new"
    assert len(figures["loss_history"]) == 6 and figures["tokens_per_second"] > 0
    assert figures["data"]["stream_tokens"] == sum(figures["data"]["tokens_per_key"].values())
    md = (tmp_path / "lm.md").read_text()
    assert "| after lm training |" in md and (tmp_path / "lm_curves.png").stat().st_size > 5000
    # resuming a finished run picks up the newest complete checkpoint and trains no further
    again = run_lm_stage(small(parallel=True), expanded, tmp_path)
    assert again["steps"] == 60 and again["tokens"] == 0


def test_full_mode_trains_everything(expanded: Path, tmp_path: Path) -> None:
    figures = run_lm_stage(small(mode="full", lr=1e-3, max_steps=10, mix={"ko": 1.0}, languages=["ko"]),
                           expanded, tmp_path)
    assert figures["bpc"]["after"]["ko"] < figures["bpc"]["before"]["ko"]
    assert figures["data"]["tokens_per_key"].keys() == {"ko"}
    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(figures["model_dir"]).parameters())
    assert figures["trainable_parameters"] == n
