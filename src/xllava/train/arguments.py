"""The one place the training knobs (xllava.training_config) become `transformers.TrainingArguments`,
for the `lm` stage and the LLaVA stages alike. Creating them joins the process group under
torchrun / accelerate launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from xllava.training_config import TrainingConfig


def uses_bf16(cfg: TrainingConfig) -> bool:
    """`precision: auto` is bf16 on a GPU that has it; CPUs train fp32 (bf16 is slow there)."""
    if cfg.precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cfg.precision == "bf16"


def training_arguments(cfg: TrainingConfig, output_dir: Path, **stage: Any) -> TrainingArguments:
    """Trainer settings from the knobs; `stage` adds what only one kind of stage sets (its data
    loader workers, DDP's unused-parameter search, ...)."""
    micro, accumulation = cfg.per_process()
    # `gradient_checkpointing` became `activation_checkpointing` during transformers 5.x
    ckpt_name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")
    checkpointing: dict[str, Any] = {ckpt_name: cfg.gradient_checkpointing}
    if cfg.gradient_checkpointing:  # non-reentrant: no inputs need requires_grad with a frozen LLM
        checkpointing[f"{ckpt_name}_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(
        output_dir=str(Path(output_dir) / "checkpoints"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        # transformers 5 reads a warmup_steps below 1 as a fraction of the run (warmup_ratio is deprecated)
        warmup_steps=cfg.warmup_ratio,
        adam_beta1=cfg.betas[0],
        adam_beta2=cfg.betas[1],
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        report_to=[],
        bf16=uses_bf16(cfg),
        fp16=cfg.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        **checkpointing,
        **stage,
    )
