"""The chat formats of today's families against the real thing: xllava's training template and the
tokenizer's own chat_template, both rendered by transformers, give the same string."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tests.real_tokenizers import real_tokenizer_dir
from xllava.config import LLMConfig, VisionConfig
from xllava.model.families import FAMILIES, FamilyMismatch, check_tokenizer, get_family
from xllava.model.towers import get_tower
from xllava.train.data import Sample
from xllava.train.labels import encode_samples

SYSTEM = "당신은 친절한 도우미입니다. You answer briefly."
TURNS = [
    ("이 그림에는 무엇이 있나요?", "빨간 공 두 개가 있습니다."),
    ("What colour is the ball?", "It is red."),
    ("  공은 몇 개인가요?\n", "두 개요. Two balls."),
]


def conversations() -> list[list[dict]]:
    """Without and with a system message; one and three exchanges; Korean and English."""
    out = []
    for system in (None, SYSTEM):
        for n in (1, 3):
            msgs = [{"role": "system", "content": system}] if system else []
            for q, a in TURNS[:n]:
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            out.append(msgs)
    return out


TESTED = sorted(f.name for f in FAMILIES.values() if f.tested_tokenizer)


@pytest.fixture(scope="module", params=TESTED)
def family_and_tokenizer(request):
    family = get_family(request.param)
    return family, AutoTokenizer.from_pretrained(real_tokenizer_dir(family.tested_tokenizer))


def test_every_new_family_is_checked_against_a_real_template() -> None:
    assert set(TESTED) == {"llama3", "qwen3", "gemma3"}


def test_training_template_equals_the_shipped_one(family_and_tokenizer) -> None:
    family, tok = family_and_tokenizer
    extra = {"enable_thinking": False} if family.name == "qwen3" else {}
    for conv in conversations():
        ours = tok.apply_chat_template(conv, chat_template=family.chat_template, tokenize=False)
        theirs = tok.apply_chat_template(conv, tokenize=False, **extra)
        assert ours == theirs, family.name
        prompt = conv[:-1]  # ends with a user turn: the generation prompt
        ours = tok.apply_chat_template(prompt, chat_template=family.chat_template, tokenize=False,
                                       add_generation_prompt=True)
        assert ours == tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **extra)


def test_labels_cover_exactly_the_answers(family_and_tokenizer) -> None:
    """The generation markers put every answer (and its end-of-turn token) under the loss, and the
    end-of-turn token is one of the family's stop tokens."""
    family, tok = family_and_tokenizer
    tok.chat_template = family.chat_template
    convs = conversations()
    samples = [Sample(f"s{i}", None, c) for i, c in enumerate(convs)]
    encoded = encode_samples(samples, tok, image_token_id=-1, n_image_tokens=1, max_length=4096)
    stop_ids = {tok.convert_tokens_to_ids(t) for t in family.stop_tokens}
    for conv, enc in zip(convs, encoded, strict=True):
        supervised = [t for t in enc.labels if t != -100]
        answers = [m["content"] for m in conv if m["role"] == "assistant"]
        text = tok.decode(supervised, skip_special_tokens=True)
        assert "".join(text.split()) == "".join("".join(answers).split())
        assert sum(t in stop_ids for t in supervised) == len(answers)


def test_qwen3_thinking_block_is_prompt_not_label() -> None:
    tok = AutoTokenizer.from_pretrained(real_tokenizer_dir("qwen3"))
    family = get_family("qwen3")
    conv = conversations()[1]
    text = tok.apply_chat_template(conv, chat_template=family.chat_template, tokenize=False)
    assert text.count("<think>\n\n</think>\n\n") == 1  # only the turn after the last question
    assert text.endswith("<think>\n\n</think>\n\n두 개요. Two balls.<|im_end|>\n")
    # the shipped template with thinking left on gives the same training string
    assert text == tok.apply_chat_template(conv, tokenize=False)


# Families whose authors' template does not install offline: their format, written out.
CONV = [{"role": "system", "content": "S"}, {"role": "user", "content": "안녕"}, {"role": "assistant", "content": "네"},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
EXPECTED = {
    "qwen2": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n네<|im_end|>\n"
             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n",
    "mistral": "<s>[INST] 안녕[/INST] 네</s>[INST] S\n\nHi[/INST] Hello</s>",
    "vicuna_v1": "<s>S USER: 안녕 ASSISTANT: 네</s>USER: Hi ASSISTANT: Hello</s>",
    "llama2": "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n안녕 [/INST] 네 </s><s>[INST] Hi [/INST] Hello </s>",
}
PROMPTS = {
    "qwen2": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "mistral": "<s>[INST] Hi[/INST]",
    "vicuna_v1": "<s>A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the human's questions. USER: Hi ASSISTANT:",
    "llama2": "<s>[INST] Hi [/INST]",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_written_out_formats(name: str) -> None:
    tok_key = {"qwen2": "qwen3", "mistral": "mistral", "vicuna_v1": "llama2", "llama2": "llama2"}[name]
    tok = AutoTokenizer.from_pretrained(real_tokenizer_dir(tok_key))
    family = get_family(name)
    check_tokenizer(family, tok.get_vocab(), tok_key)
    assert tok.apply_chat_template(CONV, chat_template=family.chat_template, tokenize=False) == EXPECTED[name]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], chat_template=family.chat_template,
                                     tokenize=False, add_generation_prompt=True)
    assert prompt == PROMPTS[name]


def test_unknown_names_fail_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model family 'llama4'.*'gemma3'.*'vicuna_v1'"):
        LLMConfig(source="hf", path="/x", family="llama4")
    with pytest.raises(ValueError, match=r"unknown model family"):
        get_family("nope")
    with pytest.raises(ValueError, match=r"clip.*siglip"):
        VisionConfig(tower="eva")
    with pytest.raises(ValueError, match=r"known: \['clip', 'siglip'\]"):
        get_tower("eva")


def test_tokenizer_of_another_family_fails_naming_missing_tokens() -> None:
    qwen = AutoTokenizer.from_pretrained(real_tokenizer_dir("qwen3")).get_vocab()
    with pytest.raises(FamilyMismatch, match=r"'llama3'.*'<\|begin_of_text\|>'.*'<\|eot_id\|>'"):
        check_tokenizer(get_family("llama3"), qwen, "qwen3 dir")
    check_tokenizer(get_family("qwen3"), qwen, "qwen3 dir")
    check_tokenizer(get_family("chatml"), qwen, "qwen3 dir")
    gemma = AutoTokenizer.from_pretrained(real_tokenizer_dir("gemma3")).get_vocab()
    with pytest.raises(FamilyMismatch, match=r"<\|im_start\|>"):
        check_tokenizer(get_family("qwen3"), gemma, "gemma3 dir")


def test_families_command_prints_the_table() -> None:
    from typer.testing import CliRunner

    from xllava.cli import app

    out = CliRunner().invoke(app, ["families"])
    assert out.exit_code == 0, out.output
    for family in FAMILIES.values():
        row = next(line for line in out.output.splitlines() if line.startswith(f"| `{family.name}`"))
        assert all(f"`{t}`" in row for t in family.stop_tokens)
        assert (family.tested_tokenizer is None) == ("written-out format" in row)
    assert "| `siglip` |" in out.output and "| `clip` |" in out.output


@pytest.mark.parametrize(("shape", "tokens"), [("clip-vit-large-patch14-336", 576), ("siglip-so400m-patch14-384", 729)])
def test_released_tower_shapes_give_their_image_token_counts(shape: str, tokens: int) -> None:
    from xllava.model.towers import load_tower, num_image_tokens, shaped_vision_config

    cfg = shaped_vision_config(shape, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    tower = load_tower(cfg)
    assert num_image_tokens(tower.model.config, tower.spec) == tokens
    assert cfg.feature_layer == -2 and tower.model.config.hidden_size == 32
    with pytest.raises(ValueError, match="known: "):
        shaped_vision_config("eva-clip")
    with pytest.raises(ValueError, match="image_size"):
        shaped_vision_config(shape, image_size=224)
