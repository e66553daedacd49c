"""Reading benchmark files: rows of JSONL and JSON arrays, required fields, one image index per
folder, question languages and post-prompts, and the LLaVA question JSONL the other layouts build on.
Every error names the file, the line (or row / key) and the field."""

from __future__ import annotations

import json
import os
import re
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


def read_json(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BenchmarkFormatError(path, f"line {err.lineno}", None, f"not JSON ({err.msg})") from None


def field_value(row: dict, name: str, path: Path, where: int | str, kind: type | tuple = str) -> object:
    if name not in row or row[name] is None:
        raise BenchmarkFormatError(path, where, name, "missing")
    value = row[name]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip() and kind is str):
        raise BenchmarkFormatError(path, where, name, f"expected a non-empty {getattr(kind, '__name__', kind)}")
    return value


def image_at(folder: Path, name: str, path: Path, where: int | str, field_name: str = "image") -> Path:
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


def find_image(folder: Path, stem: str, path: Path, where: str, field_name: str) -> Path:
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


def question_lang(explicit: str | None, row_lang: object, text: str) -> str:
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
    data = read_json(path)
    assert isinstance(data, list)
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise BenchmarkFormatError(path, f"[{i}]", None, "each element must be a JSON object")
        yield f"[{i}]", row


# ---------------------------------------------------------------- LLaVA question JSONL


def load_llava_questions(questions: Path, image_folder: Path, lang: str | None = None,
                         post_prompt: str | None = None) -> list[EvalItem]:
    """LLaVA eval-style questions; `text` is the prompt as given (it usually carries its post-prompt).
    Gold answers, when present, come from `answer` (one) or `answers` (a list)."""
    items = []
    for number, row in read_jsonl_rows(questions):
        qid = field_value(row, "question_id", questions, number, (str, int))
        text = str(field_value(row, "text", questions, number))
        image = image_at(image_folder, str(field_value(row, "image", questions, number)), questions, number)
        if "answers" in row:
            answers = row["answers"]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise BenchmarkFormatError(questions, number, "answers", "expected a list of strings")
        elif "answer" in row:
            answers = [str(field_value(row, "answer", questions, number, (str, int)))]
        else:
            answers = []
        items.append(EvalItem(
            question_id=str(qid), image=image, question=text, prompt=with_post_prompt(text, post_prompt),
            lang=question_lang(lang, row.get("lang"), text), answers=answers, category=str(row.get("category", "")),
            extra={k: row[k] for k in ("scene_id", "query") if k in row},
        ))
    return items




def clear_image_indexes() -> None:
    """Forget the folder indexes (a benchmark of loading speed scans each time)."""
    _INDEXES.clear()
