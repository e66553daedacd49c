"""mvif data generation: multilingual visual-instruction data from any OpenAI-compatible vision teacher.

`generate` (the generator: selection, prompts, client, gates, store), `derive_training_set` (store ->
LLaVA JSONL), `run_datagen_stage` (a recipe's stage, with the embedded world teacher on loopback).

Imported lazily: xllava.config imports DatagenConfig, and the stage imports the world, which
imports xllava.config.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xllava.datagen.config import DatagenConfig
    from xllava.datagen.stage import run_datagen_stage

__all__ = ["DatagenConfig", "run_datagen_stage"]
_WHERE = {"DatagenConfig": "config", "run_datagen_stage": "stage"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"xllava.datagen.{_WHERE[name]}"), name)
    raise AttributeError(name)
