"""The tokenised dataset is stored compactly (arrays, image runs collapsed) and the collator gives
back exactly the encoder's ids and labels; LLaVA's `plain` stage-1 format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests.test_labels import TEXT, sample, tokenizer_for
from xllava.model.families import IMAGE_TOKEN
from xllava.train.data import DataError
from xllava.train.dataset import LlavaCollator, LlavaDataset, _expanded
from xllava.train.labels import IGNORE, encode_samples
from xllava.train.plain import encode_plain

N_IMAGE = 24


def _samples(n: int):
    out = []
    for i in range(n):
        s = sample(TEXT[i % 6], TEXT[(i + 1) % 6], TEXT[(i + 2) % 6], TEXT[(i + 3) % 6], image=i % 4 != 0)
        s.id = f"s-{i}"
        out.append(s)
    return out


def test_collated_batch_is_the_encoders_output() -> None:
    tok = tokenizer_for("chatml")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    samples = _samples(12)
    dataset = LlavaDataset(samples, tok, image_id, N_IMAGE, 512, workers=0)
    expected = encode_samples(samples, tok, image_id, N_IMAGE, 512)

    assert dataset.ids.dtype == np.int32 and dataset.supervised.dtype == np.bool_
    # each image's run is stored as one token: 9 images x (N_IMAGE - 1) tokens fewer
    assert len(dataset.ids) == sum(len(e.input_ids) for e in expected) - 9 * (N_IMAGE - 1)
    assert dataset.lengths == [len(e.input_ids) for e in expected]
    assert dataset.supervised_tokens == sum(sum(t != IGNORE for t in e.labels) for e in expected)

    collator = LlavaCollator(tok.pad_token_id, dataset.images, image_processor=None)
    text_only = [i for i in range(12) if i % 4 == 0]  # no pixels to load for these
    batch = collator([dataset[i] for i in text_only])
    for row, i in enumerate(text_only):
        n = len(expected[i].input_ids)
        assert batch["input_ids"][row, :n].tolist() == expected[i].input_ids
        assert batch["labels"][row, :n].tolist() == expected[i].labels
        assert batch["attention_mask"][row].sum() == n
    # the image rows expand back to the encoder's ids (pixels aside: images are fake paths here)
    for i in (1, 2, 3):
        item = dataset[i]
        ids = _expanded(item["input_ids"], item["image_at"], N_IMAGE)
        labels = _expanded(item["labels"], item["image_at"], N_IMAGE)
        assert ids.tolist() == expected[i].input_ids and labels.tolist() == expected[i].labels
        assert (ids == image_id).sum() == N_IMAGE


def test_compact_storage_is_smaller_than_lists() -> None:
    tok = tokenizer_for("chatml")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    samples = _samples(64)
    dataset = LlavaDataset(samples, tok, image_id, 576, 2048, workers=0)
    arrays = dataset.ids.nbytes + dataset.supervised.nbytes + dataset.offsets.nbytes
    as_lists = len(pickle.dumps([(e.input_ids, e.labels) for e in encode_samples(samples, tok, image_id, 576, 2048)]))
    assert arrays * 10 < as_lists  # pickled lists are themselves far smaller than lists in memory


def test_plain_format_is_image_then_caption() -> None:
    tok = tokenizer_for("llama2")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    s = sample("Describe the image briefly.", "a red ball")
    [enc] = encode_plain([s], tok, image_id, N_IMAGE, 512)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    assert enc.input_ids[: len(bos) + N_IMAGE] == bos + [image_id] * N_IMAGE
    supervised = [t for t in enc.labels if t != IGNORE]
    assert tok.decode(supervised) == "a red ball\n"  # the instruction is dropped, the caption learned
    assert "Describe" not in tok.decode(enc.input_ids)
    assert all(label == IGNORE for label in enc.labels[: len(bos) + N_IMAGE])

    [cut] = encode_plain([s], tok, image_id, N_IMAGE, len(bos) + N_IMAGE + 2)
    assert len(cut.input_ids) == len(bos) + N_IMAGE + 2 and cut.truncated_turns == 1

    dataset = LlavaDataset([s], tok, image_id, N_IMAGE, 512, workers=0, format="plain")
    assert dataset.lengths == [len(enc.input_ids)] and len(dataset.ids) == len(enc.input_ids) - N_IMAGE + 1


@pytest.mark.parametrize("bad", ["text-only", "three-turns"])
def test_plain_format_rejects_what_is_not_a_caption(bad: str) -> None:
    tok = tokenizer_for("llama2")
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    s = sample("hi", "there", image=False) if bad == "text-only" else sample("a", "b", "c")
    with pytest.raises(DataError) as err:
        encode_plain([s], tok, image_id, N_IMAGE, 512)
    assert (err.value.file, err.value.line) == ("data.jsonl", 7)
    assert err.value.field == ("image" if bad == "text-only" else "conversations")


def test_pad_to_square_keeps_the_whole_image() -> None:
    from PIL import Image

    from xllava.train.features import pad_to_square

    mean = [0.48145466, 0.4578275, 0.40821073]
    wide = Image.new("RGB", (60, 20), (255, 0, 0))
    square = pad_to_square(wide, mean)
    assert square.size == (60, 60)
    assert square.getpixel((30, 30)) == (255, 0, 0)  # the image, centred
    assert square.getpixel((30, 5)) == (123, 117, 104) == square.getpixel((30, 55))  # mean colour above and below
    assert pad_to_square(Image.new("RGB", (8, 8)), mean).size == (8, 8)
