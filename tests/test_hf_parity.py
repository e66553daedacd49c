"""The exported directory is plain HF LLaVA: transformers alone loads it and answers as xllava does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter that never imports xllava.
PLAIN = r"""
import json, sys, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
model_dir, items = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
processor = AutoProcessor.from_pretrained(model_dir)
assert "xllava" not in sys.modules
out = []
for image, question in items:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[Image.open(image).convert("RGB")], text=[prompt], return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    out.append(processor.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
print(json.dumps({"answers": out, "class": type(model).__name__, "processor": type(processor).__name__}))
"""


def test_plain_transformers_matches_xllava(fast_run: Path) -> None:
    from xllava.infer import answer_batch
    from xllava.model.assemble import load_llava

    model_dir = fast_run / "instruct" / "model"
    bench = [json.loads(line) for line in (fast_run / "world" / "bench" / "ko.jsonl").read_text().splitlines()]
    bench += [json.loads(line) for line in (fast_run / "world" / "bench" / "en.jsonl").read_text().splitlines()]
    items = [(str(fast_run / "world" / q["image"]), q["text"]) for q in bench[::5][:6]]

    model, processor = load_llava(model_dir)
    ours = answer_batch(model, processor, [Path(i) for i, _ in items], [q for _, q in items], max_new_tokens=8)

    done = subprocess.run(
        [sys.executable, "-c", PLAIN, str(model_dir), json.dumps(items)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain["class"] == "LlavaForConditionalGeneration"
    assert plain["processor"] == "LlavaProcessor"
    assert plain["answers"] == ours


def test_export_has_the_interchange_files(fast_run: Path) -> None:
    model_dir = fast_run / "instruct" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["vision_feature_select_strategy"] == "default"  # CLIP drops its CLS token
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    processor_config = json.loads((model_dir / "processor_config.json").read_text())
    assert processor_config["image_token"] == "<image>"
    assert processor_config["num_additional_image_tokens"] == 1
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    image = [t for t in tokenizer["added_tokens"] if t["content"] == "<image>"]
    assert image and image[0]["special"] and config["image_token_index"] == image[0]["id"]
    assert config["text_config"]["vocab_size"] > image[0]["id"]
    template = (model_dir / "chat_template.jinja")
    assert template.exists() or "chat_template" in processor_config
