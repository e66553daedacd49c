"""Checkpoints a stage may resume from: complete, undamaged, and trained under the same config.

Trainer writes a checkpoint as a folder of files and resumes from whatever it is given: a file
truncated by a full disk or a kill fails deep inside safetensors or torch without its name, a
missing scheduler.pt silently restarts the warm-up, and a changed learning rate is silently
ignored (the optimizer state brings the old one back). So:

- after Trainer has written a checkpoint, a completion marker (MARKER) is written into it, last:
  the stage config it was trained under (minus the step budget and other settings that do not
  change the weights, NOT_IDENTITY; the batch as the global batch, so a run moved from two
  processes to one with twice the per-device batch resumes), what it started from (the upstream
  stages' hashes, where the pipeline gives them), and every file's size and SHA-256;
- on resume the checkpoints are tried newest first; one without a marker, with a missing, resized
  or altered file is skipped with a warning naming the damaged path, so training falls back to
  the newest complete one;
- the newest complete checkpoint's config must equal the current one, or the resume is refused
  with the fields that differ (`xllava run --force` starts the stage over). What it started from
  is compared where both the checkpoint and the caller know it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("xllava.train")

MARKER = "xllava-checkpoint.json"
# settings a resumed run may change: the step budget, and what does not change the weights (the
# micro-batch splits the global batch, `batch_size`, which does count)
NOT_IDENTITY = frozenset({"max_steps", "epochs", "save_steps", "logging_steps", "dataloader_workers", "feature_cache",
                          "micro_batch", "eval_batch_size", "padding_free",
                          "fused_norm"})


class ResumeRefused(RuntimeError):
    """The stage's checkpoints were trained under another config; resuming would mix the two."""


def stage_identity(cfg: Any) -> dict[str, Any]:
    """What a checkpoint must have been trained under to be resumed: the stage config (as JSON values)
    without NOT_IDENTITY."""
    dumped = cfg.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if k not in NOT_IDENTITY}


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_marker(checkpoint: Path, identity: dict[str, Any], step: int, started_from: dict | None = None) -> Path:
    """The completion marker of a checkpoint whose files are all written (atomic: temp file + rename)."""
    files = {}
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file() and not p.name.startswith(MARKER)):
        files[path.relative_to(checkpoint).as_posix()] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    marker = {"step": step, "config_hash": identity_hash(identity), "config": identity, "started_from": started_from,
              "files": files}
    tmp = checkpoint / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
    tmp.replace(checkpoint / MARKER)
    return checkpoint / MARKER


def damage(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (naming the file), or None when it is complete and intact."""
    marker_path = checkpoint / MARKER
    try:
        marker = json.loads(marker_path.read_text())
        files = marker["files"]
    except FileNotFoundError:
        return f"{marker_path} is missing: the checkpoint was not completely written"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{marker_path} is unreadable ({type(e).__name__}: {e})"
    for name, expected in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{path} is {size} bytes, {expected['bytes']} were written"
        if file_sha256(path) != expected["sha256"]:
            return f"{path} does not match the checksum written with it"
    return None


def checkpoints_newest_first(folder: Path) -> list[Path]:
    found = [(int(p.name.rsplit("-", 1)[1]), p) for p in folder.glob("checkpoint-*")
             if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()] if folder.is_dir() else []
    return [p for _, p in sorted(found, reverse=True)]


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ, with both values."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} in the checkpoint, {b!r} now")
    return out


def resume_point(folder: Path, identity: dict[str, Any], stage: str, started_from: dict | None = None,
                 warn: Callable[[str], None] = log.warning) -> str | None:
    """The newest complete, intact checkpoint in `folder` (None: start from the beginning).

    Damaged or incomplete checkpoints are skipped with a warning naming the path; a complete one
    trained under another config, or from other upstream stages, raises ResumeRefused naming the fields."""
    for checkpoint in checkpoints_newest_first(folder):
        problem = damage(checkpoint)
        if problem is not None:
            warn(f"{stage}: not resuming from {checkpoint}: {problem}; trying an older checkpoint")
            continue
        saved = json.loads((checkpoint / MARKER).read_text())
        diffs = config_differences(saved["config"], identity) if saved["config_hash"] != identity_hash(identity) else []
        before = saved.get("started_from")
        if before is not None and started_from is not None and before != started_from:
            diffs += config_differences(before, started_from, "started from: ")
        if diffs:
            raise ResumeRefused(
                f"{stage}: the checkpoints in {folder} were trained under another config ("
                + "; ".join(diffs) + "). Resuming would train a mix of the two: restore "
                f"the config, or rerun with --force to start {stage} over")
        return str(checkpoint)
    return None


class CompletionMarker(TrainerCallback):
    """Writes the marker into each checkpoint after Trainer has saved it (on_save runs after the save)."""

    def __init__(self, identity: dict[str, Any], started_from: dict | None = None):
        self.identity, self.started_from = identity, started_from

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's files (its RNG state, its shard) are written before they are hashed
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                write_marker(checkpoint, self.identity, state.global_step, self.started_from)
        return control
