"""`xllava run` on the fast recipe: artifacts, manifests, skip-complete, report, eval resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import fast_recipe
from xllava.eval.stage import run_eval_stage
from xllava.eval.suite_config import BenchmarkSpec, EvalConfig
from xllava.pipeline import Pipeline
from xllava.preflight import InputError


def test_run_writes_every_stage(fast_run: Path) -> None:
    for stage in ("world", "datagen", "vocab", "tower", "align", "instruct", "eval", "report"):
        manifest = json.loads((fast_run / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["config_hash"] and manifest["code_version"]
    align = json.loads((fast_run / "align" / "manifest.json").read_text())["figures"]
    assert align["trained"] == {"projector": "frozen", "vision_tower": "frozen", "llm": "full"}
    assert "tower stage" in align["vision_tower"]
    tower = json.loads((fast_run / "tower" / "manifest.json").read_text())["figures"]
    assert set(tower["held_out_probe_accuracy"]) == {"kind", "colour", "size", "cell", "time_of_day", "weather", "relations"}
    assert (fast_run / "tower" / "model" / "config.json").exists()
    instruct = json.loads((fast_run / "instruct" / "manifest.json").read_text())
    assert instruct["figures"]["trained"] == {"projector": "frozen", "vision_tower": "frozen", "llm": "full"}
    assert "datagen/instruct.jsonl" in instruct["inputs"]
    # frozen tower: features cached, one file that stage 1 wrote and stage 2 read
    assert len(list((fast_run / "features").glob("vision-*.safetensors"))) == 1
    assert (fast_run / "instruct" / "config.resolved.yaml").exists()


def test_report_has_table_plot_and_training_notes(fast_run: Path) -> None:
    report = (fast_run / "report" / "report.md").read_text()
    assert "| question type |" in report and "majority" in report
    assert "randomly initialised" in report  # says the tower had to be trained
    assert (fast_run / "report" / "loss_curve.png").stat().st_size > 1000
    assert (fast_run / "report" / "accuracy.png").stat().st_size > 1000
    scores = json.loads((fast_run / "eval" / "scores.json").read_text())
    assert set(scores) == {"en", "ko"}
    assert set(scores["ko"]["per_type"]) == {"colour", "kind_at", "relation", "count", "exists", "atmosphere"}
    # the other stages' sections: vocabulary table and chart, every benchmark format with its protocol
    assert "## Vocabulary expansion" in report and "| expanded | ko |" in report
    assert (fast_run / "report" / "vocab_bars.png").stat().st_size > 1000
    for name in ("VQAv2", "GQA", "POPE", "MMBench"):
        assert name in report, name
    assert (fast_run / "report" / "report.html").exists()


def test_instruction_data_came_from_the_generator_over_http(fast_run: Path) -> None:
    """The tiny recipe's stage-2 data is what the world teacher answered over HTTP, not the world's file."""
    figures = json.loads((fast_run / "datagen" / "manifest.json").read_text())["figures"]["generation"]
    assert figures["endpoint"] == "xllava-world-teacher" and figures["ok"] == figures["requested"] > 0
    store = [json.loads(line) for line in (fast_run / "datagen" / "store.jsonl").read_text().splitlines()]
    assert len(store) == figures["requested"] and all(r["status"] == "ok" and r["attempts"] >= 1 for r in store)
    records = [json.loads(line) for line in (fast_run / "datagen" / "instruct.jsonl").read_text().splitlines()]
    assert records and {r["task"] for r in records} == {"short_answer"}
    assert all(r.get("teacher") for r in records)


def test_second_run_skips_everything(fast_run: Path) -> None:
    logs: list[str] = []
    before = (fast_run / "instruct" / "manifest.json").read_text()
    Pipeline(fast_recipe(fast_run), log=logs.append).run()
    assert all("complete, skipped" in line for line in logs), logs
    assert (fast_run / "instruct" / "manifest.json").read_text() == before


def test_only_runs_a_stage_whose_later_stages_were_never_run(tmp_path: Path) -> None:
    """`only` needs the stages before the asked one complete, not the ones after it."""
    run = tmp_path / "run"
    pipeline = Pipeline(fast_recipe(run, "stages=[world, datagen, vocab]"), log=lambda _: None)
    results = pipeline.run(only=["world"])
    assert list(results) == ["world"] and (run / "world" / "manifest.json").exists()
    assert not (run / "datagen").exists() and not (run / "vocab").exists()
    with pytest.raises(RuntimeError, match="stage datagen is not complete"):
        pipeline.run(only=["vocab"])  # an earlier stage missing is still an error
    with pytest.raises(InputError, match=r"stages: instruct asked for, but the recipe's stages are \['world', 'datagen', 'vocab'\]"):
        pipeline.run(only=["instruct"])


def test_changed_stage_config_redoes_that_stage_and_later_ones(fast_run: Path, tmp_path: Path) -> None:
    from xllava.pipeline import stage_hash

    a = fast_recipe(tmp_path)
    b = fast_recipe(tmp_path, "align.lr=0.5")
    assert stage_hash(a, "world", {}) == stage_hash(b, "world", {})
    assert stage_hash(a, "align", {"world": "w"}) != stage_hash(b, "align", {"world": "w"})
    assert stage_hash(a, "align", {"world": "w"}) != stage_hash(a, "align", {"world": "v"})


def test_stage_hashes_follow_what_each_stage_reads(tmp_path: Path) -> None:
    from xllava.pipeline import stage_digests

    base = dict(stage_digests(fast_recipe(tmp_path)))
    seed = dict(stage_digests(fast_recipe(tmp_path, "model.llm.scratch.seed=7")))
    # the tower reads the world and the vision config only: an LLM seed sweep shares it
    assert {s for s in base if base[s] == seed[s]} == {"world", "datagen", "tower"}
    vision = dict(stage_digests(fast_recipe(tmp_path, "model.vision.num_hidden_layers=2")))
    assert {s for s in base if base[s] == vision[s]} == {"world", "datagen", "vocab"}
    world = dict(stage_digests(fast_recipe(tmp_path, "world.seed=3")))
    assert not {s for s in base if base[s] == world[s]}


def test_partial_predictions_resume(fast_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    model_dir = fast_run / "instruct" / "model"
    spec = BenchmarkSpec(name="short", format="llava", languages=["en"], questions="world/bench/{lang}.jsonl",
                         images="world", scoring="exact_match")
    cfg = EvalConfig(benchmarks=[spec], max_new_tokens=8)
    full = run_eval_stage(cfg, model_dir, fast_run, out)["benchmarks"]
    predictions = out / "predictions" / "instruct" / "short_en.jsonl"
    lines = predictions.read_text(encoding="utf-8").splitlines()
    kept = lines[: len(lines) // 2]
    predictions.write_text("\n".join(kept) + '\n{"question_id": "en-col', encoding="utf-8")
    again = run_eval_stage(cfg, model_dir, fast_run, out)["benchmarks"]
    resumed = predictions.read_text(encoding="utf-8").splitlines()
    assert resumed[: len(kept)] == kept  # nothing already written is lost or redone
    assert len(resumed) == len(lines)
    assert again == full


def test_projector_starts_from_the_tower_readout(fast_run: Path) -> None:
    """The tiny recipe's projector_init=tower_readout: the first rows of the assembled projector's first
    layer are the tower's readout probes times one common scale; the rows past them stay random."""
    import pytest
    import torch
    from safetensors.torch import load_file

    from xllava.config import VisionConfig
    from xllava.model.assemble import _projector_from_readout, load_llava
    from xllava.model.towers import READOUT_FILE

    readout = load_file(str(fast_run / "tower" / "model" / READOUT_FILE))
    model, _ = load_llava(fast_run / "base" / "llava")
    linear = model.model.multi_modal_projector.linear_1.requires_grad_(False)
    rows = len(readout["weight"])
    assert rows < linear.out_features
    ratio = linear.weight[:rows] / readout["weight"]
    scale = ratio.flatten()[0]
    assert scale > 0 and torch.allclose(ratio, torch.full_like(ratio, float(scale)), rtol=1e-4)
    assert torch.allclose(linear.bias[:rows], readout["bias"] * scale, rtol=1e-4, atol=1e-6)
    # the rest is the random init: no row of it is a multiple of a probe row
    rest = torch.nn.functional.normalize(linear.weight[rows:], dim=1)
    probes = torch.nn.functional.normalize(readout["weight"], dim=1)
    assert (rest @ probes.T).abs().max() < 0.9
    with pytest.raises(FileNotFoundError, match="readout_probes"):
        _projector_from_readout(model, VisionConfig())


def test_frozen_projector_comes_out_of_both_stages_unchanged(fast_run: Path) -> None:
    """The tiny recipe keeps the readout-started projector frozen (train_projector: false) while the
    LLM trains in full: the final projector is the assembled one bit for bit, the LLM is not."""
    import torch

    from xllava.model.assemble import load_llava

    base, _ = load_llava(fast_run / "base" / "llava")
    final, _ = load_llava(fast_run / "instruct" / "model")
    for name, param in base.model.multi_modal_projector.state_dict().items():
        assert torch.equal(param, final.model.multi_modal_projector.state_dict()[name]), name
    assert not torch.equal(base.lm_head.weight, final.lm_head.weight)


def test_a_stage_that_trains_nothing_is_refused(fast_run: Path) -> None:
    import pytest

    from xllava.config import TrainStageConfig
    from xllava.model.assemble import load_llava
    from xllava.train.stage import configure_trainable

    model, _ = load_llava(fast_run / "base" / "llava")
    with pytest.raises(ValueError, match="trains nothing"):
        configure_trainable(model, TrainStageConfig(llm_mode="frozen", train_projector=False))
    _, summary = configure_trainable(model, TrainStageConfig(llm_mode="lora", train_projector=False))
    assert summary == {"projector": "frozen", "vision_tower": "frozen", "llm": "lora"}


def test_redoing_datagen_keeps_the_teachers_store(tmp_path: Path) -> None:
    """A changed datagen section redoes the stage on the same store (its answers were paid for)."""
    stage_dir = tmp_path / "datagen"
    stage_dir.mkdir()
    for name in ("store.jsonl", "instruct.jsonl", "manifest.json"):
        (stage_dir / name).write_text(name)
    (stage_dir / "tmp").mkdir()
    pipeline = Pipeline(fast_recipe(tmp_path), log=lambda _: None)
    pipeline._clear("datagen", stage_dir)
    assert [p.name for p in stage_dir.iterdir()] == ["store.jsonl"]
    pipeline._clear("vocab", stage_dir)
    assert not list(stage_dir.iterdir())
