"""LLaVA-1.5's stage-1 `plain` format: the image, the caption, a newline; nothing else.

LLaVA's pretraining script (`--version plain`) drops the instruction of each caption record and
the chat template: the sequence is BOS, the image tokens, then the caption followed by the
separator "\n", and only the caption and separator are supervised. The projector learns to map an
image onto text that describes it, without a template the LLM would have to read first.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from xllava.train.data import DataError, Sample
from xllava.train.labels import IGNORE, Encoded, content_text

SEPARATOR = "\n"  # LLaVA's conv_llava_plain.sep


def _caption(sample: Sample) -> str:
    file, line = sample.origin
    if sample.image is None:
        raise DataError(file, line, "image", f"sample {sample.id}: the plain format needs an image in every record")
    roles = [m["role"] for m in sample.messages]
    if roles != ["user", "assistant"]:
        raise DataError(file, line, "conversations",
                        f"sample {sample.id}: the plain format takes one human turn then one gpt turn, got {roles}")
    return content_text(sample.messages[1])


def encode_plain(
    samples: list[Sample],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    n_image_tokens: int,
    max_length: int,
) -> list[Encoded]:
    """[BOS] + image tokens + caption + "\n", the caption and separator supervised; a caption cut
    by max_length keeps its first tokens (it has one answer, so there is no turn to drop)."""
    captions = [_caption(s) + SEPARATOR for s in samples]
    texts = tokenizer(captions, add_special_tokens=False)["input_ids"]
    prefix = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + [image_token_id] * n_image_tokens
    out = []
    for sample, text in zip(samples, texts, strict=True):
        if len(prefix) + 1 > max_length:
            file, line = sample.origin
            raise DataError(file, line, "conversations",
                            f"sample {sample.id}: the image alone fills max_length={max_length}")
        ids = (prefix + list(text))[:max_length]
        labels = [IGNORE] * len(prefix) + ids[len(prefix):]
        out.append(Encoded(ids, labels, truncated_turns=int(len(prefix) + len(text) > max_length)))
    return out
