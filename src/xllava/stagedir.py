"""A redone stage replaces the finished one only once it is complete.

A redo (changed config or `--force`) of a stage that holds a model trains in `<stage>.next` beside
the finished `<stage>`: a redo that fails (bad data, a kill, a full disk) leaves the previous model
where it was, and the next run resumes the redo from `<stage>.next`'s checkpoints. On completion
the two are swapped by renames (`<stage>` -> `<stage>.old`, `<stage>.next` -> `<stage>`), then
`<stage>.old` is deleted; `recover` finishes a swap a kill interrupted.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def replacement_dir(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".next")


def _old_dir(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".old")


def promote(work_dir: Path, stage_dir: Path) -> None:
    """Make the complete `work_dir` the stage's directory; the previous one is deleted only after."""
    old = _old_dir(stage_dir)
    if old.exists():
        shutil.rmtree(old)
    if stage_dir.exists():
        stage_dir.rename(old)
    work_dir.rename(stage_dir)
    if old.exists():
        shutil.rmtree(old)


def recover(stage_dir: Path) -> None:
    """Finish a swap that a kill interrupted: a complete `<stage>.next` (it has its manifest) whose
    stage directory was already moved aside becomes the stage directory."""
    work_dir = replacement_dir(stage_dir)
    if (work_dir / MANIFEST).exists() and not stage_dir.exists():
        work_dir.rename(stage_dir)
    old = _old_dir(stage_dir)
    if old.exists() and stage_dir.exists() and (stage_dir / MANIFEST).exists():
        shutil.rmtree(old)
    elif old.exists() and not stage_dir.exists():
        old.rename(stage_dir)  # killed between the two renames, before the new one was complete


def relocated(value: Any, old: str, new: str) -> Any:
    """`value` (JSON-like figures) with every string path under `old` moved under `new`."""
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: relocated(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [relocated(v, old, new) for v in value]
    return value
