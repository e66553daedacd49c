"""The lm stage under `torchrun --nproc_per_node 2` (gloo, CPU): every rank trains (DDP), rank 0
alone measures and writes, and the model it writes is the one trained with the global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FAST, fast_recipe, torchrun_xllava

pytestmark = pytest.mark.slow
LM = ["lm.max_steps=3", "lm.seq_len=64", "lm.eval_limit=20", "lm.tokens_per_epoch=20000", "lm.lr=1e-3",
      "lm.logging_steps=1", "lm.batch_size=4", "lm.micro_batch=2", "lm.save_steps=2"]


def test_lm_stage_under_torchrun(tmp_path: Path) -> None:
    from xllava.pipeline import Pipeline

    run = tmp_path / "run"
    Pipeline(fast_recipe(run, "stages=[world, datagen, vocab]"), log=lambda _: None).run()
    out = torchrun_xllava(["run"], [*FAST, f"output_dir={run}", "stages=[world, datagen, vocab, lm]", *LM])
    assert out.count("[xllava] lm: running") == 1

    figures = json.loads((run / "lm" / "manifest.json").read_text())["figures"]
    assert figures["steps"] == 3 and len(figures["loss_history"]) == 3
    assert set(figures["bpc"]) >= {"before", "after"}  # measured once, by rank 0
    assert (run / "lm" / "model" / "config.json").exists()
    state = json.loads((run / "lm" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 2  # per device: 2 ranks made the global batch of 4
    assert sorted(p.name for p in (run / "lm" / "checkpoints" / "checkpoint-2").glob("rng_state*")) == [
        "rng_state_0.pth", "rng_state_1.pth"]
