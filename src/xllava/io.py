"""Writing artifact directories so that a killed process never leaves a half-written one behind,
and stamping a built directory with what it was built from."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(out_dir: Path) -> Iterator[Path]:
    """Yield a scratch directory next to out_dir; on success it replaces out_dir in one rename."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():  # left by an earlier, interrupted write
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def stamp_matches(stamp_file: Path, made_from: dict) -> bool:
    """Whether the directory holding stamp_file was built from `made_from` (see write_stamp)."""
    return stamp_file.exists() and json.loads(stamp_file.read_text(encoding="utf-8")) == made_from


def write_stamp(stamp_file: Path, made_from: dict) -> None:
    stamp_file.write_text(json.dumps(made_from, indent=1, sort_keys=True), encoding="utf-8")
