"""What the stage-2 bench scripts share: the world they train on and the machine line they print."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# a 200-scene world and its stage-2 data (4308 samples on smol), the base model assembled from the
# recipe with a fresh projector: stage 2's inputs without running stages 0 and 1
WORLD = ["world.n_train_scenes=200", "world.n_eval_scenes=4", "world.eval_questions_per_type=2",
         "stages=[world, datagen]", "model.projector_init=random"]

# --smoke: the tiny recipe on a 24-scene world, small batches (tests/test_bench_scripts.py)
SMOKE = ["world.n_train_scenes=24", "world.n_eval_scenes=4", "world.eval_questions_per_type=2",
         "stages=[world, datagen]", "model.projector_init=random", "instruct.batch_size=8"]


def cpu_name() -> str:
    """The processor and torch's vector capability: ratios move with them (AVX2 vs AVX-512)."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown cpu'}, {os.cpu_count()} cpus, torch {torch.backends.cpu.get_cpu_capability()}"
