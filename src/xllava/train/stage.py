"""One LLaVA training stage on transformers' Trainer: stage 1 (align) and stage 2 (instruct).

What Trainer gives us and we keep: checkpoints that restore weights, optimizer, scheduler, RNG and
data position; logging; accelerate underneath for more devices. What we add: per-module learning
rates, LoRA with the projector trained in full, batches grouped by real token length, the cached
vision features and the supervised-positions-only loss (xllava.train.loss), and an export that
always ends as a complete HF LLaVA directory with any LoRA merged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import LlavaForConditionalGeneration, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from xllava.config import TrainStageConfig
from xllava.model.assemble import load_llava, save_llava
from xllava.train.data import load_samples
from xllava.train.dataset import LlavaCollator, LlavaDataset
from xllava.train.features import FeatureCache
from xllava.train.loss import llava_loss

# parameter-name prefixes of the three parts (the HF LLaVA layout; peft prepends base_model.model.)
PROJECTOR, TOWER, LLM = "multi_modal_projector", "vision_tower", "language_model"


@dataclass
class StageResult:
    model_dir: Path
    log_history: list[dict]
    trained: dict[str, str]
    samples: int
    supervised_tokens: int
    truncated_turns: int
    seconds: float


def _part(name: str) -> str:
    if PROJECTOR in name:
        return "projector"
    if TOWER in name:
        return "vision_tower"
    return "llm"


def configure_trainable(
    model: LlavaForConditionalGeneration, cfg: TrainStageConfig
) -> tuple[torch.nn.Module, dict[str, str]]:
    """Freeze what the stage does not train; wrap the LLM in LoRA when asked. Returns (model, summary)."""
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if cfg.train_vision_tower:
        model.model.vision_tower.requires_grad_(True)
    if cfg.llm_mode == "full":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    summary = {
        "projector": "full",
        "vision_tower": "full" if cfg.train_vision_tower else "frozen",
        "llm": cfg.llm_mode,
    }
    if cfg.llm_mode != "lora":
        return model, summary
    keep_full = [PROJECTOR] + ([TOWER] if cfg.train_vision_tower else [])
    lora = PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        # only the LLM's linears: the tower has q/k/v projections too
        target_modules=rf".*{LLM}.*\.({'|'.join(cfg.lora.target_modules)})$",
        modules_to_save=keep_full,
    )
    return get_peft_model(model, lora), summary


class LlavaStageTrainer(Trainer):
    def __init__(self, *args, stage: TrainStageConfig, lengths: list[int], **kwargs):
        self.stage = stage
        self.lengths = lengths
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        loss = llava_loss(base, supervised_logits_only=self.stage.supervised_logits_only, **inputs)
        return (loss, None) if return_outputs else loss

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            rates = {
                "llm": self.stage.lr,
                "projector": self.stage.projector_lr or self.stage.lr,
                "vision_tower": self.stage.vision_lr or self.stage.lr,
            }
            groups: dict[str, list] = {part: [] for part in rates}
            for name, param in self.model.named_parameters():
                if param.requires_grad:
                    groups[_part(name)].append(param)
            self.optimizer = torch.optim.AdamW(
                [{"params": ps, "lr": rates[part]} for part, ps in groups.items() if ps],
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
                weight_decay=self.args.weight_decay,
            )
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if not self.stage.group_by_length:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=self.lengths
        )


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint whose trainer_state.json (Trainer writes it last) is whole.

    A process killed while saving leaves a partial checkpoint-N; it is skipped, and Trainer
    overwrites it when it reaches step N again."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("checkpoint-*"):
        if path.name.split("-")[-1].isdigit():
            found.append((int(path.name.split("-")[-1]), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        return str(path)
    return None


def train_stage(
    cfg: TrainStageConfig, init_dir: Path, stage_dir: Path, run_dir: Path, stage_name: str
) -> StageResult:
    started = time.time()
    model, processor = load_llava(init_dir)
    samples = load_samples(
        [run_dir / p for p in cfg.data],
        image_root=(run_dir / cfg.image_root) if cfg.image_root else None,
        languages=cfg.languages,
        tasks=cfg.tasks,
    )
    if not samples:
        raise ValueError(f"{stage_name}: no training samples in {cfg.data} for languages {cfg.languages}")
    n_image_tokens = model.config.image_seq_length
    dataset = LlavaDataset(
        samples, processor.tokenizer, model.config.image_token_id, n_image_tokens, cfg.max_length
    )
    cache = None
    if cfg.feature_cache and not cfg.train_vision_tower and dataset.images:
        cache = FeatureCache.build_or_load(
            model, processor.image_processor, dataset.images, stage_dir / "features.safetensors"
        )
    collator = LlavaCollator(processor.tokenizer.pad_token_id, dataset.images, processor.image_processor, cache)
    model, trained = configure_trainable(model, cfg)

    use_gpu = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(stage_dir / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_workers,
        report_to=[],
        bf16=use_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not use_gpu,
        disable_tqdm=False,
    )
    trainer = LlavaStageTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        stage=cfg,
        lengths=dataset.lengths,
    )
    checkpoint = last_complete_checkpoint(Path(args.output_dir))
    trainer.train(resume_from_checkpoint=checkpoint)

    final = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    model_dir = stage_dir / "model"
    save_llava(final, processor, model_dir)
    history = trainer.state.log_history
    (stage_dir / "log_history.json").write_text(json.dumps(history, indent=1))
    return StageResult(
        model_dir=model_dir,
        log_history=history,
        trained=trained,
        samples=len(dataset),
        supervised_tokens=dataset.supervised_tokens,
        truncated_turns=dataset.truncated_turns,
        seconds=time.time() - started,
    )
