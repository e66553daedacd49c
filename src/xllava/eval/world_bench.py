"""The spine evaluation: greedy answers to the world's held-out short-answer questions, scored by
exact match per language and question type. Predictions are appended line by line, so an
interrupted evaluation resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

from xllava.config import EvalConfig
from xllava.eval.exact_match import score
from xllava.infer import answer_all
from xllava.model.assemble import load_llava


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from an interrupted run: regenerate from here
    return rows


def evaluate(cfg: EvalConfig, model_dir: Path, bench_dir: Path, out_dir: Path) -> dict:
    model, processor = load_llava(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for lang in cfg.languages:
        questions = read_jsonl(bench_dir / f"{lang}.jsonl")
        if not questions:
            raise FileNotFoundError(f"no benchmark questions in {bench_dir / f'{lang}.jsonl'}")
        questions = questions[: cfg.limit] if cfg.limit else questions
        pred_path = out_dir / f"predictions_{lang}.jsonl"
        done = {r["question_id"]: r for r in read_jsonl(pred_path)}
        todo = [q for q in questions if q["question_id"] not in done]
        # rewrite the good lines (dropping a torn tail), then append new ones as they finish
        with pred_path.open("w", encoding="utf-8") as f:
            for r in done.values():
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for start in range(0, len(todo), cfg.batch_size * 4):
            chunk = todo[start : start + cfg.batch_size * 4]
            answers = answer_all(
                model,
                processor,
                [bench_dir.parent / q["image"] for q in chunk],
                [q["text"] for q in chunk],
                batch_size=cfg.batch_size,
                max_new_tokens=cfg.max_new_tokens,
                desc=f"eval {lang}",
                image_first=cfg.image_first,
            )
            with pred_path.open("a", encoding="utf-8") as f:
                for q, a in zip(chunk, answers, strict=True):
                    row = {**q, "prediction": a}
                    done[q["question_id"]] = row
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        results[lang] = score([done[q["question_id"]] for q in questions])
    (out_dir / "scores.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return results
