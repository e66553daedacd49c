"""Users' own corpora: plain text (one document per line) and JSONL, NFC-normalised.

Korean is NFC-normalised on the way in (never NFKC: that rewrites compatibility jamo such as
ㅋ into conjoining jamo), so text from macOS files (NFD) tokenises like everything else.
Bad input names the file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_TOKEN = "<image>"


class CorpusError(ValueError):
    """A corpus file that cannot be read as text: the message names file, line and field."""


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def read_text_lines(path: Path) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file."""
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if line.strip():
                yield nfc(line)


def _field_texts(record: dict, field: str, where: str) -> list[str]:
    if field not in record:
        raise CorpusError(f"{where}: no field {field!r} (fields: {sorted(record)})")
    value = record[field]
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    # LLaVA conversation lists: the text of every turn, without the image placeholder
    if isinstance(value, list) and all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in value):
        return [t["value"].replace(IMAGE_TOKEN, "").strip() for t in value]
    raise CorpusError(f"{where}: field {field!r} is {type(value).__name__}, expected a string or "
                      "a list of {'value': str} turns")


def read_jsonl(path: Path, field: str = "text", lang: str | None = None, lang_field: str = "lang") -> Iterator[str]:
    """Texts of `field` in each JSONL record; with `lang`, only records whose `lang_field` equals it."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if lang is not None and record.get(lang_field) != lang:
                continue
            for text in _field_texts(record, field, where):
                if text.strip():
                    yield nfc(text)


def read_parquet(path: Path, field: str = "text", lang: str | None = None, lang_field: str = "lang") -> Iterator[str]:
    """The `field` column of a Parquet file (as Hugging Face datasets publish Wikipedia dumps), read in
    batches; with `lang`, rows whose `lang_field` column equals it. Needs pyarrow (the `parquet` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise CorpusError(f"{path}: reading Parquet needs pyarrow (pip install 'xllava[parquet]')") from err
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    if field not in names:
        raise CorpusError(f"{path}: no column {field!r} (columns: {names})")
    if lang is not None and lang_field not in names:
        raise CorpusError(f"{path}: no column {lang_field!r} to filter by language (columns: {names})")
    columns = [field] + ([lang_field] if lang is not None else [])
    for batch in table.iter_batches(columns=columns, batch_size=4096):
        texts = batch.column(0).to_pylist()
        langs = batch.column(1).to_pylist() if lang is not None else [None] * len(texts)
        for text, row_lang in zip(texts, langs, strict=True):
            if isinstance(text, str) and text.strip() and (lang is None or row_lang == lang):
                yield nfc(text)


def read_corpus(path: Path, field: str = "text", lang: str | None = None) -> Iterator[str]:
    """Dispatch on the file name: .jsonl/.ndjson as JSONL, .parquet as Parquet, anything else as
    plain text lines (a document per line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if path.suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path, field, lang)
    if path.suffix == ".parquet":
        return read_parquet(path, field, lang)
    return read_text_lines(path)


def is_heldout(text: str, heldout_percent: int) -> bool:
    """A stable, content-based split: the same text lands in the same split on every run."""
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % 100 < heldout_percent


def split_texts(texts: Iterable[str], heldout_percent: int) -> tuple[list[str], list[str]]:
    train, heldout = [], []
    for t in texts:
        (heldout if is_heldout(t, heldout_percent) else train).append(t)
    return train, heldout
