"""The knobs of every training run, one vocabulary for the `lm` stage and the LLaVA stages.

`LmConfig`, `TrainStageConfig` (align, instruct) inherit these fields, so a recipe says `lr`,
`batch_size`, `warmup_ratio` or `betas` with one meaning everywhere; each stage only changes the
defaults. `xllava.train.arguments.training_arguments` builds them into `TrainingArguments` in one
place. A leaf module: pydantic only.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator

from xllava.strict import Strict

# Field names an earlier version used, and what replaces each: such a recipe fails naming the new field.
RENAMED = {
    "grad_accum": "batch_size (the global batch: micro_batch x accumulation x processes) and micro_batch",
    "adam_beta2": "betas ([beta1, beta2])",
    "warmup_steps": "warmup_ratio (the warm-up's share of the optimizer steps)",
}


class TrainingConfig(Strict):
    """How one stage trains: steps, batch, optimizer, schedule, precision, checkpoints."""

    epochs: float = 1.0  # passes over the training data
    max_steps: int = -1  # > 0: stop after this many optimizer steps (overrides epochs)
    batch_size: int = Field(16, ge=1)  # sequences per optimizer step, summed over every process
    # sequences per forward pass on one process; gradient accumulation makes up the rest of the
    # batch. None: batch_size divided by the processes, no accumulation
    micro_batch: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)  # peak learning rate (of the LLM or its LoRA adapters)
    scheduler: str = "cosine"  # the learning-rate schedule: cosine, linear, constant, ... (transformers' names)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)  # share of the optimizer steps spent warming up
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's first and second moment decays
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled weight decay
    # auto: bf16 where the GPU supports it, else fp32 (CPUs train fp32: bf16 is slow there)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    # cuda fails fast where there is none; auto takes CUDA where present; cpu forces the CPU
    device: Literal["auto", "cuda", "cpu"] = "auto"
    max_grad_norm: float = Field(1.0, ge=0)  # gradient clipping; 0 turns it off (LLaVA-1.5's DeepSpeed runs clip nothing)
    gradient_checkpointing: bool = False  # recompute each decoder layer in backward: activations of ~1 layer
    seed: int = 42  # model init of new parts, data order, dropout
    logging_steps: int = Field(5, ge=1)  # optimizer steps between logged losses
    save_steps: int = Field(50, ge=1)  # optimizer steps between resumable checkpoints

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [name for name in RENAMED if name in data]
            if old:
                raise ValueError("; ".join(f"`{name}` is no longer a field: use {RENAMED[name]}" for name in old))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(self.betas)}")
        if self.micro_batch is not None and self.batch_size % self.micro_batch:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch {self.micro_batch}")
        return self

    def per_process(self, processes: int | None = None) -> tuple[int, int]:
        """(micro batch, gradient accumulation steps) on each of `processes` data-parallel processes
        (default: the launcher's WORLD_SIZE, else 1), such that micro x accumulation x processes is
        the batch size."""
        processes = processes or int(os.environ.get("WORLD_SIZE", "1"))
        micro = self.micro_batch or max(1, self.batch_size // processes)
        if self.batch_size % (micro * processes):
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch {micro} x "
                             f"{processes} process(es)")
        return micro, self.batch_size // (micro * processes)
