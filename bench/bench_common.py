"""What the stage-2 bench scripts share: the world they train on and the machine line they print."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

# a 200-scene world and its stage-2 data (4308 samples on smol), the base model assembled from the
# recipe with a fresh projector: stage 2's inputs without running stages 0 and 1
WORLD = ["world.n_train_scenes=200", "world.n_eval_scenes=4", "world.eval_questions_per_type=2",
         "stages=[world, datagen]", "model.projector_init=random"]

# --smoke: the tiny recipe on a 24-scene world, small batches (tests/test_bench_scripts.py)
SMOKE = ["world.n_train_scenes=24", "world.n_eval_scenes=4", "world.eval_questions_per_type=2",
         "stages=[world, datagen]", "model.projector_init=random", "instruct.batch_size=8"]


def prepared_world(recipe: str, smoke: bool, run_dir: str | None, prefix: str):
    """(recipe path, run directory, recipe, base model directory) with the world and its stage-2
    data built: `recipe` on WORLD, or the tiny recipe on SMOKE with `smoke`."""
    from xllava.config import load_recipe
    from xllava.pipeline import Pipeline

    recipe_path = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml" if smoke else Path(recipe)
    run = Path(run_dir or tempfile.mkdtemp(prefix=prefix))
    loaded = load_recipe(recipe_path, [f"output_dir={run}", *(SMOKE if smoke else WORLD)])
    pipeline = Pipeline(loaded, log=lambda _: None)
    pipeline.run()
    return recipe_path, run, loaded, pipeline.base_model_dir()


def cpu_name() -> str:
    """The processor and torch's vector capability: ratios move with them (AVX2 vs AVX-512)."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown cpu'}, {os.cpu_count()} cpus, torch {torch.backends.cpu.get_cpu_capability()}"
