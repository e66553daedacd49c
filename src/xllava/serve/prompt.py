"""OpenAI messages to model inputs: chat-template messages, images, token ids and pixel values.

The model directory's own chat template renders the conversation (image parts become `<image>`),
and its own processor expands each `<image>` into the image's tokens, so the server sees exactly
the prompts the model was trained on and that plain transformers would build.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import LlavaProcessor

from xllava.model.families import IMAGE_TOKEN
from xllava.serve.config import ServeConfig
from xllava.serve.errors import ApiError
from xllava.serve.images import load_image
from xllava.serve.limits import check_processed_size, check_text_chars
from xllava.serve.protocol import ChatRequest, ImagePart


@dataclass
class Prompt:
    input_ids: list[int]
    pixel_values: torch.Tensor | None  # [n_images, 3, H, W] or None for a text-only prompt
    n_images: int


def _text(s: str, param: str) -> str:
    # Korean typed on some systems arrives decomposed (NFD); the model was trained on NFC
    s = unicodedata.normalize("NFC", s)
    if IMAGE_TOKEN in s:
        raise ApiError(400, f"text may not contain the image placeholder {IMAGE_TOKEN}; send images as "
                       "image_url parts", param)
    return s


def request_messages(
    req: ChatRequest, cfg: ServeConfig, max_chars: int | None = None, image_processor: Any = None
) -> tuple[list[dict], list[Image.Image]]:
    """The request's messages in the parts form the chat templates render, and its images in order.

    max_chars: the most characters of text a prompt within the token limit can hold, checked
    before any image is decoded or any text tokenised; image_processor: the model's, whose output
    size each image is checked against (limits.check_processed_size).
    """
    if max_chars is not None:
        texts = [m.content for m in req.messages if isinstance(m.content, str)]
        texts += [p.text for m in req.messages if isinstance(m.content, list) for p in m.content
                  if not isinstance(p, ImagePart)]
        check_text_chars(texts, max_chars)
    messages: list[dict] = []
    images: list[Image.Image] = []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        if m.content is None or isinstance(m.content, str):
            messages.append({"role": role, "content": _text(m.content or "", f"messages.{i}.content")})
            continue
        parts: list[dict] = []
        for j, part in enumerate(m.content):
            param = f"messages.{i}.content.{j}"
            if isinstance(part, ImagePart):
                if len(images) >= cfg.max_images:
                    raise ApiError(400, f"at most {cfg.max_images} images per request", param, "too_many_images")
                image = load_image(part.image_url.url, cfg, param + ".image_url.url")
                if image_processor is not None:
                    check_processed_size(image, image_processor, cfg, param + ".image_url.url")
                images.append(image)
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": _text(part.text, param + ".text")})
        messages.append({"role": role, "content": parts})
    return messages, images


def encode(
    processor: LlavaProcessor, messages: list[dict], images: list[Image.Image], max_prompt_tokens: int
) -> Prompt:
    """Render with the model's chat template and run its processor; refuse prompts over the limit."""
    try:
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=images or None, text=[text], return_tensors="pt")
    except ApiError:
        raise
    except Exception as e:  # a template or processor refusing this conversation is the request's fault
        raise ApiError(400, f"could not build the prompt: {type(e).__name__}: {e}", "messages") from None
    ids = inputs["input_ids"][0].tolist()
    if len(ids) > max_prompt_tokens:
        raise ApiError(400, f"the prompt is {len(ids)} tokens (images included), more than the limit of "
                       f"{max_prompt_tokens}", "messages", "context_length_exceeded")
    return Prompt(ids, inputs.get("pixel_values") if images else None, len(images))
