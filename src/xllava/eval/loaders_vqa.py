"""Loaders of VQAv2 (questions and annotations JSON, or LLaVA's question JSONL) and GQA (questions
JSON keyed by id, balanced or all, or LLaVA's question JSONL with the GQA file as annotations)."""

from __future__ import annotations

from pathlib import Path

from xllava.eval.bench_files import (
    SHORT_ANSWER_PROMPT,
    field_value,
    find_image,
    image_index,
    load_llava_questions,
    question_lang,
    read_json,
    with_post_prompt,
)
from xllava.eval.items import BenchmarkFormatError, EvalItem

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
    data = read_json(questions)
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
        language = question_lang(lang, q.get("lang"), text)
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
    ann = read_json(annotations)
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
    data = read_json(path)
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
        text = str(field_value(q, "question", questions, where))
        image_id = str(field_value(q, "imageId", questions, where))
        image = index.get(image_id) or find_image(image_folder, image_id, questions, where, "imageId")
        language = question_lang(lang, q.get("lang"), text)
        prompt = SHORT_ANSWER_PROMPT.get(language) if post_prompt == "default" else post_prompt
        answers = [str(q["answer"])] if "answer" in q else []
        category, extra = _gqa_types(q)
        items.append(EvalItem(str(qid), image, text, with_post_prompt(text, prompt), language, answers,
                              category, extra))
    return items
