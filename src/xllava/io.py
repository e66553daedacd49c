"""Writing artifact directories so that a killed process never leaves a half-written one behind."""

from __future__ import annotations

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
