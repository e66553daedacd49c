"""The batching engine against plain transformers: requests generated together, joining a running
batch at different moments and leaving it at different lengths, answer exactly what `generate`
answers for each alone. And the text stream: whole characters only, stop sequences cut exactly."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from PIL import Image

from tests.serve_util import model_dir_of, world_images


@pytest.fixture(scope="module")
def talkative(fast_run):
    """The fast model with seeded noise on its LM weights. The 4-step model ends every greedy answer
    at once; this copy (same architecture, tokenizer, processor) greedily says 20+ tokens of text."""
    from xllava.model.assemble import load_llava

    model, processor = load_llava(model_dir_of(fast_run))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.model.language_model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model, processor


def test_batched_answers_equal_generate(talkative, fast_run):
    from xllava.infer import user_message
    from xllava.serve.engine import Engine
    from xllava.serve.prompt import encode
    from xllava.serve.sampling import Sampling

    model, processor = talkative
    images = [Image.open(p).convert("RGB") for p in world_images(fast_run)[:6]]
    questions = ["What color is the ball?", "왼쪽에 무엇이 있어요?", "Describe the picture.",
                 "How many objects?", "분위기는 어때요?", "What is at the top?"]
    lengths = [20, 7, 16, 3, 12, 9]
    with_image = [True, True, False, True, False, True]
    prompts = [
        encode(processor, user_message(q, with_image=w), [im] if w else [], 4096)
        for q, im, w in zip(questions, images, with_image, strict=True)
    ]

    # reference: plain transformers, one request at a time, end-of-sequence disabled
    eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None
    reference = []
    for p, n in zip(prompts, lengths, strict=True):
        extra = {"pixel_values": p.pixel_values} if p.pixel_values is not None else {}
        out = model.generate(input_ids=torch.tensor([p.input_ids]), **extra, max_new_tokens=n, do_sample=False)
        reference.append(processor.tokenizer.decode(out[0, len(p.input_ids):], skip_special_tokens=True))
    model.generation_config.eos_token_id = eos
    assert all(len(r) > 0 for r in reference)

    engine = Engine(model, processor.tokenizer, max_batch_size=4, batch_wait_ms=2).start()
    results: list = [None] * len(prompts)

    def run(i: int) -> None:
        events = list(engine.generate(prompts[i], lengths[i], Sampling(), ignore_eos=True))
        results[i] = ("".join(e.text for e in events[:-1]), events[-1])

    threads = []
    for i in range(len(prompts)):  # staggered: some prefill together, some join a running batch
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
        time.sleep(0.01 * (i % 3))
    for t in threads:
        t.join()
    engine.stop()
    for i, (streamed, done) in enumerate(results):
        assert done.kind == "done" and done.finish_reason == "length" and done.completion_tokens == lengths[i]
        assert done.text == streamed == reference[i], i
        assert done.prompt_tokens == len(prompts[i].input_ids)
    assert engine.stats["rows_stepped"] > engine.stats["steps"], "the requests never shared a step"
    assert engine.active == 0


def test_text_stream_whole_characters_and_stops(fast_run):
    from transformers import AutoTokenizer

    from xllava.serve.textstream import TextStream

    tok = AutoTokenizer.from_pretrained(model_dir_of(fast_run))
    text = "빨간 공이 있어요 🙂. STOP 그리고 뷁 more"  # emoji and a rare syllable: split across tokens
    ids = tok(text, add_special_tokens=False)["input_ids"]

    plain = TextStream(tok)
    deltas = [plain.push(i) for i in ids] + [plain.finish()]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)  # no half Hangul syllable ever goes out

    cut = TextStream(tok, stops=["STOP", "never"])
    out = ""
    for i in ids:
        out += cut.push(i)
        if cut.stopped:
            break
    assert cut.stopped and out + cut.finish() == "빨간 공이 있어요 🙂. "
    # the tail that could still become a stop sequence is held back until it cannot
    held = TextStream(tok, stops=["있어요!"])
    got = "".join(held.push(i) for i in ids)
    assert not held.stopped and got + held.finish() == text
