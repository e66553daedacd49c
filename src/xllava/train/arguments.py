"""The one place the training knobs (xllava.training_config) become `transformers.TrainingArguments`,
for the `lm` stage and the LLaVA stages alike. Creating them joins the process group under
torchrun / accelerate launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from xllava.train.precision import resolve_precision, tf32_available, use_accelerator
from xllava.training_config import TrainingConfig


def training_arguments(cfg: TrainingConfig, output_dir: Path, stage_name: str = "stage", **stage: Any
                       ) -> TrainingArguments:
    """Trainer settings from the knobs; `stage` adds what only one kind of stage sets (its data
    loader workers, DDP's unused-parameter search, ...). With a ZeRO-3 config and zero3_init_flag,
    creating them makes later from_pretrained calls partition."""
    use_gpu = use_accelerator(cfg.device, f"{stage_name}.device")
    precision = resolve_precision(cfg.precision, use_gpu)
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
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        tf32=True if use_gpu and tf32_available() else None,
        max_grad_norm=cfg.max_grad_norm,
        use_cpu=not use_gpu,
        disable_tqdm=False,
        **checkpointing,
        **stage,
    )
