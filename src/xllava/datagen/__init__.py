"""mvif data generation: multilingual visual-instruction data from any OpenAI-compatible vision teacher.

`generate` (the generator: selection, prompts, client, gates, store), `derive_training_set` (store ->
LLaVA JSONL), `run_datagen_stage` (a recipe's stage, with the embedded world teacher on loopback).
"""

from xllava.datagen.config import DatagenConfig
from xllava.datagen.stage import run_datagen_stage

__all__ = ["DatagenConfig", "run_datagen_stage"]
