"""Does a trained model look at the image, or copy its answer from the conversation?

Asks the world's held-out colour questions ("What colour is the ball?") three ways, greedy, through
plain transformers and the model's own chat template:

    alone        the question on its own (what the benchmark asks)
    right first  after a turn "Is there a <true colour> <kind>?" -> "yes"
    wrong first  after a turn "Is there a <other colour> <kind>?" -> "no"

A model that reads the image answers all three alike. One that learned to copy the colour named
next to the kind earlier in the conversation scores high on "right first" and answers the *other*
colour on "wrong first" (printed as "copied"). Multi-turn training records whose turns share an
object kind teach exactly that (world.short_answer_independent_turns).

    python bench/copy_shortcut.py runs/tiny            # the run directory of `xllava run`
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from xllava.world.lexicon import COLOURS, SHORT_ANSWER_INSTRUCTION  # noqa: E402
from xllava.world.phrases import coloured  # noqa: E402


def ask(model, processor, image: Image.Image, turns: list[tuple[str, str]], question: str) -> str:
    messages: list[dict] = []
    for i, (text, answer) in enumerate([*turns, (question, None)]):
        parts = [{"type": "image"}] if i == 0 else []
        messages.append({"role": "user", "content": [*parts, {"type": "text", "text": text}]})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    reply = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return reply.strip().rstrip(".").lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory (holds world/ and instruct/model)")
    parser.add_argument("--model", type=Path, help="model directory (default: RUN/instruct/model)")
    args = parser.parse_args()
    model_dir = args.model or args.run / "instruct/model"
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    bench = args.run / "world/bench/en.jsonl"
    rows = [r for r in map(json.loads, bench.read_text(encoding="utf-8").splitlines()) if r["category"] == "colour"]
    if not rows:
        raise SystemExit(f"{bench}: no colour questions")
    instruction = SHORT_ANSWER_INSTRUCTION["en"]
    hits = dict.fromkeys(["alone", "right first", "wrong first", "wrong first: copied"], 0)
    for row in tqdm(rows, desc="colour questions", unit="q"):
        image = Image.open(args.run / "world" / row["image"]).convert("RGB")
        kind, truth = row["query"]["kind"], row["answer"]
        other = next(c for c in COLOURS if c != truth)
        question = row["text"].split("\n")[0]
        hits["alone"] += ask(model, processor, image, [], row["text"]) == truth
        right = [(f"Is there {coloured(truth, kind, 'en', 'a')}?\n{instruction}", "yes")]
        hits["right first"] += ask(model, processor, image, right, question) == truth
        decoy = [(f"Is there {coloured(other, kind, 'en', 'a')}?\n{instruction}", "no")]
        wrong = ask(model, processor, image, decoy, question)
        hits["wrong first"] += wrong == truth
        hits["wrong first: copied"] += wrong == other
    for name, n in hits.items():
        print(f"{name:<20} {100 * n / len(rows):5.1f}%  ({n}/{len(rows)})")


if __name__ == "__main__":
    main()
