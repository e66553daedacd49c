"""Vocabulary expansion on the real tokenizers of today's families (npm, xllava.vocab.npm_tokenizers):
byte-level BPE (Llama-3, Qwen3, DeepSeek-V3) and SentencePiece-style BPE with byte fallback in
tokenizer.json (Gemma-3, Mistral). No base id changes meaning, new ids come after every used one,
text round-trips exactly, English and Chinese tokenise as before, no added piece is dead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, normalizers

from tests.real_tokenizers import real_tokenizer_dir
from xllava.corpus import sample
from xllava.vocab.config import VocabConfig
from xllava.vocab.ids import check_ids_kept, next_free_id
from xllava.vocab.metrics import EDGE_CASES
from xllava.vocab.stage import ExpansionError, check_expansion, run_vocab_stage

KINDS = {"llama3": "bytelevel", "qwen3": "bytelevel", "deepseek_v3": "bytelevel", "gemma3": "sentencepiece_json",
         "mistral": "sentencepiece_json"}
CFG = VocabConfig(n_pieces=1500, eval_limit=100)


@pytest.fixture(scope="module", params=sorted(KINDS))
def expanded(request, tmp_path_factory) -> tuple[str, Path, Path, dict]:
    key = request.param
    base_dir = real_tokenizer_dir(key)
    out = tmp_path_factory.mktemp(f"vocab-{key}")
    return key, base_dir, out / "model", run_vocab_stage(CFG, base_dir, out)


def test_expansion_on_real_tokenizer(expanded) -> None:
    key, base_dir, model_dir, figures = expanded
    assert json.loads((model_dir / "xllava_vocab.json").read_text())["family"] == KINDS[key]
    base_json = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    new_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    base, new = Tokenizer.from_file(str(base_dir / "tokenizer.json")), Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert all(new.token_to_id(t) == i for t, i in base.get_vocab(with_added_tokens=True).items())
    # every base token, added and reserved special tokens included, keeps its id (plain transformers
    # loads the saved directory inside the stage, which fails otherwise)
    assert figures["moved_ids"] == 0
    base_vocab = base.get_vocab(with_added_tokens=True)
    assert new_json["added_tokens"] == base_json["added_tokens"]
    # new tokens only on ids no base token uses, right after the highest one
    n_base = next_free_id(base_json)
    new_ids = sorted(i for t, i in new.get_vocab(with_added_tokens=True).items() if t not in base_vocab)
    assert new_ids == list(range(n_base, n_base + figures["added"]))
    # figures: fewer Korean tokens, English and Chinese untouched, nothing dead, nothing lost
    m = figures["metrics"]
    assert m["expanded"]["ko"]["tokens"] < m["base"]["ko"]["tokens"]
    assert figures["unreachable"] == 0 and figures["roundtrip_failures"] == []
    held = {lang: sample.texts(lang, "heldout", limit=200) for lang in ("en", "zh")}
    for lang, texts in held.items():
        assert [e.ids for e in new.encode_batch(texts)] == [e.ids for e in base.encode_batch(texts)], lang
    # Korean text never comes out as a special token of the base
    specials = {t["id"] for t in base_json["added_tokens"] if t["special"]}
    ko = sample.texts("ko", "heldout", limit=200)
    assert not specials & {i for e in new.encode_batch(ko, add_special_tokens=False) for i in e.ids}
    for text in [*EDGE_CASES, *ko[:50], "대한민국의 수도는 서울이다. 사용되고 있습니다 🦙 中文 ｆｕｌｌ"]:
        assert new.decode(new.encode(text, add_special_tokens=False).ids) == text, (key, text)
    if key == "llama3":  # new pieces once took Llama-3's reserved ids: " 사용되고" came out as one of them
        for token in ("<|reserved_special_token_165|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_header_id|>"):
            assert new.token_to_id(token) == base.token_to_id(token)
        ids = new.encode(" 사용되고", add_special_tokens=False).ids
        assert not [i for i in ids if 128000 <= i <= 128255] and new.decode(ids) == " 사용되고"


def test_ids_of_added_tokens_would_move_without_pinning() -> None:
    """What the library does when pieces are appended to a vocabulary whose added tokens sit past it
    (Qwen3): the check catches it."""
    base_json = json.loads((real_tokenizer_dir("qwen3") / "tokenizer.json").read_text(encoding="utf-8"))
    naive = json.loads(json.dumps(base_json))
    naive["model"]["vocab"]["가나다라마"] = next_free_id(base_json)
    with pytest.raises(ValueError, match="change id"):
        check_ids_kept(base_json, naive)


def test_lost_round_trip_fails_the_stage() -> None:
    base = Tokenizer.from_file(str(real_tokenizer_dir("mistral") / "tokenizer.json"))
    broken = Tokenizer.from_str(base.to_str())
    broken.normalizer = normalizers.Sequence([normalizers.NFKC(), base.normalizer])  # folds fullwidth letters
    heldout = {"en": ["plain text", "ｆｕｌｌｗｉｄｔｈ text"]}
    figures = {"roundtrip_failures": [], "unreachable": 0, "unreachable_examples": []}
    with pytest.raises(ExpansionError, match=r"1 held-out en texts no longer round-trip"):
        check_expansion(base, broken, heldout, figures)
    check_expansion(base, base, heldout, figures)
