"""Vocabulary expansion on small real parts: a byte-level BPE learned here, tiny Llama models, the
`xllava vocab` commands. SmolLM2 and Llama-2 have their own files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from typer.testing import CliRunner

from xllava.config import LLMConfig, ScratchLLMConfig
from xllava.corpus import sample
from xllava.model.llm_sources import build_scratch_llm, train_byte_bpe
from xllava.vocab.bytelevel import (
    Added,
    MergeTable,
    byte_to_char,
    from_bytelevel,
    splice_bytelevel,
    to_bytelevel,
)
from xllava.vocab.config import SCRIPTS, VocabConfig
from xllava.vocab.embeddings import resize_and_init
from xllava.vocab.learn import filter_pieces, learn_spm, pieces_of_model, read_pieces_file
from xllava.vocab.metrics import EDGE_CASES, measure, roundtrip_failures, unreachable
from xllava.vocab.table import render_markdown

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def syllables(texts: list[str]) -> int:
    return sum(len(HANGUL.findall(t)) for t in texts)


@pytest.fixture(scope="module")
def heldout() -> dict[str, list[str]]:
    return {lang: sample.texts(lang, "heldout", limit=400) for lang in ("ko", "en", "zh")}


@pytest.fixture(scope="module")
def ko_pieces() -> list[str]:
    model = learn_spm(sample.texts("ko", "train"), 2000)
    return filter_pieces(pieces_of_model(model), SCRIPTS["ko"])


@pytest.fixture(scope="module")
def english_bpe() -> Tokenizer:
    """An English-centric byte-level BPE (like SmolLM2's): Korean falls apart into bytes."""
    texts = sample.texts("en", "train") + sample.texts("zh", "train")[:2000]
    return train_byte_bpe(texts, 3000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


def test_byte_table_is_the_bytelevel_alphabet() -> None:
    table = byte_to_char()
    assert sorted(table.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in EDGE_CASES:
        assert to_bytelevel(text) == bl.pre_tokenize_str(text)[0][0]
        assert from_bytelevel(to_bytelevel(text)) == text
    assert from_bytelevel(to_bytelevel("한")[:2]) is None  # two of the three bytes of a syllable


def test_merge_table_segments_like_the_library(english_bpe: Tokenizer, heldout) -> None:
    data = json.loads(english_bpe.to_str())
    table = MergeTable(data["model"]["vocab"], [tuple(m) for m in data["model"]["merges"]])
    words = [w for lang in heldout for t in heldout[lang][:100] for w, _ in english_bpe.pre_tokenizer.pre_tokenize_str(t)]
    assert len(words) > 1000
    for w in words:
        assert table.segment(list(w)) == [t.value for t in english_bpe.model.tokenize(w)], w


def test_pieces_come_single_characters_first(ko_pieces: list[str]) -> None:
    assert all(HANGUL.search(p) for p in ko_pieces)
    lengths = [len(p) for p in ko_pieces]
    first_long = next(i for i, n in enumerate(lengths) if n > 1)
    assert all(n > 1 for n in lengths[first_long:])
    assert "▁선택" in ko_pieces and "니다" in ko_pieces


def test_given_vocabulary_file(tmp_path: Path) -> None:
    vocab = tmp_path / "kobert_vocab.txt"
    vocab.write_text("[CLS]\n[SEP]\n<unk>\n▁한국어\t-3.5\n어\n▁한\n", encoding="utf-8")
    assert read_pieces_file(vocab) == ["어", "▁한", "▁한국어"]
    vocab.write_text("▁한\n" + "▁한국어".replace("한", "\u1112\u1161\u11ab") + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"kobert_vocab\.txt:2: .*not NFC"):
        read_pieces_file(vocab)


def test_splice_builds_reachable_merges_and_leaves_other_text_alone(english_bpe, ko_pieces, heldout) -> None:
    base_json = json.loads(english_bpe.to_str())
    result = splice_bytelevel(base_json, ko_pieces)
    expanded = Tokenizer.from_str(json.dumps(result.tokenizer_json))
    assert result.n_added >= len(ko_pieces) - result.skipped["already_a_token"]
    assert [a.id for a in result.added] == list(range(3000, 3000 + result.n_added))
    assert unreachable(expanded, result.added, bytelevel=True) == []
    # text without Hangul tokenises exactly as before, id for id
    for lang in ("en", "zh"):
        before = english_bpe.encode_batch(heldout[lang])
        after = expanded.encode_batch(heldout[lang])
        assert [e.ids for e in before] == [e.ids for e in after]
    ko_before = measure(english_bpe, heldout["ko"], "ko", bytelevel=True)
    ko_after = measure(expanded, heldout["ko"], "ko", bytelevel=True)
    assert ko_after["tokens_per_script_char"] < ko_before["tokens_per_script_char"] / 2.5
    assert ko_after["byte_fallback_share"] < 0.05 < ko_before["byte_fallback_share"]
    assert ko_after["continued_word_rate"] < ko_before["continued_word_rate"]
    assert ko_after["roundtrip_exact"] == 1.0
    assert roundtrip_failures(lambda x: expanded.encode(x).ids, expanded.decode) == []


def test_naive_merges_are_caught_as_unreachable(english_bpe) -> None:
    """The audit is not vacuous: a token whose merge the base segmentation never produces is dead."""
    data = json.loads(english_bpe.to_str())
    word = to_bytelevel(" 한국어")
    seg = MergeTable(data["model"]["vocab"], [tuple(m) for m in data["model"]["merges"]]).segment(list(word))
    assert len(seg) > 2
    rest = "".join(seg[1:])  # a token, but no merge ever builds it
    data["model"]["vocab"][rest] = len(data["model"]["vocab"]) + 10
    data["model"]["vocab"][word] = len(data["model"]["vocab"]) + 10
    data["model"]["merges"].append([seg[0], rest])  # naive splicing: this merge never fires
    dead = unreachable(Tokenizer.from_str(json.dumps(data)), [Added(data["model"]["vocab"][word], word, " 한국어",
                                                                   "piece")], bytelevel=True)
    assert len(dead) == 1


@pytest.mark.parametrize("tied", [True, False])
def test_resize_and_init(tied: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    parts = {50: [3, 4, 5], 51: [7], 52: []}
    info = resize_and_init(model, 50, [50, 51, 52], parts, "subword_mean", pad_to_multiple_of=8)
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert info["tied"] is tied and info["rows_after"] == 56 == w_in.shape[0] == w_out.shape[0]
    assert model.config.vocab_size == 56
    assert torch.equal(w_in[:50], before_in) and torch.equal(w_out[:50], before_out)
    assert torch.allclose(w_in[50], before_in[[3, 4, 5]].mean(0)) and torch.allclose(w_in[51], before_in[7])
    assert torch.allclose(w_in[52], before_in.mean(0))  # nothing to average: the plain mean
    assert torch.allclose(w_in[53:], before_in.mean(0).expand(3, -1))  # padding rows
    if not tied:
        assert torch.allclose(w_out[50], before_out[[3, 4, 5]].mean(0))
    resize_and_init(model, 50, [50], parts, "random", seed=1)
    assert not torch.allclose(model.get_input_embeddings().weight[50], before_in[[3, 4, 5]].mean(0))
    assert model.get_input_embeddings().weight[50].std() < 0.1  # initializer_range 0.02


@pytest.fixture(scope="module")
def scratch_llm(tmp_path_factory) -> Path:
    """The tiny recipe's kind of LLM: a random Llama with a byte-level BPE learned on its text."""
    cfg = LLMConfig(source="scratch", scratch=ScratchLLMConfig(vocab_size=1024, hidden_size=64, intermediate_size=128,
                                                                num_hidden_layers=2, num_attention_heads=2,
                                                                num_key_value_heads=1))
    texts = sample.texts("en", "train")[:3000] + sample.texts("ko", "train")[:300]
    return build_scratch_llm(cfg, tmp_path_factory.mktemp("scratch") / "llm", texts)


def test_vocab_cli_expands_a_scratch_llm(scratch_llm: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xllava.cli import app

    out = tmp_path / "vocab"
    runner = CliRunner()
    done = runner.invoke(app, ["vocab", "expand", str(scratch_llm), str(out), "--set", "n_pieces=1500",
                               "--set", "eval_limit=300", "--set", "init=mean"])
    assert done.exit_code == 0, done.output
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["unreachable"] == 0 and figures["roundtrip_failures"] == []
    assert "| expanded | ko |" in done.output and (out / "vocab_bars.png").stat().st_size > 5000
    ko_base, ko_new = figures["metrics"]["base"]["ko"], figures["metrics"]["expanded"]["ko"]
    assert ko_new["tokens_per_script_char"] < ko_base["tokens_per_script_char"] / 1.5
    assert figures["metrics"]["expanded"]["en"]["tokens"] == figures["metrics"]["base"]["en"]["tokens"]

    base_tok, tok = AutoTokenizer.from_pretrained(scratch_llm), AutoTokenizer.from_pretrained(out / "model")
    base, model = AutoModelForCausalLM.from_pretrained(scratch_llm), AutoModelForCausalLM.from_pretrained(out / "model")
    n = len(base_tok)
    assert len(tok) == n + figures["added"] == model.config.vocab_size == model.get_input_embeddings().weight.shape[0]
    assert tok.chat_template == base_tok.chat_template and tok.eos_token == base_tok.eos_token
    text = "Select the cell range and open the filter."
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, base_tok(text, return_tensors="pt")["input_ids"])
    with torch.no_grad():
        old, new = base(ids).logits, model(ids).logits
    assert torch.allclose(old, new[..., :n], atol=1e-5)  # base rows and weights untouched

    report = runner.invoke(app, ["vocab", "report", str(scratch_llm), str(out / "model"), "--out",
                                 str(tmp_path / "report"), "--limit", "200"])
    assert report.exit_code == 0, report.output
    again = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert again["added"] == figures["added"] and again["unreachable"] == 0


def test_markdown_table() -> None:
    m = {"tokens": 100, "tokens_per_char": 1.0, "tokens_per_word": 3.0, "tokens_per_script_char": 1.2,
         "byte_fallback_share": 0.5, "continued_word_rate": 0.9, "roundtrip_exact": 1.0}
    figures = {"metrics": {"base": {"ko": m}, "expanded": {"ko": {**m, "tokens": 25}}}, "added": 7, "scaffold": 2,
               "unreachable": 0, "roundtrip_failures": [], "plot": "/x/vocab_bars.png"}
    text = render_markdown(figures)
    assert "| base | ko | 1.000 | 3.00 | 1.200 | 50.0% | 90.0% | 100.0% | 100 |" in text
    assert "ko -75.0%" in text and "Added tokens: 7 (2 of them" in text and "(vocab_bars.png)" in text
    assert "(vocab/vocab_bars.png)" in render_markdown(figures, image="vocab/vocab_bars.png")


def test_config_needs_a_script_for_unknown_languages() -> None:
    assert VocabConfig().script_pattern() == SCRIPTS["ko"]
    with pytest.raises(ValueError, match="vocab.script"):
        VocabConfig(language="th").script_pattern()
