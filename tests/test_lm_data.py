"""Packing, mixing and parallel sequences of the `lm` stage."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from xllava.lm.config import LmConfig
from xllava.lm.data import collate, load_texts, mix_documents, pack, parallel_documents

EOS = 0


def docs_of(lengths: list[int]) -> list[list[int]]:
    return [[10 + i] * n for i, n in enumerate(lengths)]


def test_pack_separates_documents_with_eos_and_never_pads() -> None:
    docs = docs_of([5, 3, 9, 2, 7])
    packed = pack(docs, EOS, seq_len=8)
    stream = [t for b in packed.blocks for t in b]
    assert stream == [x for d in docs for x in [EOS, *d]]  # every token once, in order, EOS before each
    assert packed.stream_tokens == sum(len(d) + 1 for d in docs) == len(stream) == 31
    assert [len(b) for b in packed.blocks] == [8, 8, 8, 7]  # the short tail trains as it is, unpadded
    # positions restart at each EOS and at each block start (a continued document)
    for block, pos in zip(packed.blocks, packed.positions, strict=True):
        assert len(pos) == len(block) and pos[0] == 0
        for t, p in zip(block, pos, strict=True):
            assert (p == 0) == (t == EOS) or pos.index(0) == 0
        assert all(p == 0 for t, p in zip(block, pos, strict=True) if t == EOS)
    assert packed.split_documents == 3
    batch = collate([{"input_ids": torch.tensor(b), "position_ids": torch.tensor(p), "labels": torch.tensor(b)}
                     for b, p in zip(packed.blocks[:3], packed.positions[:3], strict=True)])
    assert batch["input_ids"].shape == (3, 8) and "attention_mask" not in batch


def test_pack_drops_the_tail_only_when_asked_and_counts_it() -> None:
    packed = pack(docs_of([5, 3, 9, 2, 7]), EOS, seq_len=8, keep_tail=False)
    assert [len(b) for b in packed.blocks] == [8, 8, 8] and packed.dropped_tokens == 7
    with pytest.raises(ValueError, match="different lengths"):
        collate([{"input_ids": torch.zeros(8, dtype=torch.long)}, {"input_ids": torch.zeros(7, dtype=torch.long)}])


def test_attention_stays_inside_each_packed_document() -> None:
    """The logits of a document packed after another equal those of the document alone."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    a, b = [5, 6, 7, 8, 9], [11, 12, 13, 14]
    packed = pack([a, b], EOS, seq_len=32)
    ids, pos = torch.tensor([packed.blocks[0]]), torch.tensor([packed.positions[0]])
    with torch.no_grad():
        together = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, len(a) + 1:]
        alone = model(input_ids=torch.tensor([[EOS, *b]]), use_cache=False).logits[0]
    assert torch.allclose(together, alone, atol=1e-5)


def test_mix_follows_the_weights_and_reuses_no_document_by_default() -> None:
    docs = {"ko": [[1] * 9] * 100, "en": [[2] * 9] * 30}  # 1000 and 300 tokens with EOS
    chosen, counts = mix_documents(docs, {"ko": 0.5, "en": 0.5}, None, seed=1)
    assert counts == {"ko": 300, "en": 300}
    assert sum(len(d) + 1 for d in chosen) == 600
    chosen, counts = mix_documents(docs, {"ko": 0.75, "en": 0.25}, 2000, seed=1)
    assert counts == {"ko": 1500, "en": 500}  # English cycles through its documents


def test_parallel_sequences_hold_both_orders() -> None:
    records = [{"en": "Open the file.", "ko": "파일을 엽니다.", "zh": "打开文件。"}, {"en": "Only English."}]
    assert parallel_documents([("en", "ko")], records) == ["Open the file.\n파일을 엽니다.", "파일을 엽니다.\nOpen the file."]


def test_texts_from_the_sample_keep_heldout_pages_out_of_training() -> None:
    cfg = LmConfig(parallel=True, eval_limit=50, max_chars_per_language=20_000)
    texts = load_texts(cfg)
    assert set(texts.train) == {"ko", "en", "parallel"} and set(texts.heldout) == {"ko", "en"}
    assert len(texts.heldout["ko"]) == 50
    train = set(texts.train["ko"])
    assert not train & set(texts.heldout["ko"])
    assert sum(map(len, texts.train["en"])) <= 20_000
    assert any("\n" in d and d.split("\n")[0] in set(texts.train["en"]) | set(load_texts(LmConfig()).train["en"])
               for d in texts.train["parallel"][:10])
    assert cfg.weights() == pytest.approx({"ko": 1 / 3, "en": 1 / 3, "parallel": 1 / 3})


def test_bad_config_and_sources_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="lm.mix"):
        LmConfig(mix={"fr": 1.0})
    bad = tmp_path / "ko.jsonl"
    bad.write_text('{"text": "안녕"}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"ko.jsonl:2: no field 'text'"):
        load_texts(LmConfig(sources=[{"lang": "ko", "path": str(bad)}]))
