"""Shared fixtures: one small world and one quickly trained model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"

# A fast variant of the tiny recipe: a small world and a few optimizer steps per stage.
FAST = [
    "vocab.n_pieces=1500",
    "datagen.tasks=[short_answer]",
    "vocab.eval_limit=100",
    "world.n_train_scenes=40",
    "world.n_eval_scenes=8",
    "world.eval_questions_per_type=4",
    "tower.epochs=1",
    "tower.extra_scenes=0",
    "align.max_steps=4",
    "align.batch_size=8",
    "align.logging_steps=1",
    "instruct.max_steps=4",
    "instruct.batch_size=8",
    "instruct.logging_steps=1",
    "eval.limit=24",  # every short-answer question (6 types x 4), at most 24 of each other benchmark
    "eval.long_max_new_tokens=12",
    # the serving tests sample text from this barely trained model; HF's init keeps its first
    # tokens spread out, where the recipe's wider init makes 4 steps enough to end every turn early
    "model.llm.scratch.initializer_range=0.02",
]


def torchrun_xllava(command: list[str], sets: list[str], timeout: int = 900) -> str:
    """`xllava COMMAND tiny.yaml --set ...` in 2 processes under torchrun (gloo, one thread each on
    2 cores); asserts it succeeded and returns its stdout and stderr."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "xllava.cli", *command, str(TINY)]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    return out


def fast_recipe(run_dir: Path, *extra: str):
    from xllava.pipeline import load_recipe

    return load_recipe(TINY, [*FAST, f"output_dir={run_dir}", *extra])


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory) -> Path:
    """The fast recipe run end to end once; tests read its artifacts."""
    from xllava.pipeline import Pipeline

    run_dir = tmp_path_factory.mktemp("fast-run")
    Pipeline(fast_recipe(run_dir), log=lambda _: None).run()
    return run_dir
