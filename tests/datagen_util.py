"""Helpers shared by the datagen tests: a small embedded world and the config the tests run with."""

from __future__ import annotations

import json
from pathlib import Path

from xllava.datagen.config import TASKS, DatagenConfig, ModelPrice
from xllava.world.config import WorldConfig

SMALL_WORLD = WorldConfig(n_train_scenes=40, n_eval_scenes=8, eval_questions_per_type=4)


def build_small_world(path: Path) -> Path:
    from xllava.world import build_world

    build_world(path, SMALL_WORLD)
    return path


def fast_config(**teacher) -> DatagenConfig:
    """Every task type, every world scene (2+ objects), quick retries for tests."""
    cfg = DatagenConfig.model_validate({
        "tasks": list(TASKS),
        "selection": {"min_main_objects": 1},
        "teacher": {"model": "world-teacher", "backoff_base_s": 0.02, "backoff_max_s": 0.2, "timeout_s": 5.0,
                    **teacher},
    })
    cfg.prices["world-teacher"] = ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0)
    return cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def content_key(record: dict) -> tuple:
    """What a training record says, independent of its id and of where its image path points."""
    return (Path(record["image"]).name, record["task"], record["lang"],
            json.dumps(record["conversations"], ensure_ascii=False))
