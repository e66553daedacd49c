"""Loaders for the public benchmark formats, all returning `EvalItem`s: MMBench and LLaVA-Bench here,
VQAv2 and GQA in loaders_vqa.py, POPE in loaders_pope.py, the LLaVA question JSONL and the file
reading they share in bench_files.py; all are importable from this module.

Formats (field names as the public files spell them):
- LLaVA question JSONL + image folder: {question_id, image, text[, category, answer|answers, lang]}
- VQAv2: questions JSON {data_subtype, questions: [{question_id, image_id, question}]} (or LLaVA's
  question JSONL) and annotations JSON {annotations: [{question_id, answers: [{answer, answer_id}], ...}]}
- GQA: questions JSON {qid: {imageId, question, answer, types, isBalanced, ...}} (or LLaVA's JSONL)
- POPE: JSONL or JSON array {question_id, image, text, label[, category]}, a folder of the category
  files, or LLaVA's question file with the category files as labels
- MMBench-style TSV (VLMEvalKit): index, question, hint, A..D, answer, category, image (base64; a
  cell of <= 64 characters names another row's index, which is how circular copies share images)
- LLaVA-Bench: questions.jsonl {question_id, image, text, category}, context.jsonl {image, caption}
  (COCO: {image, captions, instances}), answers (reference) JSONL {question_id, text}

Benchmarks whose licences forbid redistribution are read from the user's paths; nothing is shipped.
Every error names the file, the line (or row / key) and the field.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from pathlib import Path

from xllava.eval.bench_files import (
    CHOICE_PROMPT,
    IMAGE_EXTENSIONS,
    SHORT_ANSWER_PROMPT,
    field_value,
    image_at,
    image_index,
    load_llava_questions,
    question_lang,
    read_json,
    read_jsonl_rows,
    read_records,
    with_post_prompt,
)
from xllava.eval.items import BenchmarkFormatError, EvalItem
from xllava.eval.loaders_pope import load_pope, pope_category
from xllava.eval.loaders_vqa import load_gqa, load_vqav2

__all__ = [
    "CHOICE_PROMPT", "CIRCULAR_STRIDE", "IMAGE_EXTENSIONS", "SHORT_ANSWER_PROMPT", "image_index", "load_gqa",
    "load_llava_bench", "load_llava_questions", "load_mmbench_tsv", "load_pope", "load_vqav2", "mcq_prompt",
    "pope_category", "read_json", "read_jsonl_rows", "read_records", "with_post_prompt",
]

CIRCULAR_STRIDE = 1_000_000  # MMBench: rotated copy k of row i has index i + k * 1e6


# ---------------------------------------------------------------- MMBench-style TSV


def _cell(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    value = value.strip()
    return "" if value.lower() == "nan" else value  # pandas writes missing cells as nan


def _decode_image(cell: str, out: Path, tsv: Path, where: str) -> Path:
    try:
        raw = base64.b64decode(cell, validate=True)
    except (binascii.Error, ValueError):
        raise BenchmarkFormatError(tsv, where, "image", "not valid base64") from None
    ext = ".png" if raw.startswith(b"\x89PNG") else ".jpg" if raw.startswith(b"\xff\xd8") else ".img"
    path = out.with_suffix(ext)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(ext + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(path)
    return path


def mcq_prompt(question: str, options: dict[str, str], hint: str, lang: str, post_prompt: str | None) -> str:
    """LLaVA's MMBench prompt: hint, question, `A. option` lines, then the post-prompt."""
    text = f"{hint}\n{question}" if hint else question
    for letter, option in options.items():
        text += f"\n{letter}. {option}"
    return with_post_prompt(text, post_prompt if post_prompt != "default" else CHOICE_PROMPT.get(lang))


def load_mmbench_tsv(tsv: Path, image_cache: Path, lang: str | None = None,
                     post_prompt: str | None = "default") -> list[EvalItem]:
    """VLMEvalKit-style MCQ TSV. Images are decoded once to `image_cache/{index}.png|jpg`."""
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: no such benchmark file")
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default cell limit
    with tsv.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = reader.fieldnames or []
        for needed in ("index", "question", "A", "B"):
            if needed not in header:
                raise BenchmarkFormatError(tsv, "header", needed, "missing column")
        if "image" not in header and "image_path" not in header:
            raise BenchmarkFormatError(tsv, "header", "image", "missing column (image or image_path)")
        rows = list(reader)
    letters = [c for c in header if len(c) == 1 and c.isupper()]
    by_index: dict[str, dict] = {}
    for number, row in enumerate(rows, start=1):
        index = _cell(row, "index")
        if not index.lstrip("-").isdigit():
            raise BenchmarkFormatError(tsv, f"row {number}", "index", f"expected an integer, got {index!r}")
        by_index[index] = row
    items = []
    for number, row in enumerate(rows, start=1):
        where = f"row {number}"
        index = _cell(row, "index")
        question = _cell(row, "question")
        if not question:
            raise BenchmarkFormatError(tsv, where, "question", "missing")
        options = {c: _cell(row, c) for c in letters if _cell(row, c)}
        if len(options) < 2:
            raise BenchmarkFormatError(tsv, where, "A", "an MCQ row needs at least two options")
        if "image" in header and _cell(row, "image"):
            cell, source = _cell(row, "image"), index
            if len(cell) <= 64:  # a reference to the row holding the image
                if cell not in by_index or len(_cell(by_index[cell], "image")) <= 64:
                    raise BenchmarkFormatError(tsv, where, "image", f"refers to row index {cell}, which has no image")
                cell, source = _cell(by_index[cell], "image"), cell
            image = _decode_image(cell, image_cache / source, tsv, where)
        else:
            image = image_at(tsv.parent, _cell(row, "image_path"), tsv, where, "image_path")
        answer = _cell(row, "answer")
        if answer and answer not in options:
            raise BenchmarkFormatError(tsv, where, "answer", f"{answer!r} is not one of the options {list(options)}")
        language = question_lang(lang, _cell(row, "lang"), question)
        hint = _cell(row, "hint")
        items.append(EvalItem(
            question_id=index, image=image, question=question,
            prompt=mcq_prompt(question, options, hint, language, post_prompt), lang=language,
            answers=[answer] if answer else [], category=_cell(row, "category"),
            extra={"options": options, "g_index": int(index) % CIRCULAR_STRIDE, "hint": hint},
        ))
    return items


# ---------------------------------------------------------------- LLaVA-Bench


def _llava_bench_context(row: dict, path: Path, where: int | str) -> tuple[str, str]:
    """(context text, variant) of one context row: in-the-wild's `caption` (a string, or a list of
    lines) or COCO's `captions` list and `instances` [{category, bbox}], laid out as LLaVA's review
    scripts lay them out (captions one per line; a blank line; `category: [x1, y1, x2, y2]` per object)."""
    if "captions" in row:
        captions = row["captions"]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise BenchmarkFormatError(path, where, "captions", "expected a list of strings")
        instances = row.get("instances", [])
        if not isinstance(instances, list):
            raise BenchmarkFormatError(path, where, "instances", "expected a list")
        boxes = []
        for k, inst in enumerate(instances):
            if not isinstance(inst, dict) or "category" not in inst or "bbox" not in inst:
                raise BenchmarkFormatError(path, where, f"instances[{k}]", "expected {category, bbox}")
            boxes.append(f"{inst['category']}: {inst['bbox']}")
        return "\n".join(captions) + "\n\n" + "\n".join(boxes), "coco"
    caption = row.get("caption")
    if isinstance(caption, list) and all(isinstance(c, str) for c in caption):
        return "\n".join(caption), "in_the_wild"
    if not isinstance(caption, str) or not caption.strip():
        raise BenchmarkFormatError(path, where, "caption", "missing (or `captions` for the COCO variant)")
    return caption, "in_the_wild"


def load_llava_bench(questions: Path, context: Path, references: Path, image_folder: Path,
                     lang: str | None = None) -> list[EvalItem]:
    """LLaVA-Bench: questions {question_id, image, text, category}, per-image context, reference
    answers {question_id, text}. In-the-wild (questions.jsonl, context.jsonl with `caption`,
    answers_gpt4.jsonl, images/) and COCO (qa90_questions.jsonl, caps_boxes_coco2014_val_80.jsonl with
    `captions` and `instances`, qa90_gpt4_answer.jsonl, COCO val2014 images)."""
    contexts: dict[str, tuple[str, str]] = {}
    for where, row in read_records(context):
        contexts[str(field_value(row, "image", context, where))] = _llava_bench_context(row, context, where)
    refs: dict[str, str] = {}
    for where, row in read_records(references):
        refs[str(field_value(row, "question_id", references, where, (str, int)))] = str(
            field_value(row, "text", references, where))
    items = []
    for number, row in read_records(questions):
        qid = str(field_value(row, "question_id", questions, number, (str, int)))
        name = str(field_value(row, "image", questions, number))
        text = str(field_value(row, "text", questions, number))
        if name not in contexts:
            raise BenchmarkFormatError(questions, number, "image", f"{name!r} has no caption in {context}")
        if qid not in refs:
            raise BenchmarkFormatError(questions, number, "question_id", f"{qid} has no reference answer in {references}")
        ctx, variant = contexts[name]
        items.append(EvalItem(
            question_id=qid, image=image_at(image_folder, name, questions, number), question=text, prompt=text,
            lang=question_lang(lang, row.get("lang"), text), answers=[], category=str(row.get("category", "all")),
            extra={"context": ctx, "reference": refs[qid], "variant": variant},
        ))
    return items
