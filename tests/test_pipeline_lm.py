"""The lm stage inside a recipe: it continues from the vocab stage's expansion, and LLaVA is then
assembled from its output, not from the base or the expanded-but-untrained LLM."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import fast_recipe
from xllava.pipeline import Pipeline


def test_lm_stage_sits_between_vocab_and_assembly(tmp_path: Path) -> None:
    recipe = fast_recipe(
        tmp_path, "stages=[world, datagen, vocab, lm, tower, align, report]",
        "lm.max_steps=3", "lm.seq_len=64", "lm.eval_limit=20", "lm.tokens_per_epoch=20000",
        "lm.lr=1e-3", "lm.logging_steps=1", "lm.batch_size=2", "lm.micro_batch=2",
    )
    pipe = Pipeline(recipe, log=lambda _: None)
    pipe.run()
    lm = json.loads((tmp_path / "lm" / "manifest.json").read_text())["figures"]
    assert Path(lm["model_dir"]) == tmp_path / "lm" / "model"
    assert pipe.llm_dir(before="lm") == tmp_path / "vocab" / "model"
    assert pipe.llm_dir() == tmp_path / "lm" / "model"
    stamp = json.loads((tmp_path / "base" / "llava" / "xllava_assembly.json").read_text())
    assert stamp["inputs"]["lm"] == json.loads((tmp_path / "lm" / "manifest.json").read_text())["config_hash"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Bilingual LM pretraining" in report and "## Vocabulary expansion" in report
