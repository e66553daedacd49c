"""Bits per character, checked by hand on a model whose every prediction is uniform."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from xllava.lm.metrics import bits_per_character, sequence_bits


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of "abc d" plus </s>: token counts are plain to see."""
    vocab = {"</s>": 0, "a": 1, "b": 2, "c": 3, " ": 4, "d": 5, "[UNK]": 6, "x": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="[UNK]")


def uniform_model(vocab: int = 8) -> LlamaForCausalLM:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1/8, 3 bits per token
    return model.eval()


def test_uniform_model_costs_three_bits_per_token() -> None:
    tok = char_tokenizer()
    assert tok("abc d", add_special_tokens=False)["input_ids"] == [1, 2, 3, 4, 5]
    m = bits_per_character(uniform_model(), tok, ["abc d", "ab"])
    # 7 tokens (the EOS before each text is context, never scored) x 3 bits over 7 characters
    assert m["tokens"] == 7 and m["chars"] == 7
    assert m["bits"] == pytest.approx(21.0, rel=1e-5) and m["bpc"] == pytest.approx(3.0, rel=1e-5)


def test_windows_score_every_token_exactly_once() -> None:
    seq = [0, 1, 2, 3, 4, 5, 1, 2, 3, 7, 7, 1, 2]  # 12 targets
    for max_len in (2, 4, 5, 64):  # uniform: 3 bits per target, however the windows fall
        assert sequence_bits(uniform_model(), [seq, seq[:4]], max_len=max_len) == pytest.approx([36.0, 9.0])


def test_one_window_matches_the_log_probabilities() -> None:
    torch.manual_seed(0)
    model = uniform_model()
    with torch.no_grad():
        model.lm_head.weight.normal_()
        seq = [0, 1, 2, 3, 4, 5, 1, 2, 3, 7, 7, 1, 2]
        probs = torch.softmax(model(input_ids=torch.tensor([seq])).logits[0, :-1], -1)
    expected = -sum(math.log2(float(probs[i, seq[i + 1]])) for i in range(len(seq) - 1))
    # batched with a shorter sequence: padding must not change the figure
    assert sequence_bits(model, [seq, seq[:3]], max_len=64)[0] == pytest.approx(expected, rel=1e-4)
