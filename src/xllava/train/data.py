"""LLaVA conversation data: read JSON/JSONL, validate every record, convert to chat messages.

A bad record raises DataError naming the file, the line (JSONL; the record index for JSON) and
the field, before any training starts, so nothing already written is touched.
"""

from __future__ import annotations

import glob
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xllava.model.families import IMAGE_TOKEN

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class DataError(ValueError):
    def __init__(self, file: Path | str, line: int, field_name: str, message: str):
        self.file, self.line, self.field, self.message = str(file), line, field_name, message
        super().__init__(f"{file}:{line}: field '{field_name}': {message}")

    def __reduce__(self):  # rebuilt from its fields when a tokenising worker process raises it
        return type(self), (self.file, self.line, self.field, self.message)


@dataclass
class Sample:
    id: str
    image: Path | None  # absolute path, or None for a text-only sample
    messages: list[dict[str, Any]]  # chat messages, content as OpenAI-style parts
    lang: str | None = None
    task: str | None = None
    origin: tuple[str, int] = ("", 0)  # (file, line) for error messages
    extra: dict[str, Any] = field(default_factory=dict)


def read_data_records(path: Path) -> list[tuple[int, Any]]:
    """(line or index, record) pairs; JSONL lines are numbered from 1."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(path, number, "<line>", f"malformed JSON: {err.msg} at column {err.colno}") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, "<file>", f"malformed JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise DataError(path, 1, "<file>", "a LLaVA JSON file must hold a list of records")
    return list(enumerate(data, start=1))


def parse_record(
    record: Any, path: Path, line: int, image_root: Path, found: dict[str, Path] | None = None
) -> Sample:
    """One LLaVA record as a Sample. `found` remembers image files already resolved and checked
    (each image serves many records; resolving a path is the costliest step of parsing)."""
    found = {} if found is None else found
    if not isinstance(record, dict):
        raise DataError(path, line, "<record>", "record must be a JSON object")
    sample_id = str(record.get("id", f"{path.name}:{line}"))
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError(path, line, "conversations", f"sample {sample_id}: must be a non-empty list")

    image: Path | None = None
    if record.get("image") is not None:
        if not isinstance(record["image"], str):
            raise DataError(path, line, "image", f"sample {sample_id}: must be a path string")
        image = found.get(record["image"])
        if image is None:
            image = (image_root / record["image"]).resolve()
            if not image.is_file():
                raise DataError(path, line, "image", f"sample {sample_id}: image file {image} does not exist")
            found[record["image"]] = image

    messages: list[dict[str, Any]] = []
    image_turns = 0
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise DataError(path, line, where, f"sample {sample_id}: turn must be an object")
        role = ROLES.get(turn.get("from"))  # type: ignore[arg-type]
        if role is None:
            raise DataError(
                path, line, f"{where}.from", f"sample {sample_id}: unknown speaker {turn.get('from')!r}"
            )
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise DataError(path, line, f"{where}.value", f"sample {sample_id}: empty turn")
        value = unicodedata.normalize("NFC", value)
        if IMAGE_TOKEN in value:
            image_turns += value.count(IMAGE_TOKEN)
            if role != "user" or value.count(IMAGE_TOKEN) > 1:
                raise DataError(path, line, f"{where}.value", f"sample {sample_id}: misplaced {IMAGE_TOKEN}")
            # LLaVA data puts the image before or after the text; the template renders it where it is
            image_last = value.rstrip().endswith(IMAGE_TOKEN) and not value.lstrip().startswith(IMAGE_TOKEN)
            text = value.replace(IMAGE_TOKEN + "\n", "").replace("\n" + IMAGE_TOKEN, "")
            text = text.replace(IMAGE_TOKEN, "").strip()
            content: list[dict[str, Any]] = [{"type": "image"}, {"type": "text", "text": text}]
            if image_last:
                content.reverse()
        else:
            content = [{"type": "text", "text": value}]
        messages.append({"role": role, "content": content})

    if image is not None and image_turns != 1:
        raise DataError(path, line, "conversations", f"sample {sample_id}: needs exactly one {IMAGE_TOKEN}")
    if image is None and image_turns:
        raise DataError(path, line, "image", f"sample {sample_id}: {IMAGE_TOKEN} in text but no image")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(path, line, "conversations", f"sample {sample_id}: no gpt turn to learn from")
    extra = {k: v for k, v in record.items() if k not in {"id", "image", "conversations", "lang", "task"}}
    return Sample(sample_id, image, messages, record.get("lang"), record.get("task"), (str(path), line), extra)


def expand_data_path(pattern: Path) -> list[Path]:
    """A data path, or every file a glob matches (sorted); an empty list when nothing is there."""
    if glob.has_magic(str(pattern)):
        return sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
    return [pattern] if pattern.is_file() else []


def load_samples(
    paths: list[Path],
    image_root: Path | None = None,
    languages: list[str] | None = None,
    tasks: list[str] | None = None,
    image_roots: list[Path | None] | None = None,
) -> list[Sample]:
    """Samples of every file (globs expanded); `image_roots` gives each path its own image folder."""
    samples: list[Sample] = []
    roots = image_roots or [image_root] * len(paths)
    files: list[tuple[Path, Path | None]] = []
    for pattern, own_root in zip(paths, roots, strict=True):
        matched = expand_data_path(pattern)
        if not matched:
            raise FileNotFoundError(f"training data file {pattern} does not exist")
        files += [(path, own_root) for path in matched]
    for path, own_root in files:
        root = own_root or path.parent
        found: dict[str, Path] = {}
        for line, record in read_data_records(path):
            # records filtered out by their `lang` / `task` are not parsed (nor trained on)
            if isinstance(record, dict) and not (
                (languages is None or record.get("lang") in languages)
                and (tasks is None or record.get("task") in tasks)
            ):
                continue
            samples.append(parse_record(record, path, line, root, found))
    return samples
