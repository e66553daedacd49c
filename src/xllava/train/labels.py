"""Token ids and labels from the real tokenization of the chat template.

The template marks assistant content with `{% generation %}`; the tokenizer maps those character
spans onto the tokens of the full rendered string (`return_assistant_tokens_mask`). Each assistant
turn must come back as one run of supervised tokens that spells that turn; anything else is an
error naming the sample: LLaVA-lineage code silently masks such samples and trains on nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from xllava.train.data import DataError, Sample

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated_turns: int = 0


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _squash(text: str) -> str:
    return "".join(text.split())


def content_text(message: dict) -> str:
    """A message's text: its string, or its text parts joined (image parts carry none)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def encode_samples(
    samples: list[Sample],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    n_image_tokens: int,
    max_length: int,
) -> list[Encoded]:
    """Encode a batch: one chat-template call renders and tokenizes them all (a call per sample
    spends most of its time in per-call set-up: 1.9 s against 1.0 s for 4000 tiny-recipe samples)."""
    if not samples:
        return []
    rendered = tokenizer.apply_chat_template(
        [s.messages for s in samples], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return [
        _checked(sample, list(ids), list(mask), tokenizer, image_token_id, n_image_tokens, max_length)
        for sample, ids, mask in zip(samples, rendered["input_ids"], rendered["assistant_masks"], strict=True)
    ]


def encode_sample(
    sample: Sample,
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    n_image_tokens: int,
    max_length: int,
) -> Encoded:
    return encode_samples([sample], tokenizer, image_token_id, n_image_tokens, max_length)[0]


def _checked(
    sample: Sample,
    ids: list[int],
    mask: list[int],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    n_image_tokens: int,
    max_length: int,
) -> Encoded:
    """Check one rendered sample's supervised spans, expand its image token, truncate it."""
    file, line = sample.origin

    answers = [m for m in sample.messages if m["role"] == "assistant"]
    runs = _runs(mask)
    if len(runs) != len(answers):
        raise DataError(
            file, line, "conversations",
            f"sample {sample.id}: {len(answers)} gpt turns but {len(runs)} supervised token spans",
        )
    for (start, end), message in zip(runs, answers, strict=True):
        spelled = _squash(tokenizer.decode(ids[start:end]))
        if not spelled.startswith(_squash(content_text(message))):
            raise DataError(
                file, line, "conversations",
                f"sample {sample.id}: tokenization mismatch: supervised span spells {spelled[:60]!r}",
            )

    # Expand the single <image> id to the tower's token count, as LlavaProcessor does in text.
    if sample.image is not None:
        at = ids.index(image_token_id)
        ids = ids[:at] + [image_token_id] * n_image_tokens + ids[at + 1 :]
        mask = mask[:at] + [0] * n_image_tokens + mask[at + 1 :]
        shift = n_image_tokens - 1
        runs = [(s + shift, e + shift) if s > at else (s, e) for s, e in runs]

    truncated = 0
    if len(ids) > max_length:
        # cut after the last whole assistant turn that fits; the image sits before the first answer,
        # so its span is never cut
        fitting = [end for _, end in runs if end <= max_length]
        if not fitting:
            raise DataError(
                file, line, "conversations",
                f"sample {sample.id}: {len(ids)} tokens; the first answer ends past max_length={max_length}",
            )
        truncated = len(runs) - len(fitting)
        ids, mask = ids[: fitting[-1]], mask[: fitting[-1]]

    labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    return Encoded(ids, labels, truncated)
