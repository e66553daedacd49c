"""Precision, device and attention kernel of a training run, the same on every launcher.

A recipe's `precision` decides the dtype the model is *loaded* in, not only the autocast: at 13B an
fp32 load is 54 GB per rank before any engine casts it. What each engine expects:

- DeepSpeed (bf16/fp16 on) keeps its own fp32 master copy of what trains and casts the module to the
  training dtype itself: the model is loaded in that dtype, trainable weights included.
- DDP, one process, FSDP: Trainer's mixed precision is autocast over fp32 weights, so the weights
  that train are fp32 while the frozen ones (tower, frozen LLM, LoRA's base) stay in the training
  dtype, which halves their memory and is what autocast would compute them in anyway.

`device: cuda` in a recipe fails before anything loads where no CUDA device is present (instead of a
silent fallback to CPU and gloo); tf32 matmuls are on wherever the GPU has them (Ampere and later);
`llm_attention` picks sdpa, eager or flash_attention_2 (where the flash-attn package is installed).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Literal

import torch
from packaging.version import Version

# non-reentrant activation checkpointing of LoRA layers under ZeRO-3 crashes in backward before this
DEEPSPEED_MIN_FOR_ZERO3_CHECKPOINTING = Version("0.19.3")

Precision = Literal["auto", "bf16", "fp16", "fp32"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class DeviceUnavailable(RuntimeError):
    """A recipe field asks for hardware or a package this machine lacks."""


def use_accelerator(device: str, field: str) -> bool:
    """Whether the run trains on CUDA. `device: cuda` without CUDA is an error naming the field."""
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise DeviceUnavailable(
            f"{field}: cuda, but torch sees no CUDA device (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); set {field}: auto or cpu, or install a CUDA torch"
        )
    return available and device != "cpu"


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """'bf16', 'fp16' or 'fp32'; auto is bf16 on a GPU that has it, fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"


def tf32_available() -> bool:
    """Ampere (compute capability 8) and later GPUs run fp32 matmuls on tensor cores in tf32."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def check_attention(impl: str | None, field: str) -> None:
    """flash_attention_2 needs the flash-attn package and a CUDA device; fail before loading."""
    if impl != "flash_attention_2":
        return
    if importlib.util.find_spec("flash_attn") is None:
        raise DeviceUnavailable(f"{field}: flash_attention_2, but the flash-attn package is not installed "
                                "(pip install flash-attn --no-build-isolation, or use sdpa)")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"{field}: flash_attention_2 runs on CUDA only; use sdpa or eager on this machine")


def check_deepspeed(zero_stage: int | None, checkpointing: bool, field: str, installed: str | None = None) -> None:
    """Non-reentrant checkpointing (forced by the stages) with ZeRO-3 needs DeepSpeed >= 0.19.3.
    `installed`: the version to judge (default: the installed package's)."""
    if zero_stage != 3 or not checkpointing:
        return
    version = Version(installed or importlib.metadata.version("deepspeed"))
    if version < DEEPSPEED_MIN_FOR_ZERO3_CHECKPOINTING:
        raise DeviceUnavailable(
            f"{field}: true under ZeRO-3 needs deepspeed>={DEEPSPEED_MIN_FOR_ZERO3_CHECKPOINTING} "
            f"(installed: {version}; older versions crash in backward with non-reentrant checkpointing): "
            "pip install -e '.[gpu]'"
        )


def upcast_trainable(model: torch.nn.Module) -> int:
    """Trainable weights to fp32 (autocast's master weights), frozen ones left as loaded. Returns
    how many tensors were cast."""
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def cast_unpartitioned(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Every weight to `dtype` for DeepSpeed, which wants one dtype: peft creates LoRA adapters in
    fp32 after the model was loaded in bf16 (under zero.Init those adapters are the only weights not
    yet partitioned, and ZeRO-3 refuses a mix). Returns how many tensors were cast."""
    cast = 0
    for param in model.parameters():
        if not hasattr(param, "ds_id") and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
            cast += 1
    return cast
