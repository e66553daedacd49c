"""Batched greedy answers for benchmark items, kept in a predictions JSONL that resumes.

One line per item: {question_id, prompt, raw (the decoded model output), text (what is scored: the
raw output, or its first N words under a word limit), word_limit, model_id, fingerprint, lang}. A
rerun keeps every complete line whose prompt, word limit and model fingerprint still match, drops a torn last line and
anything stale, and generates only what is missing, appending as each chunk finishes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from transformers import LlavaForConditionalGeneration, LlavaProcessor

from xllava.eval.items import EvalItem
from xllava.infer import answer_all

# X-LLaVA's 30-word variant appends this to the question and keeps the first 30 words of the answer.
ONE_SENTENCE = {"en": "Please answer in one sentence.", "ko": "한 문장으로 대답해주세요.", "zh": "请用一句话回答。"}


def limit_words(text: str, n: int | None) -> str:
    return " ".join(text.split()[:n]) if n else text


def model_fingerprint(model_dir: Path) -> str:
    """Identity of a model directory's weights: its config plus each weight file's size and mtime
    (hashing gigabytes of weights per evaluation would cost more than the evaluation)."""
    h = hashlib.sha256()
    for path in sorted(model_dir.glob("*.json")) + sorted(model_dir.glob("*.safetensors")):
        stat = path.stat()
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def read_predictions(path: Path) -> list[dict]:
    """Complete lines of a predictions file; reading stops at a torn (unparseable) line."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(row, dict) and "question_id" in row:
            rows.append(row)
    return rows


def generate_predictions(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    items: Sequence[EvalItem],
    out_path: Path,
    *,
    model_id: str,
    fingerprint: str,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    image_first: bool = True,
    word_limit: int | None = None,
    desc: str = "generate",
    memo: dict[tuple, str] | None = None,
) -> dict[str, dict]:
    """Predictions for every item (question_id -> row), reusing the file's matching lines. `memo`
    (shared by the caller across benchmarks of one model) maps (image, prompt, max_new_tokens) to
    an earlier raw output, so the same question asked by two formats is generated once. Rows are
    appended in the order answers become known."""
    wanted = {it.question_id: it for it in items}
    done: dict[str, dict] = {}
    for row in read_predictions(out_path):
        item = wanted.get(str(row["question_id"]))
        if (item and row.get("prompt") == item.prompt and row.get("fingerprint") == fingerprint
                and row.get("word_limit") == word_limit):
            done[item.question_id] = row
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as f:  # the kept lines, without a torn or stale tail
        for row in done.values():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    memo = {} if memo is None else memo

    def key(it: EvalItem) -> tuple:
        return str(it.image), it.prompt, max_new_tokens, image_first

    todo = [it for it in items if it.question_id not in done]

    def flush() -> None:  # append every item whose answer is now known
        with out_path.open("a", encoding="utf-8") as f:
            for it in todo:
                if it.question_id in done or key(it) not in memo:
                    continue
                raw = memo[key(it)]
                row = {"question_id": it.question_id, "prompt": it.prompt, "raw": raw,
                       "text": limit_words(raw, word_limit), "word_limit": word_limit, "model_id": model_id,
                       "fingerprint": fingerprint, "lang": it.lang}
                done[it.question_id] = row
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    flush()  # answers already known from another benchmark
    # one generation per distinct (image, prompt): POPE asks a positive once per sampling category
    pending = list({key(it): it for it in todo if key(it) not in memo}.values())
    step = max(1, batch_size * 4)
    for start in range(0, len(pending), step):
        chunk = pending[start : start + step]
        answers = answer_all(model, processor, [it.image for it in chunk], [it.prompt for it in chunk],
                             batch_size=batch_size, max_new_tokens=max_new_tokens, desc=desc,
                             image_first=image_first)
        memo.update(zip(map(key, chunk), answers, strict=True))
        flush()
    return {it.question_id: done[it.question_id] for it in items}
