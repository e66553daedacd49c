"""The 13B plan runs offline from configs alone, with exact parameter counts and the ZeRO accounting;
the shipped recipe holds the paper's settings and the launcher configs are valid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xllava.cli import app
from xllava.config import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "x-llava-13b.yaml"
GiB = 1024**3


@pytest.fixture(scope="module")
def plan() -> dict:
    result = CliRunner().invoke(app, ["scale", "plan", str(RECIPE), "--llm-arch", "llama-2-13b",
                                      "--vocab-size", "39478", "--gpus", "4", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


def test_parameters_are_exact(plan: dict) -> None:
    p = plan["params"]
    # Llama-2-13B has 13,015,864,320; the expanded vocabulary (39,478) and <image> add rows to
    # both the input embedding and the LM head
    assert p["llm"] == 13_015_864_320 + 2 * (39_478 + 1 - 32_000) * 5120
    assert p["vocab"] == 39_479 and p["n_layers"] == 40 and p["hidden"] == 5120
    assert p["vision"] == 303_507_456  # CLIP ViT-L/14-336 vision model
    assert p["image_tokens"] == 576  # (336 / 14)^2, CLS dropped
    assert p["projector"] == 1024 * 5120 + 5120 + 5120 * 5120 + 5120  # mlp2x_gelu
    # LoRA r=128 on q,k,v,o (5120 -> 5120) and gate, up, down (5120 <-> 13824), 40 layers
    assert p["lora"] == 40 * 128 * (4 * (5120 + 5120) + 3 * (5120 + 13824))
    assert p["total"] == p["llm"] + p["vision"] + p["projector"]


def test_steps_and_tokens(plan: dict) -> None:
    align, instruct = plan["stages"]
    assert (align["stage"], align["llm_mode"], instruct["stage"], instruct["llm_mode"]) == (
        "align", "frozen", "instruct", "lora")
    # LLaVA-1.5's global batches, whatever the GPUs (on the plan's 4 they accumulate 2 micro-batches)
    assert align["global_batch"] == 256 and instruct["global_batch"] == 128
    assert align["steps"] == math.ceil(1_190_000 / 256) and instruct["steps"] == math.ceil(407_000 / 128)
    assert align["tokens"] == 1_190_000 * align["tokens_per_sample"]
    assert align["trainable"] == plan["params"]["projector"]
    assert instruct["trainable"] == plan["params"]["projector"] + plan["params"]["lora"]
    assert instruct["pflops"] > 0 and instruct["gpu_hours"]["H100"] < instruct["gpu_hours"]["A100"]


def test_memory_follows_the_zero_accounting(plan: dict) -> None:
    p, instruct = plan["params"], plan["stages"][1]
    rows = {(m["mode"], m["zero"]): m for m in instruct["memory"]}
    assert {mode for mode, _ in rows} == {"lora", "full"} and {z for _, z in rows} == {0, 1, 2, 3}
    trainable_full = p["projector"] + p["llm"]
    full0, full1, full2, full3 = (rows["full", z] for z in range(4))
    assert full0["weights"] == pytest.approx(2 * p["total"] / GiB)
    assert full0["grads"] == pytest.approx(2 * trainable_full / GiB)
    assert full0["optimizer"] == pytest.approx(12 * trainable_full / GiB)
    assert full1["optimizer"] == pytest.approx(full0["optimizer"] / 4)
    assert full2["grads"] == pytest.approx(full0["grads"] / 4)
    # sharded, plus the layer computed and the one prefetched, gathered in bf16
    assert full3["weights"] == pytest.approx((2 * p["total"] / 4 + 2 * 2 * p["largest_layer"]) / GiB)
    for mode in ("lora", "full"):
        totals = [rows[mode, z]["total_ckpt"] for z in range(4)]
        assert totals == sorted(totals, reverse=True)
        assert all(rows[mode, z]["activations_ckpt"] < rows[mode, z]["activations_full"] for z in range(4))
    # the paper's stage 2 (LoRA, ZeRO-3, 4 GPUs, checkpointing) fits a 48 GB A6000; full fine-tuning
    # with ZeRO-0 fits nothing
    assert rows["lora", 3]["total_ckpt"] < 44 and rows["full", 0]["total_ckpt"] > 80


def test_text_output_and_offline_errors() -> None:
    runner = CliRunner()
    text = runner.invoke(app, ["scale", "plan", str(RECIPE), "--llm-arch", "llama-2-13b", "--gpus", "8"])
    assert text.exit_code == 0, text.output
    assert "stage instruct (lora LLM)" in text.output and "ZeRO" in text.output
    missing = runner.invoke(app, ["scale", "plan", str(RECIPE)])
    assert missing.exit_code != 0 and "--llm-arch" in missing.output
    bad = runner.invoke(app, ["scale", "plan", str(RECIPE), "--llm-arch", "llama-2-13b", "--samples", "stage3=5"])
    assert bad.exit_code != 0 and "STAGE=INTEGER" in bad.output


def test_recipe_holds_the_paper_settings() -> None:
    r = load_recipe(RECIPE)
    assert (r.model.vision.image_size, r.model.vision.patch_size, r.model.vision.feature_layer) == (336, 14, -2)
    assert r.model.projector == "mlp2x_gelu" and r.model.llm.family == "llama2"
    assert (r.align.llm_mode, r.align.lr, r.align.epochs) == ("frozen", 1e-3, 1.0)
    assert (r.instruct.llm_mode, r.instruct.lora.r, r.instruct.lora.alpha) == ("lora", 128, 256)
    assert (r.instruct.lr, r.instruct.projector_lr) == (2e-4, 2e-5)
    for stage in (r.align, r.instruct):
        assert (stage.scheduler, stage.warmup_ratio, stage.precision) == ("cosine", 0.03, "bf16")
        assert stage.gradient_checkpointing


@pytest.mark.parametrize("name", ["ddp", "fsdp", "zero2", "zero3"])
def test_accelerate_configs_are_valid(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / f"{name}.yaml"))  # unknown keys are errors
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[name]
    assert config.distributed_type.value == expected
    if expected == "DEEPSPEED":
        ds_file = ROOT / config.deepspeed_config["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-1])
        assert ds["train_micro_batch_size_per_gpu"] == "auto"  # Trainer fills it from the recipe


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_deepspeed_configs_resolve_in_transformers(name: str) -> None:
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", deepspeed=str(ROOT / "configs" / f"{name}.json"),
                             per_device_train_batch_size=8, gradient_accumulation_steps=2, report_to=[])
    resolved = args.hf_deepspeed_config
    assert resolved.is_zero3() == (name == "zero3")
    assert resolved.config["train_micro_batch_size_per_gpu"] == 8
    assert resolved.config["gradient_accumulation_steps"] == 2


def test_longest_batch_host_ram_and_zero3_start_up(plan: dict) -> None:
    p, instruct = plan["params"], plan["stages"][1]
    weights = 2 * (p["total"] + p["lora"]) / 1024**3
    for m in instruct["memory"]:
        # the longest batch (max_length 2048 tokens a row) needs more than the mean one (~896)
        assert m["activations_longest"] > m["activations_ckpt"]
        assert m["total_longest"] == pytest.approx(m["weights"] + m["grads"] + m["optimizer"] + m["activations_longest"])
    # ZeRO-3's start-up: a partition per GPU with zero3_init_flag, the whole bf16 model without it
    start = instruct["zero3_startup"]
    assert start["zero3_init_flag off"] == pytest.approx(weights)
    assert weights / 4 < start["zero3_init_flag on"] < weights / 2
    # host RAM per node: 4 ranks of the plan, each loading the whole bf16 model outside ZeRO-3
    host = instruct["host"]
    assert host["zero3"] < host["ddp/zero2"] and host["ddp/zero2"] > 4 * weights
