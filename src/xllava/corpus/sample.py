"""The shipped sample of the aligned LibreOffice help corpus, and the held-out split.

`data/libreoffice_help.jsonl.xz` holds ko-en-zh paragraph triples built by
`xllava.corpus.build` from the Debian packages (see data/NOTICE for the MPL-2.0 terms), so
that tests and the default recipes need no apt. Each record has a `split`: whole help pages
are either `train` or `heldout` (by a stable hash of the page path), and nothing that learns
vocabulary or weights may read the held-out pages.
"""

from __future__ import annotations

import json
import lzma
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

LANGS = ("en", "ko", "zh")
SAMPLE_NAME = "libreoffice_help.jsonl.xz"
Split = Literal["train", "heldout"]


def sample_path() -> Path:
    return Path(str(files("xllava.corpus") / "data" / SAMPLE_NAME))


def notice_path() -> Path:
    return Path(str(files("xllava.corpus") / "data" / "NOTICE"))


def read_records(path: Path) -> list[dict]:
    """Records of a corpus file (.jsonl or .jsonl.xz), checked for the fields the readers rely on."""
    opener = lzma.open if path.suffix == ".xz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            for field in ("id", "en", "split"):
                if field not in rec:
                    raise ValueError(f"{path}:{lineno}: missing field {field!r}")
            if rec["split"] not in ("train", "heldout"):
                raise ValueError(f"{path}:{lineno}: field 'split' is {rec['split']!r}, not train/heldout")
            records.append(rec)
    return records


@lru_cache(maxsize=4)
def _cached(path: str) -> tuple[dict, ...]:
    return tuple(read_records(Path(path)))


def load_records(path: Path | None = None) -> tuple[dict, ...]:
    """All records of the shipped sample (or of a full build at `path`)."""
    return _cached(str(path or sample_path()))


def texts(lang: str, split: Split, path: Path | None = None, limit: int | None = None) -> list[str]:
    """One language's paragraphs from one split, in file order."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r} is not in the LibreOffice corpus (have {LANGS})")
    out = [r[lang] for r in load_records(path) if r["split"] == split and r.get(lang)]
    return out[:limit] if limit is not None else out
