"""Loaders for the public benchmark formats, all returning `EvalItem`s.

Formats (field names as the public files spell them):
- LLaVA question JSONL + image folder: {question_id, image, text[, category, answer|answers, lang]}
- VQAv2: questions JSON {data_subtype, questions: [{question_id, image_id, question}]} and
  annotations JSON {annotations: [{question_id, answers: [{answer, answer_id}], ...}]}
- GQA: questions JSON {qid: {imageId, question, answer, types, ...}}
- POPE: JSONL {question_id, image, text, label[, category]}
- MMBench-style TSV (VLMEvalKit): index, question, hint, A..D, answer, category, image (base64; a
  cell of <= 64 characters names another row's index, which is how circular copies share images)
- LLaVA-Bench: questions.jsonl {question_id, image, text, category}, context.jsonl {image, caption},
  answers (reference) JSONL {question_id, text}

Benchmarks whose licences forbid redistribution are read from the user's paths; nothing is shipped.
Every error names the file, the line (or row / key) and the field.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from xllava.eval.items import BenchmarkFormatError, EvalItem
from xllava.eval.language import NEUTRAL, detect_language

# The LLaVA-1.5 post-prompts, and our Korean / Chinese renderings of them.
SHORT_ANSWER_PROMPT = {
    "en": "Answer the question using a single word or phrase.",
    "ko": "단어나 짧은 구로 답하세요.",
    "zh": "请用一个词或短语回答。",
}
# MMBench: LLaVA's English and Chinese post-prompts; the Korean one is K-MMBench's (lmms-eval).
CHOICE_PROMPT = {
    "en": "Answer with the option's letter from the given choices directly.",
    "ko": "주어진 선택지 중 해당 옵션의 문자로 바로 답하세요.",
    "zh": "请直接回答选项字母。",
}
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".webp")
CIRCULAR_STRIDE = 1_000_000  # MMBench: rotated copy k of row i has index i + k * 1e6


def read_jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise BenchmarkFormatError(path, number, None, f"not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkFormatError(path, number, None, "each line must be a JSON object")
            yield number, row


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BenchmarkFormatError(path, f"line {err.lineno}", None, f"not JSON ({err.msg})") from None


def _field(row: dict, name: str, path: Path, where: int | str, kind: type | tuple = str) -> object:
    if name not in row or row[name] is None:
        raise BenchmarkFormatError(path, where, name, "missing")
    value = row[name]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip() and kind is str):
        raise BenchmarkFormatError(path, where, name, f"expected a non-empty {getattr(kind, '__name__', kind)}")
    return value


def _image(folder: Path, name: str, path: Path, where: int | str, field_name: str = "image") -> Path:
    """An image named by a benchmark row: looked up in the folder's index (one scan), or on disk for
    names with a sub-folder."""
    if "/" not in name and folder.is_dir():
        found = image_index(folder).get(name)
        if found is not None:
            return found
    image = folder / name
    if not image.is_file():
        raise BenchmarkFormatError(path, where, field_name, f"image {image} does not exist")
    return image


def _find_image(folder: Path, stem: str, path: Path, where: str, field_name: str) -> Path:
    found = image_index(folder).get(stem) if folder.is_dir() else None
    if found is not None:
        return found
    for ext in ("", *IMAGE_EXTENSIONS):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise BenchmarkFormatError(path, where, field_name, f"no image {stem}.* in {folder}")


_TRAILING_ID = re.compile(r"(?:^|_)0*(\d+)$")
_INDEXES: dict[tuple[str, int], dict[str, Path]] = {}


def image_index(folder: Path) -> dict[str, Path]:
    """File name, stem and (for names ending in digits, as COCO's `COCO_val2014_000000000042.jpg`)
    numeric id -> path, from one scan of the folder; kept per folder and modification time, so the
    loaders of one run share it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    key = (str(folder.resolve()), folder.stat().st_mtime_ns)
    if key in _INDEXES:
        return _INDEXES[key]
    index: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            stem, dot, ext = name.rpartition(".")
            if not dot or f".{ext.lower()}" not in IMAGE_EXTENSIONS:
                continue
            path = folder / name
            index[name] = path
            index.setdefault(stem, path)
            match = _TRAILING_ID.search(stem)
            if match:
                index.setdefault(match.group(1), path)
    _INDEXES[key] = index
    return index


def _lang(explicit: str | None, row_lang: object, text: str) -> str:
    if explicit:
        return explicit
    if isinstance(row_lang, str) and row_lang:
        return row_lang
    if text.isascii():  # no Hangul or Han: English (or neutral, which reads as English too)
        return "en"
    found = detect_language(text)
    return "en" if found == NEUTRAL else found


def with_post_prompt(question: str, post_prompt: str | None) -> str:
    """The question with its post-prompt, unless the text already ends with it (LLaVA's question
    files carry theirs)."""
    if not post_prompt or question.rstrip().endswith(post_prompt.strip()):
        return question
    return f"{question}\n{post_prompt}"


# ---------------------------------------------------------------- LLaVA question JSONL


def load_llava_questions(questions: Path, image_folder: Path, lang: str | None = None,
                         post_prompt: str | None = None) -> list[EvalItem]:
    """LLaVA eval-style questions; `text` is the prompt as given (it usually carries its post-prompt).
    Gold answers, when present, come from `answer` (one) or `answers` (a list)."""
    items = []
    for number, row in read_jsonl_rows(questions):
        qid = _field(row, "question_id", questions, number, (str, int))
        text = str(_field(row, "text", questions, number))
        image = _image(image_folder, str(_field(row, "image", questions, number)), questions, number)
        if "answers" in row:
            answers = row["answers"]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise BenchmarkFormatError(questions, number, "answers", "expected a list of strings")
        elif "answer" in row:
            answers = [str(_field(row, "answer", questions, number, (str, int)))]
        else:
            answers = []
        items.append(EvalItem(
            question_id=str(qid), image=image, question=text, prompt=with_post_prompt(text, post_prompt),
            lang=_lang(lang, row.get("lang"), text), answers=answers, category=str(row.get("category", "")),
            extra={k: row[k] for k in ("scene_id", "query") if k in row},
        ))
    return items


# ---------------------------------------------------------------- VQAv2


def load_vqav2(questions: Path, annotations: Path | None, image_folder: Path, lang: str | None = None,
               post_prompt: str | None = "default") -> list[EvalItem]:
    """VQAv2 question (and, for scored splits, annotation) JSON. Images are found by image id in one
    scan of the folder: COCO's `COCO_{split}_{id:012d}.jpg` (test-dev questions use the test2015
    images, whatever their `data_subtype` says) or `{image_id}.*`. LLaVA's question JSONL
    ({question_id, image, text}) is read too, with the answers from `annotations` where given."""
    gold = _vqav2_annotations(annotations) if annotations is not None else {}
    if questions.suffix == ".jsonl":  # LLaVA's question file (llava_vqav2_mscoco_test-dev2015.jsonl)
        return _vqav2_llava_file(questions, annotations, gold, image_folder, lang, post_prompt)
    data = _read_json(questions)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise BenchmarkFormatError(questions, None, "questions", "expected an object with a 'questions' list")
    index = image_index(image_folder)
    items = []
    short_prompt = post_prompt == "default"
    for i, q in enumerate(data["questions"]):
        if not isinstance(q, dict):
            raise BenchmarkFormatError(questions, f"questions[{i}]", None, "expected an object")
        qid, text, image_id = q.get("question_id"), q.get("question"), q.get("image_id")
        if not isinstance(qid, (str, int)):
            raise BenchmarkFormatError(questions, f"questions[{i}]", "question_id", "missing")
        if not isinstance(text, str) or not text.strip():
            raise BenchmarkFormatError(questions, f"questions[{i}]", "question", "expected a non-empty string")
        if not isinstance(image_id, (str, int)):
            raise BenchmarkFormatError(questions, f"questions[{i}]", "image_id", "missing")
        image = index.get(str(image_id))
        if image is None:
            raise BenchmarkFormatError(questions, f"questions[{i}]", "image_id",
                                       f"no image for id {image_id} in {image_folder} "
                                       "(COCO_*_{id:012d}.jpg or {id}.*)")
        language = _lang(lang, q.get("lang"), text)
        prompt = SHORT_ANSWER_PROMPT.get(language) if short_prompt else post_prompt
        answers: list[str] = []
        category = ""
        extra: dict = {"image_id": image_id}
        if annotations is not None:
            record = gold.get(str(qid))
            if record is None:
                raise BenchmarkFormatError(annotations, None, "question_id", f"no annotation for question {qid}")
            answers = [a["answer"] for a in record["answers"]]
            category = str(record.get("answer_type", ""))
            extra["question_type"] = str(record.get("question_type", ""))
        items.append(EvalItem(str(qid), image, text, with_post_prompt(text, prompt), language, answers, category,
                              extra))
    return items


def _vqav2_annotations(annotations: Path) -> dict[str, dict]:
    """question id -> annotation record, each checked for its answers."""
    gold: dict[str, dict] = {}
    ann = _read_json(annotations)
    if not isinstance(ann, dict) or not isinstance(ann.get("annotations"), list):
        raise BenchmarkFormatError(annotations, None, "annotations", "expected an 'annotations' list")
    for i, a in enumerate(ann["annotations"]):
        if not isinstance(a, dict):
            raise BenchmarkFormatError(annotations, f"annotations[{i}]", None, "expected an object")
        answers = a.get("answers")
        if not isinstance(answers, list) or not answers:
            raise BenchmarkFormatError(annotations, f"annotations[{i}]", "answers", "expected a non-empty list")
        for j, ans in enumerate(answers):
            if not isinstance(ans, dict) or not isinstance(ans.get("answer"), str):
                raise BenchmarkFormatError(annotations, f"annotations[{i}].answers[{j}]", "answer", "missing")
        qid = a.get("question_id")
        if not isinstance(qid, (str, int)):
            raise BenchmarkFormatError(annotations, f"annotations[{i}]", "question_id", "missing")
        gold[str(qid)] = a
    return gold


def _vqav2_llava_file(questions: Path, annotations: Path | None, gold: dict[str, dict], image_folder: Path,
                      lang: str | None, post_prompt: str | None) -> list[EvalItem]:
    """LLaVA's VQAv2 question JSONL ({question_id, image, text} with the post-prompt in the text), with
    the answers from the annotations where given."""
    items = load_llava_questions(questions, image_folder, lang, post_prompt=None)
    for item in items:
        if post_prompt not in ("default", None):
            item.prompt = with_post_prompt(item.question, post_prompt)
        if annotations is not None:
            record = gold.get(item.question_id)
            if record is None:
                raise BenchmarkFormatError(annotations, None, "question_id",
                                           f"no annotation for question {item.question_id} (from {questions})")
            item.answers = [a["answer"] for a in record["answers"]]
            item.category = str(record.get("answer_type", ""))
            item.extra["question_type"] = str(record.get("question_type", ""))
    return items


# ---------------------------------------------------------------- GQA


def _gqa_questions(path: Path) -> dict[str, dict]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise BenchmarkFormatError(path, None, None, "expected an object keyed by question id")
    for qid, q in data.items():
        if not isinstance(q, dict):
            raise BenchmarkFormatError(path, f"question {qid}", None, "expected an object")
        if "isBalanced" in q and not isinstance(q["isBalanced"], bool):
            raise BenchmarkFormatError(path, f"question {qid}", "isBalanced", "expected true or false")
    return data


def _gqa_types(q: dict) -> tuple[str, dict]:
    """(structural type, extra fields): the official evaluator breaks accuracy down by structural
    and semantic type."""
    types = q.get("types") if isinstance(q.get("types"), dict) else {}
    return str(types.get("structural") or ""), {"semantic": str(types.get("semantic") or ""),
                                                "detailed": str(types.get("detailed") or "")}


def load_gqa(questions: Path, image_folder: Path, lang: str | None = None,
             post_prompt: str | None = "default", annotations: Path | None = None,
             balanced_only: bool = True) -> list[EvalItem]:
    """GQA questions as published (`*_balanced_questions.json` / `*_all_questions.json`: an object keyed
    by question id; images `{imageId}.jpg`), or LLaVA's question JSONL ({question_id, image, text})
    with `annotations` naming the GQA questions JSON that holds the answers and types.

    The official evaluator scores accuracy on balanced questions only, so a question whose
    `isBalanced` is false is left out unless `balanced_only` is False."""
    if questions.suffix == ".jsonl":
        gold = _gqa_questions(annotations) if annotations is not None else {}
        items = []
        for item in load_llava_questions(questions, image_folder, lang, post_prompt=None):
            q = gold.get(item.question_id)
            if annotations is not None and q is None:
                raise BenchmarkFormatError(annotations, None, "question_id",
                                           f"no question {item.question_id} (from {questions})")
            if q is not None and balanced_only and q.get("isBalanced") is False:
                continue
            if q is not None:
                item.answers = [str(q["answer"])] if "answer" in q else []
                item.category, extra = _gqa_types(q)
                item.extra.update(extra)
            if post_prompt not in ("default", None) and post_prompt:
                item.prompt = with_post_prompt(item.question, post_prompt)
            items.append(item)
        return items
    data = _gqa_questions(questions)
    index = image_index(image_folder)
    items = []
    for qid, q in data.items():
        if balanced_only and q.get("isBalanced") is False:
            continue
        where = f"question {qid}"
        text = str(_field(q, "question", questions, where))
        image_id = str(_field(q, "imageId", questions, where))
        image = index.get(image_id) or _find_image(image_folder, image_id, questions, where, "imageId")
        language = _lang(lang, q.get("lang"), text)
        prompt = SHORT_ANSWER_PROMPT.get(language) if post_prompt == "default" else post_prompt
        answers = [str(q["answer"])] if "answer" in q else []
        category, extra = _gqa_types(q)
        items.append(EvalItem(str(qid), image, text, with_post_prompt(text, prompt), language, answers,
                              category, extra))
    return items


# ---------------------------------------------------------------- POPE

POPE_FILE = re.compile(r"pope_(\w+?)(?:_\d+)?$")


def read_records(path: Path) -> Iterator[tuple[int | str, dict]]:
    """(line number or `[i]`, object) from a JSONL file or a JSON array of objects: POPE and LLaVA
    question files circulate in both shapes."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    with path.open(encoding="utf-8") as f:
        head = f.read(64).lstrip()
    if not head.startswith("["):
        yield from read_jsonl_rows(path)
        return
    data = _read_json(path)
    assert isinstance(data, list)
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise BenchmarkFormatError(path, f"[{i}]", None, "each element must be a JSON object")
        yield f"[{i}]", row


def pope_category(path: Path) -> str:
    """`coco_pope_adversarial.json` -> adversarial (the file's category, as LLaVA's eval_pope reads it)."""
    match = POPE_FILE.search(path.stem)
    return match.group(1) if match else path.stem


def _pope_label(row: dict, path: Path, where: int | str) -> str:
    label = str(_field(row, "label", path, where)).strip().lower()
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
        qid = str(_field(row, "question_id", questions, where, (str, int)))
        text = str(_field(row, "text", questions, where))
        name = str(_field(row, "image", questions, where))
        image = _image(image_folder, name, questions, where)
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
        language = _lang(lang, row.get("lang"), text)
        prompt = SHORT_ANSWER_PROMPT.get(language) if post_prompt == "default" else post_prompt
        items.append(EvalItem(qid, image, text, with_post_prompt(text, prompt), language, [label], category))
    for category, count in seen.items():
        if count != len(labels[category]):
            raise BenchmarkFormatError(labels[category][0][0], None, "label",
                                       f"{len(labels[category])} labels but {count} {category} questions in {questions}")
    return items


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
            image = _image(tsv.parent, _cell(row, "image_path"), tsv, where, "image_path")
        answer = _cell(row, "answer")
        if answer and answer not in options:
            raise BenchmarkFormatError(tsv, where, "answer", f"{answer!r} is not one of the options {list(options)}")
        language = _lang(lang, _cell(row, "lang"), question)
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
        contexts[str(_field(row, "image", context, where))] = _llava_bench_context(row, context, where)
    refs: dict[str, str] = {}
    for where, row in read_records(references):
        refs[str(_field(row, "question_id", references, where, (str, int)))] = str(
            _field(row, "text", references, where))
    items = []
    for number, row in read_records(questions):
        qid = str(_field(row, "question_id", questions, number, (str, int)))
        name = str(_field(row, "image", questions, number))
        text = str(_field(row, "text", questions, number))
        if name not in contexts:
            raise BenchmarkFormatError(questions, number, "image", f"{name!r} has no caption in {context}")
        if qid not in refs:
            raise BenchmarkFormatError(questions, number, "question_id", f"{qid} has no reference answer in {references}")
        ctx, variant = contexts[name]
        items.append(EvalItem(
            question_id=qid, image=_image(image_folder, name, questions, number), question=text, prompt=text,
            lang=_lang(lang, row.get("lang"), text), answers=[], category=str(row.get("category", "all")),
            extra={"context": ctx, "reference": refs[qid], "variant": variant},
        ))
    return items
