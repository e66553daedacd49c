"""Loader of POPE in the layouts it circulates in: the official category files (JSONL or JSON
arrays), a folder of them, and LLaVA's question file with the official files as its labels."""

from __future__ import annotations

import re
from pathlib import Path

from xllava.eval.bench_files import (
    SHORT_ANSWER_PROMPT,
    field_value,
    image_at,
    question_lang,
    read_records,
    with_post_prompt,
)
from xllava.eval.items import BenchmarkFormatError, EvalItem

# ---------------------------------------------------------------- POPE

POPE_FILE = re.compile(r"pope_(\w+?)(?:_\d+)?$")


def pope_category(path: Path) -> str:
    """`coco_pope_adversarial.json` -> adversarial (the file's category, as LLaVA's eval_pope reads it)."""
    match = POPE_FILE.search(path.stem)
    return match.group(1) if match else path.stem


def _pope_label(row: dict, path: Path, where: int | str) -> str:
    label = str(field_value(row, "label", path, where)).strip().lower()
    if label not in ("yes", "no"):
        raise BenchmarkFormatError(path, where, "label", f"expected 'yes' or 'no', got {label!r}")
    return label


def _pope_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl") and "pope" in p.name)
    if not files:
        raise FileNotFoundError(f"{folder}: no POPE files (coco_pope_{{category}}.json)")
    return files


def load_pope(questions: Path, image_folder: Path, lang: str | None = None,
              post_prompt: str | None = "default", annotations: Path | None = None) -> list[EvalItem]:
    """POPE in the layouts it circulates in:
    - one official file ({question_id, image, text, label} per line, or a JSON array of them); the
      category is the row's `category` or else the file's (`coco_pope_popular.json` -> popular);
    - a folder of the official files: each file's questions are numbered from 1, so ids become
      `{category}-{question_id}`;
    - LLaVA's layout: a question file with `category` and no labels, and `annotations` naming the
      folder of official files whose labels are taken in order within each category (as LLaVA's
      eval_pope pairs them)."""
    if questions.is_dir():
        items = []
        for path in _pope_files(questions):
            for it in load_pope(path, image_folder, lang, post_prompt):
                it.extra["file_question_id"] = it.question_id
                it.question_id = f"{it.category}-{it.question_id}"
                items.append(it)
        return items
    labels: dict[str, list[tuple[Path, int | str, dict]]] = {}
    if annotations is not None:
        for path in _pope_files(annotations) if annotations.is_dir() else [annotations]:
            labels[pope_category(path)] = [(path, where, row) for where, row in read_records(path)]
    file_category = pope_category(questions)
    seen: dict[str, int] = {}
    items = []
    for where, row in read_records(questions):
        qid = str(field_value(row, "question_id", questions, where, (str, int)))
        text = str(field_value(row, "text", questions, where))
        name = str(field_value(row, "image", questions, where))
        image = image_at(image_folder, name, questions, where)
        category = str(row.get("category") or file_category)
        if annotations is not None:
            if category not in labels:
                raise BenchmarkFormatError(questions, where, "category",
                                           f"{category!r} has no annotation file coco_pope_{category}.json in {annotations}")
            k = seen.get(category, 0)
            seen[category] = k + 1
            if k >= len(labels[category]):
                raise BenchmarkFormatError(questions, where, "category",
                                           f"more {category} questions than labels in {labels[category][0][0]}")
            ann_path, ann_where, ann = labels[category][k]
            if "image" in ann and str(ann["image"]) != name:
                raise BenchmarkFormatError(ann_path, ann_where, "image",
                                           f"{ann['image']!r} differs from question {qid}'s image {name!r} "
                                           f"({questions}); labels pair with questions in order")
            label = _pope_label(ann, ann_path, ann_where)
        else:
            label = _pope_label(row, questions, where)
        language = question_lang(lang, row.get("lang"), text)
        prompt = SHORT_ANSWER_PROMPT.get(language) if post_prompt == "default" else post_prompt
        items.append(EvalItem(qid, image, text, with_post_prompt(text, prompt), language, [label], category))
    for category, count in seen.items():
        if count != len(labels[category]):
            raise BenchmarkFormatError(labels[category][0][0], None, "label",
                                       f"{len(labels[category])} labels but {count} {category} questions in {questions}")
    return items
