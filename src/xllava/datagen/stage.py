"""The `datagen` stage of a recipe: selected images -> the teacher over HTTP -> LLaVA JSONL.

The teacher is whatever OpenAI-compatible endpoint the caller hands in (`base_url`); the store's
request keys name the endpoint by `endpoint_id` when given (a loopback server's port changes from run
to run, the key must not), else by the public part of the URL, so an interrupted stage resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from xllava.datagen.config import DatagenConfig
from xllava.datagen.derive import derive_training_set
from xllava.datagen.generate import generate

TRAINING_FILE = "instruct.jsonl"


def read_image_ids(path: Path) -> set[str]:
    """One image id per line (blank lines and `#` comments skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}


def run_datagen_stage(cfg: DatagenConfig, image_root: Path, out_dir: Path, base_url: str,
                      endpoint_id: str | None = None, progress: bool = False) -> dict:
    """Generate into out_dir/store.jsonl, derive out_dir/instruct.jsonl; return the stage's figures."""
    image_root, out_dir = Path(image_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids_file = cfg.selection.image_ids_file
    only = read_image_ids(image_root / ids_file) if ids_file else None
    summary = generate(cfg, image_root, out_dir, base_url, endpoint_id=endpoint_id, only_ids=only, progress=progress)
    derived = derive_training_set(out_dir / cfg.store, out_dir / TRAINING_FILE, image_root, cfg.quality,
                                  image_first=cfg.image_first)
    if derived["records"] == 0:
        raise RuntimeError(f"datagen produced no usable record (summary: {json.dumps(summary)[:1000]})")
    figures = {"generation": summary, "training_set": derived, "teacher": cfg.teacher.model,
               "endpoint": summary["endpoint"], "training_file": str(out_dir / TRAINING_FILE)}
    (out_dir / "summary.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    return figures
