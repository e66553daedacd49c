"""The paper-scale engines on 2 CPU processes: `accelerate launch` with the shipped ZeRO-2 and ZeRO-3
configs (DeepSpeed's CPU backend), as a GPU user would run them.

- ZeRO-2, one launch of `xllava run`: stage 1 with a frozen LLM (its checkpoints hold the projector
  only, in both Trainer's file and DeepSpeed's) then stage 2 by LoRA.
- ZeRO-3 (zero3_init_flag on), stage 2 by LoRA in bf16 with activation checkpointing and the
  projector's own learning rate; its checkpoint resumes in a second launch with the same
  continuation, and the merged export is bf16 and loads in plain transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import FAST, ROOT, TINY, fast_recipe
from xllava.train.trainable_save import TRAINABLE_FILE

pytestmark = pytest.mark.slow

LR, PROJECTOR_LR = 2e-3, 5e-4
STAGE2 = ["instruct.max_steps=3", "instruct.save_steps=2", "instruct.logging_steps=1", "instruct.batch_size=4",
          "instruct.llm_mode=lora", "instruct.gradient_checkpointing=true", f"instruct.lr={LR}",
          "instruct.train_projector=true", f"instruct.projector_lr={PROJECTOR_LR}", "instruct.warmup_ratio=0"]
STAGE1 = ["align.max_steps=2", "align.save_steps=1", "align.logging_steps=1", "align.batch_size=4",
          "align.llm_mode=frozen", "align.train_projector=true", "align.gradient_checkpointing=true"]


def launch(config: str, run_dir: Path, command: str, *sets: str) -> str:
    """`accelerate launch --config_file configs/<config>.yaml --num_processes 2 -m xllava.cli ...`"""
    args = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs" / f"{config}.yaml"),
            "--num_processes", "2", "-m", "xllava.cli", *command.split(), str(TINY)]
    for s in [*FAST, f"output_dir={run_dir}", *sets]:
        args += ["--set", s]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    return out


def losses(stage_dir: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((stage_dir / "log_history.json").read_text()) if "loss" in h}


def weight_dtypes(model_dir: Path) -> set[str]:
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """World and tower of the fast recipe; the stages under test are left to the launches."""
    from xllava.pipeline import Pipeline

    run = tmp_path_factory.mktemp("ds-run")
    Pipeline(fast_recipe(run, "stages=[world, datagen, tower]"), log=lambda _: None).run()
    return run


def test_zero2_stage1_saves_the_projector_only_then_lora(base_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    out = launch("zero2", run, "run", "stages=[world, datagen, tower, align, instruct]", *STAGE1, *STAGE2)
    assert out.count("[xllava] align: running") == 1 and out.count("[xllava] instruct: running") == 1

    checkpoint = run / "align" / "checkpoints" / "checkpoint-1"
    with safe_open(str(checkpoint / TRAINABLE_FILE), framework="pt") as f:
        names = list(f.keys())
    assert names and all("multi_modal_projector" in n for n in names)
    assert not list(checkpoint.glob("model*.safetensors"))  # no copy of the frozen LLM
    [module_states] = list((checkpoint / "global_step1").glob("*model_states.pt"))
    saved = torch.load(module_states, map_location="cpu", weights_only=False)["module"]
    # DeepSpeed's copy: the projector, and lm_head.weight, which the tiny LLM ties to its embeddings
    # (DeepSpeed drops frozen parameters by their first name only)
    assert saved and all("multi_modal_projector" in n or n == "lm_head.weight" for n in saved), list(saved)
    assert any("multi_modal_projector" in n for n in saved)

    trained = json.loads((run / "instruct" / "manifest.json").read_text())["figures"]["trained"]
    assert trained == {"projector": "full", "vision_tower": "frozen", "llm": "lora"}
    two = losses(run / "instruct")
    assert sorted(two) == [1, 2, 3]
    assert (run / "instruct" / "model" / "config.json").exists()


@pytest.fixture(scope="module")
def zero3_run(base_run: Path, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("zero3") / "run"
    shutil.copytree(base_run, run)
    # stage 1 in one plain process: stage 2 is what runs under ZeRO-3
    from xllava.pipeline import Pipeline

    Pipeline(fast_recipe(run, "stages=[world, datagen, tower, align]", "align.max_steps=2"), log=lambda _: None).run()
    out = launch("zero3", run, "train instruct", "stages=[world, datagen, tower, align, instruct]",
                 "align.max_steps=2", "instruct.precision=bf16", *STAGE2)
    return run, out


def test_zero3_lora_bf16_projector_rate_and_export(zero3_run: tuple[Path, str]) -> None:
    from transformers import LlavaForConditionalGeneration

    run, _ = zero3_run
    stage = run / "instruct"
    checkpoint = stage / "checkpoints" / "checkpoint-2"
    [optim] = list((checkpoint / "global_step2").glob("bf16_zero_pp_rank_0_*optim_states.pt"))
    state = torch.load(optim, map_location="cpu", weights_only=False)["optimizer_state_dict"]
    groups = state["optimizer_state_dict"]["param_groups"]  # ZeRO-3 nests the torch optimizer's state
    rates = sorted(g["lr"] for g in groups)
    assert len(rates) == 2 and rates[0] / rates[1] == pytest.approx(PROJECTOR_LR / LR)  # same schedule, two bases

    model_dir = stage / "model"
    assert weight_dtypes(model_dir) == {"BF16"}  # exported in the training precision, not fp32
    model = LlavaForConditionalGeneration.from_pretrained(model_dir)  # plain transformers, LoRA merged
    assert not [n for n, _ in model.named_parameters() if "lora" in n]
    assert model.dtype == torch.bfloat16


def test_zero3_checkpoint_resumes_with_the_same_continuation(zero3_run: tuple[Path, str]) -> None:
    run, _ = zero3_run
    stage = run / "instruct"
    first = losses(stage)
    assert sorted(first) == [1, 2, 3] and all(v == v for v in first.values())
    for name in ("model", "checkpoints/checkpoint-3"):
        shutil.rmtree(stage / name)
    for name in ("manifest.json", "log_history.json"):
        (stage / name).unlink()
    out = launch("zero3", run, "train instruct", "stages=[world, datagen, tower, align, instruct]",
                 "align.max_steps=2", "instruct.precision=bf16", *STAGE2)
    assert "instruct: resuming" in out
    resumed = losses(stage)
    assert sorted(resumed) == [1, 2, 3]
    for step in (1, 2):  # carried over from the checkpoint's state
        assert resumed[step] == first[step]
    assert resumed[3] == pytest.approx(first[3], rel=2e-2)  # step 3 recomputed from the restored state
