"""bf16 on the DDP launcher: stage 1 and stage 2 steps under `torchrun --nproc_per_node 2` (gloo, CPU)
with `precision: bf16` (autocast over fp32 trainable weights, frozen ones loaded in bf16), and the
fields that pick hardware: `device`, `llm_attention`, fp16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import FAST, fast_recipe, torchrun_xllava
from xllava.config import TrainStageConfig

BF16 = ["align.max_steps=2", "align.precision=bf16", "align.logging_steps=1", "align.llm_mode=frozen",
        "align.train_projector=true", "align.feature_cache=false",  # pixels through the bf16 tower
        "instruct.max_steps=2", "instruct.precision=bf16", "instruct.logging_steps=1", "instruct.llm_mode=lora",
        "instruct.gradient_checkpointing=true", "instruct.train_projector=true"]


@pytest.mark.slow
def test_bf16_stage1_and_stage2_under_torchrun(tmp_path: Path) -> None:
    from xllava.pipeline import Pipeline

    run = tmp_path / "run"
    Pipeline(fast_recipe(run, "stages=[world, datagen, tower]"), log=lambda _: None).run()
    torchrun_xllava(["run"], [*FAST, f"output_dir={run}", "stages=[world, datagen, tower, align, instruct]", *BF16])

    for stage in ("align", "instruct"):
        history = json.loads((run / stage / "log_history.json").read_text())
        losses = [h["loss"] for h in history if "loss" in h]
        assert len(losses) == 2 and all(0 < v < 20 for v in losses), (stage, history)
        with safe_open(str(run / stage / "model" / "model.safetensors"), framework="pt") as f:
            assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"BF16"}, stage
    checkpoint = run / "align" / "checkpoints" / "checkpoint-2"
    with safe_open(str(checkpoint / "trainable.safetensors"), framework="pt") as f:
        # the projector's fp32 master weights: the only weights a stage-1 checkpoint holds
        assert {k.split(".")[1] for k in f.keys()} == {"multi_modal_projector"}
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F32"}


def test_weights_load_in_training_precision(tmp_path: Path) -> None:
    """Frozen weights stay as loaded (bf16), trainable ones become fp32 masters for autocast."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from xllava.train.precision import cast_unpartitioned, upcast_trainable

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).to(torch.bfloat16)
    model.requires_grad_(False)
    model.lm_head.requires_grad_(True)
    assert upcast_trainable(model) == 1
    assert model.lm_head.weight.dtype == torch.float32
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert cast_unpartitioned(model, torch.bfloat16) == 1 and model.lm_head.weight.dtype == torch.bfloat16


def test_attention_kernel_is_chosen_at_load(fast_run: Path) -> None:
    from xllava.model.assemble import load_llava

    model, _ = load_llava(fast_run / "align" / "model", dtype=torch.bfloat16, attention="eager")
    assert model.dtype == torch.bfloat16
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation != "eager"  # the tower keeps its own
    model, _ = load_llava(fast_run / "align" / "model", attention="sdpa")
    assert model.config.text_config._attn_implementation == "sdpa" and model.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_and_flash_attention_fail_fast_naming_the_field(tmp_path: Path) -> None:
    from xllava.pipeline import Pipeline
    from xllava.preflight import InputError
    from xllava.train.precision import DeviceUnavailable, check_attention
    from xllava.train.stage import stage_arguments

    with pytest.raises(DeviceUnavailable, match=r"^instruct\.device: cuda, but torch sees no CUDA device"):
        stage_arguments(TrainStageConfig(device="cuda"), tmp_path, "instruct", has_text_only=False)
    with pytest.raises(DeviceUnavailable, match=r"^align\.llm_attention: flash_attention_2"):
        check_attention("flash_attention_2", "align.llm_attention")
    check_attention("sdpa", "align.llm_attention")

    # the pipeline refuses before any stage runs
    recipe = fast_recipe(tmp_path / "run", "instruct.device=cuda", "align.llm_attention=flash_attention_2")
    with pytest.raises(InputError) as err:
        Pipeline(recipe, log=lambda _: None).run()
    assert "instruct.device: cuda" in str(err.value) and "align.llm_attention: flash_attention_2" in str(err.value)
    assert not (tmp_path / "run" / "world").exists()


def test_precision_reaches_the_trainer(tmp_path: Path) -> None:
    from xllava.train.stage import stage_arguments, training_dtype

    args = stage_arguments(TrainStageConfig(precision="bf16", device="cpu", max_grad_norm=0.0), tmp_path, "instruct",
                           has_text_only=False)
    assert args.bf16 and not args.fp16 and args.max_grad_norm == 0.0 and args.use_cpu
    assert training_dtype(args) == torch.bfloat16
    args = stage_arguments(TrainStageConfig(precision="auto", device="cpu"), tmp_path, "instruct", has_text_only=False)
    assert not args.bf16 and training_dtype(args) == torch.float32  # auto on a CPU: fp32


def test_ask_loads_in_the_dtype_asked_for(fast_run: Path) -> None:
    """`xllava ask --dtype bf16`: the weights load in bf16 and the pixels follow them."""
    from typer.testing import CliRunner

    from xllava.cli import app
    from xllava.serve.app import resolve_dtype

    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'int8'"):
        resolve_dtype("int8", torch.device("cpu"))
    image = sorted((fast_run / "world" / "images").glob("*.png"))[0]
    model_dir = fast_run / "instruct" / "model"
    result = CliRunner().invoke(app, ["ask", str(model_dir), str(image), "What colour is it?", "--dtype", "bf16",
                                      "--device", "cpu", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    fp32 = CliRunner().invoke(app, ["ask", str(model_dir), str(image), "What colour is it?", "--max-new-tokens", "3"])
    assert fp32.exit_code == 0 and fp32.output.strip()


def test_zero3_checkpointing_needs_a_recent_deepspeed() -> None:
    from xllava.train.precision import DeviceUnavailable, check_deepspeed

    check_deepspeed(3, True, "instruct.gradient_checkpointing")  # the installed one (dev extra: >= 0.19.3)
    check_deepspeed(2, True, "instruct.gradient_checkpointing", installed="0.16.0")  # ZeRO-2: any
    check_deepspeed(3, False, "instruct.gradient_checkpointing", installed="0.16.0")  # no checkpointing: any
    with pytest.raises(DeviceUnavailable, match=r"^instruct\.gradient_checkpointing: true under ZeRO-3 needs "
                                                r"deepspeed>=0\.19\.3 \(installed: 0\.19\.2"):
        check_deepspeed(3, True, "instruct.gradient_checkpointing", installed="0.19.2")
