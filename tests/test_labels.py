"""Labels come from per-turn token spans of the real tokenization, for each chat family."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from xllava.model.families import FAMILIES, IMAGE_TOKEN
from xllava.model.llm_sources import train_byte_bpe
from xllava.train.data import DataError, Sample
from xllava.train.labels import IGNORE, encode_sample

TEXT = ["What colour is the ball?", "red", "빨간 공은 어디에 있어요?", "왼쪽", "球是什么颜色？", "红色", "xyz xyz"] * 20


def tokenizer_for(family_name: str, template: str | None = None) -> PreTrainedTokenizerFast:
    family = FAMILIES[family_name]
    specials = list(dict.fromkeys([*family.special_tokens, family.pad_token, IMAGE_TOKEN]))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(TEXT, 400, specials),
        bos_token=family.bos_token, eos_token=family.eos_token, pad_token=family.pad_token,
    )
    tok.chat_template = template or family.chat_template
    return tok


def sample(*turns: str, image: bool = True) -> Sample:
    messages = []
    for i, text in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        content = [{"type": "text", "text": text}]
        if i == 0 and image:
            content.insert(0, {"type": "image"})
        messages.append({"role": role, "content": content})
    return Sample("s-1", Path("/x.png") if image else None, messages, origin=("data.jsonl", 7))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_supervised_tokens_spell_the_answers(family: str) -> None:
    tok = tokenizer_for(family)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    s = sample("What colour is the ball?", "red", "빨간 공은 어디에 있어요?", "왼쪽")
    enc = encode_sample(s, tok, image_id, n_image_tokens=9, max_length=512)
    assert enc.input_ids.count(image_id) == 9
    supervised = [t for t in enc.labels if t != IGNORE]
    text = tok.decode(supervised)
    assert "red" in text and "왼쪽" in text
    assert "colour" not in text and "어디" not in text  # user turns are never learned
    assert tok.decode([t for t in supervised]).count(FAMILIES[family].stop_tokens[0]) == 2  # learns to stop
    # the image span and the prompt carry no labels
    first = enc.labels.index(next(t for t in enc.labels if t != IGNORE))
    assert all(label == IGNORE for label in enc.labels[:first])
    assert len(enc.input_ids) == len(enc.labels)


def test_truncation_drops_whole_turns_and_keeps_the_image() -> None:
    tok = tokenizer_for("chatml")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    s = sample("What colour is the ball?", "red", "빨간 공은 어디에 있어요?", "왼쪽")
    full = encode_sample(s, tok, image_id, 16, 512)
    cut = encode_sample(s, tok, image_id, 16, len(full.input_ids) - 3)
    assert cut.truncated_turns == 1
    assert cut.input_ids.count(image_id) == 16
    assert tok.decode([t for t in cut.labels if t != IGNORE]) == "red<|im_end|>"
    with pytest.raises(DataError, match="first answer ends past max_length"):
        encode_sample(s, tok, image_id, 16, 20)


def test_token_straddling_a_turn_boundary_is_an_error_naming_the_sample() -> None:
    # A template that starts the answer inside a word: the token "xyz" straddles the span start.
    template = "{% for m in messages %}{% if m['role'] == 'assistant' %}x{% generation %}" \
               "{{ m['content'][0]['text'] }}{% endgeneration %}{% else %}{{ m['content'][-1]['text'] }} " \
               "{% endif %}{% endfor %}"
    tok = tokenizer_for("chatml", template)
    assert "xyz" in tok.get_vocab() or "Ġxyz" in tok.get_vocab()
    with pytest.raises(DataError) as err:
        encode_sample(sample("q", "yz", image=False), tok, -1, 0, 512)
    assert "s-1" in str(err.value) and err.value.line == 7 and "mismatch" in str(err.value)


def test_image_after_the_question_keeps_its_place() -> None:
    """LLaVA data has both "<image>\\nQ" and "Q\\n<image>"; the template renders each as written."""
    import json

    from xllava.train.data import parse_record

    tok = tokenizer_for("chatml")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    record = {"id": "r", "image": "x.png", "conversations": [
        {"from": "human", "value": "What colour is the ball?\n<image>"}, {"from": "gpt", "value": "red"}]}
    folder = Path(__file__).parent
    (folder / "x.png").touch()
    try:
        s = parse_record(json.loads(json.dumps(record)), Path("d.jsonl"), 1, folder)
    finally:
        (folder / "x.png").unlink()
    assert s.messages[0]["content"][-1] == {"type": "image"}
    text = tok.apply_chat_template(s.messages, tokenize=False)
    assert "What colour is the ball?\n<image><|im_end|>" in text
    enc = encode_sample(s, tok, image_id, 4, 512)
    first_image = enc.input_ids.index(image_id)
    assert "colour" in tok.decode(enc.input_ids[:first_image])
    assert tok.decode([t for t in enc.labels if t != IGNORE]) == "red<|im_end|>"


def test_forked_tokenising_matches_in_process_and_reports_bad_samples() -> None:
    """Large datasets are tokenised by forked workers: the same items, in order, and a bad sample's
    error still names its file, line and field."""
    from xllava.train.dataset import ENCODE_BATCH, LlavaDataset

    tok = tokenizer_for("chatml")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    samples = []
    for i in range(3 * ENCODE_BATCH + 17):  # four chunks, the last one short
        s = sample(TEXT[i % 6], TEXT[(i + 1) % 6], image=i % 3 != 0)
        s.id, s.origin = f"s-{i}", ("data.jsonl", i + 1)
        samples.append(s)
    serial = LlavaDataset(samples, tok, image_id, 9, 512, workers=0)
    forked = LlavaDataset(samples, tok, image_id, 9, 512, workers=2)
    for name in ("ids", "supervised", "offsets", "rows", "image_at"):
        assert (getattr(forked, name) == getattr(serial, name)).all(), name
    assert forked.lengths == serial.lengths
    assert forked.supervised_tokens == serial.supervised_tokens > 0

    bad = 2 * ENCODE_BATCH + 5  # in the third chunk: raised in a worker
    samples[bad].messages[1]["content"][0]["text"] = "x" * 2000
    with pytest.raises(DataError) as err:
        LlavaDataset(samples, tok, image_id, 9, 64, workers=2)
    assert (err.value.file, err.value.line, err.value.field) == ("data.jsonl", bad + 1, "conversations")
    assert f"s-{bad}" in str(err.value) and "max_length" in str(err.value)
