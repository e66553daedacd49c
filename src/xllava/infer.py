"""Batched greedy answers from a LLaVA directory, through its own chat template and processor.

This is the inference path the evaluation, the tests and (later) the server share; it uses only
public transformers calls, so plain `transformers` with no xllava import reproduces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration, LlavaProcessor


def user_message(question: str, with_image: bool = True, image_first: bool = True) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": question}]
    if with_image:
        content.insert(0 if image_first else 1, {"type": "image"})
    return [{"role": "user", "content": content}]


@torch.no_grad()
def answer_batch(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    images: Sequence[Path],
    questions: Sequence[str],
    max_new_tokens: int = 16,
    image_first: bool = True,
) -> list[str]:
    prompts = [
        processor.apply_chat_template(user_message(q, image_first=image_first), add_generation_prompt=True)
        for q in questions
    ]
    pictures = []
    for path in images:
        with Image.open(path) as im:
            pictures.append(im.convert("RGB"))
    processor.tokenizer.padding_side = "left"
    # pixels in the weights' dtype (bf16 on a GPU): the ids stay integers
    inputs = processor(images=pictures, text=prompts, return_tensors="pt", padding=True).to(model.device, dtype=model.dtype)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in processor.batch_decode(new, skip_special_tokens=True)]


def answer_all(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    images: Sequence[Path],
    questions: Sequence[str],
    batch_size: int = 32,
    max_new_tokens: int = 16,
    desc: str = "generate",
    image_first: bool = True,
) -> list[str]:
    model.eval()
    answers: list[str] = []
    for start in tqdm(range(0, len(questions), batch_size), desc=desc, unit="batch"):
        answers += answer_batch(
            model,
            processor,
            images[start : start + batch_size],
            questions[start : start + batch_size],
            max_new_tokens,
            image_first,
        )
    return answers
