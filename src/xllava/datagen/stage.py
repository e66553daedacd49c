"""The `datagen` stage of a recipe: the world's train images -> teacher over HTTP -> LLaVA JSONL.

With no `teacher.base_url` the embedded world teacher is started on loopback, in a child process
(its own CPU core), for the duration of the stage, and requests are keyed by the logical endpoint `xllava-world-teacher` (its port changes from
run to run; the key must not), so an interrupted stage resumes from its store. Only train scenes are
sent when the world says which scenes are train (scene_graphs.json): the benchmark's images never
reach the teacher.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xllava.datagen.config import DatagenConfig
from xllava.datagen.derive import derive_training_set
from xllava.datagen.generate import generate
from xllava.datagen.openai_server import FaultConfig

WORLD_ENDPOINT = "xllava-world-teacher"
TRAINING_FILE = "instruct.jsonl"


def train_image_ids(world_dir: Path) -> set[str] | None:
    path = Path(world_dir) / "scene_graphs.json"
    if not path.is_file():
        return None
    return {g["scene_id"] for g in json.loads(path.read_text(encoding="utf-8")) if g.get("split") == "train"}


@contextmanager
def teacher_endpoint(cfg: DatagenConfig, world_dir: Path) -> Iterator[tuple[str, str | None]]:
    """(base_url, endpoint id) of the teacher: the configured one, or the embedded world teacher
    started on loopback for the duration of the block."""
    if cfg.teacher.base_url is not None:
        yield cfg.teacher.base_url, None
        return
    from xllava.datagen.world_teacher import world_teacher_process

    server = world_teacher_process(world_dir, FaultConfig(latency_s=cfg.world_teacher_latency_s)).start()
    try:
        yield server.base_url, WORLD_ENDPOINT
    finally:
        server.stop()


def run_datagen_stage(cfg: DatagenConfig, world_dir: Path, out_dir: Path, progress: bool = False) -> dict:
    """Generate into out_dir/store.jsonl, derive out_dir/instruct.jsonl; return the stage's figures."""
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    only = train_image_ids(world_dir)
    with teacher_endpoint(cfg, world_dir) as (base_url, endpoint):
        summary = generate(cfg, world_dir, out_dir, base_url, endpoint_id=endpoint, only_ids=only,
                           progress=progress)
    derived = derive_training_set(out_dir / cfg.store, out_dir / TRAINING_FILE, world_dir, cfg.quality,
                                  image_first=cfg.image_first)
    if derived["records"] == 0:
        raise RuntimeError(f"datagen produced no usable record (summary: {json.dumps(summary)[:1000]})")
    figures = {"generation": summary, "training_set": derived, "teacher": cfg.teacher.model,
               "endpoint": summary["endpoint"], "training_file": str(out_dir / TRAINING_FILE)}
    (out_dir / "summary.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    return figures
