"""Cost bounds a request is checked against before the expensive step each one guards.

The pixel cap alone does not bound what the processor does: a 1 x 20000 image has few pixels,
but an image processor that scales the short side up to the tower's size turns it into hundreds of
millions of pixels. So an image is also refused by its aspect ratio and by the size the model's own
processor would resize it to (computed from the processor's settings, without running it).

Likewise text: tokenising is linear but not cheap, and the prompt-token limit is only known after
it. A token never stands for more characters than the longest entry of the vocabulary, so a text of
more than `max_prompt_tokens x longest` characters is over the limit whatever its tokens: it is
refused before the tokenizer sees it.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from xllava.serve.config import ServeConfig
from xllava.serve.errors import ApiError


def resized_size(image_processor: Any, width: int, height: int) -> tuple[int, int]:
    """(width, height) the image processor resizes an image to, from its `size` settings.

    Covers the forms transformers' processors use: fixed `height`/`width`, `shortest_edge`
    (aspect kept, short side scaled to it, optionally capped by `longest_edge`), `longest_edge` alone.
    """
    if not getattr(image_processor, "do_resize", True):
        return width, height
    size = getattr(image_processor, "size", None) or {}
    size = dict(size) if not isinstance(size, dict) else size
    if size.get("height") and size.get("width"):
        return int(size["width"]), int(size["height"])
    short, long_ = min(width, height), max(width, height)
    if size.get("shortest_edge"):
        scale = size["shortest_edge"] / short
        if size.get("longest_edge") and long_ * scale > size["longest_edge"]:
            scale = size["longest_edge"] / long_
    elif size.get("longest_edge"):
        scale = size["longest_edge"] / long_
    else:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_aspect_ratio(width: int, height: int, cfg: ServeConfig, param: str) -> None:
    """413 for an image thinner than max_aspect_ratio allows (checked from the header, before decoding)."""
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > cfg.max_aspect_ratio:
        raise ApiError(413, f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, more than the limit of "
                       f"{cfg.max_aspect_ratio:g}:1", param, "image_too_large")


def check_processed_size(image: Image.Image, image_processor: Any, cfg: ServeConfig, param: str) -> None:
    """413 when the model's processor would resize the image past max_processed_pixels."""
    w, h = image.size
    rw, rh = resized_size(image_processor, w, h)
    if rw * rh > cfg.max_processed_pixels:
        raise ApiError(413, f"image is {w}x{h}; the model's processor would resize it to {rw}x{rh} = {rw * rh} "
                       f"pixels, more than the limit of {cfg.max_processed_pixels}", param, "image_too_large")


def longest_token_chars(tokenizer: Any) -> int:
    """An upper bound on the characters one token stands for: the longest vocabulary entry.

    Byte-level BPE writes each byte as one character and SentencePiece each character as itself
    (the word marker as one), so an entry's length bounds the text it decodes to.
    """
    longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
    return max(1, longest)


def check_text_chars(texts: list[str], limit: int) -> None:
    """400 when the texts alone are more characters than any prompt under the token limit can hold."""
    total = sum(len(t) for t in texts)
    if total > limit:
        raise ApiError(400, f"the messages hold {total} characters of text, more than any prompt within this "
                       f"server's token limit can hold ({limit} characters)", "messages", "context_length_exceeded")
