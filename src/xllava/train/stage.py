"""One LLaVA training stage on transformers' Trainer: stage 1 (align) and stage 2 (instruct).

What Trainer gives us and we keep: checkpoints that restore weights, optimizer, scheduler, RNG and
data position; logging; accelerate underneath for more devices. What we add: per-module learning
rates, LoRA with the projector trained in full, batches grouped by real token length, the cached
vision features and the supervised-positions-only loss (xllava.train.loss), LoRA projections fused
into one autograd function on a CPU (xllava.train.fused_lora), and an export that
always ends as a complete HF LLaVA directory with any LoRA merged.

The same function runs on every rank under `torchrun` / `accelerate launch` (DDP, FSDP, DeepSpeed):
the loss is computed inside the wrapped model's forward (the engines sync gradients and gather
shards there), the length-grouped order is one global order dealt out per rank, the feature cache
and the final model have one writer (rank 0), and the loss is normalised by the supervised tokens of
the whole global batch, so N processes at batch b match one process at batch N*b.
"""

from __future__ import annotations

import json
import os
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from xllava.config import TrainStageConfig
from xllava.model.assemble import load_llava, save_llava
from xllava.train.arguments import training_arguments
from xllava.train.checkpoints import CompletionMarker, resume_point, stage_identity
from xllava.train.data import load_samples
from xllava.train.dataset import LlavaCollator, LlavaDataset
from xllava.train.features import FeatureCache, cache_by_default
from xllava.train.fused_lora import lora_fused
from xllava.train.fused_norm import rms_norm_fused
from xllava.train.image_check import check_images
from xllava.train.labels import IGNORE
from xllava.train.loss import llava_loss
from xllava.train.padding_free import padding_free
from xllava.train.precision import (
    cast_unpartitioned,
    check_attention,
    check_deepspeed,
    upcast_trainable,
)
from xllava.train.trainable_save import (
    deepspeed_resume_without_frozen,
    load_trainable,
    save_trainable,
    saves_trainable_only,
)

# the run's vision-feature caches (one file per tower), shared by its stages
FEATURES_DIR = "features"
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
    fused_lora: int = 0  # LoRA projections trained as one autograd function (xllava.train.fused_lora)
    padding_free: bool = False  # micro-batches packed into one row (xllava.train.padding_free)


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
    if not (cfg.train_projector or cfg.train_vision_tower or cfg.llm_mode != "frozen"):
        raise ValueError("the stage trains nothing: projector, vision tower and LLM are all frozen")
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(cfg.train_projector)
    if cfg.train_vision_tower:
        model.model.vision_tower.requires_grad_(True)
    if cfg.llm_mode == "full":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    summary = {
        "projector": "full" if cfg.train_projector else "frozen",
        "vision_tower": "full" if cfg.train_vision_tower else "frozen",
        "llm": cfg.llm_mode,
    }
    if cfg.llm_mode != "lora":
        return model, summary
    keep_full = ([PROJECTOR] if cfg.train_projector else []) + ([TOWER] if cfg.train_vision_tower else [])
    lora = PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        # only the LLM's linears: the tower has q/k/v projections too
        target_modules=rf".*{LLM}.*\.({'|'.join(cfg.lora.target_modules)})$",
        modules_to_save=keep_full,
    )
    return get_peft_model(model, lora), summary


class GlobalLengthGroupedSampler(LengthGroupedSampler):
    """One length-grouped order, the same on every rank, grouped by the *global* batch.

    accelerate (under Trainer) deals consecutive per-device batches of the sampler's order out to the
    ranks (BatchSamplerShard), so the sampler must be global, not per rank: transformers'
    DistributedLengthGroupedSampler would be sharded twice. Every rank computes the order from
    seed + epoch (not from the global RNG, which nothing keeps in step across ranks), and groups
    in multiples of the global batch, so each optimizer step takes one slice of similar lengths."""

    def __init__(self, global_batch: int, lengths: list[int], seed: int, per_device: int | None = None,
                 mode: str = "megabatch"):
        super().__init__(global_batch, lengths=lengths)
        self.seed = seed
        self.epoch = 0
        self.per_device = per_device or global_batch
        self.mode = mode

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.mode == "llava":
            return iter(llava_grouped_indices(self.lengths, self.batch_size, self.per_device, generator))
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def llava_grouped_indices(
    lengths: list[int], global_batch: int, per_device: int, generator: torch.Generator
) -> list[int]:
    """LLaVA-1.5's grouping: a random order cut into global batches; within each, the longest samples
    are dealt one at a time to the micro-batch with the fewest tokens so far (until it is full), so
    every rank and accumulation step gets a similar token count. Micro-batches follow each other in
    the order accelerate deals them to ranks."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    out: list[int] = []
    for start in range(0, len(order), global_batch):
        batch = sorted(order[start : start + global_batch], key=lambda i: -lengths[i])
        n_micro = -(-len(batch) // per_device)
        micro: list[list[int]] = [[] for _ in range(n_micro)]
        tokens = [0] * n_micro
        for i in batch:
            slot = min((m for m in range(n_micro) if len(micro[m]) < per_device), key=lambda m: tokens[m])
            micro[slot].append(i)
            tokens[slot] += lengths[i]
        out += [i for m in micro for i in m]
    return out


@contextmanager
def loss_as_forward(model: torch.nn.Module, supervised_logits_only: bool) -> Iterator[None]:
    """Route the LLaVA model's forward to the stage loss while training.

    DDP syncs gradients, FSDP and ZeRO-3 gather weights, autocast applies, all in the call of the
    model they wrap; calling the inner modules directly would bypass them (DDP would silently train
    each rank on its own gradients). So the loss is what the wrapped call computes. An instance
    attribute, removed afterwards: the class and the saved model are untouched."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model

    def forward(self, **inputs) -> torch.Tensor:
        return llava_loss(self, supervised_logits_only=supervised_logits_only, **inputs)

    base.forward = types.MethodType(forward, base)
    try:
        yield
    finally:
        base.__dict__.pop("forward", None)


def parameter_groups(model: torch.nn.Module, stage: TrainStageConfig) -> list[dict]:
    """The trainable parameters of `model` by part (llm, projector, vision tower), each part at the
    stage's rate for it."""
    rates = {
        "llm": stage.lr,
        "projector": stage.lr if stage.projector_lr is None else stage.projector_lr,
        "vision_tower": stage.lr if stage.vision_lr is None else stage.vision_lr,
    }
    groups: dict[str, list] = {part: [] for part in rates}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[_part(name)].append(param)
    return [{"params": ps, "lr": rates[part]} for part, ps in groups.items() if ps]


def adamw(groups: list[dict], args: TrainingArguments, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over parameter groups with their own rates, set up from the training arguments."""
    return torch.optim.AdamW(
        groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay,
        fused=fused,
    )


def trainer_adamw(trainer: Trainer, groups: list[dict]) -> torch.optim.AdamW:
    """`adamw` for a trainer: one fused kernel over all parameters (on a CPU the default is a Python
    loop over them: 11 -> 6 ms a step for the tiny LLM), except under the engines that shard weights
    (FSDP, DeepSpeed), which bring their own."""
    return adamw(groups, trainer.args, fused=not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled))


class LlavaStageTrainer(Trainer):
    def __init__(self, *args, stage: TrainStageConfig, lengths: list[int], **kwargs):
        self.stage = stage
        self.lengths = lengths
        super().__init__(*args, **kwargs)
        # Ask Trainer for the supervised-token count of the whole global batch (all accumulation
        # steps, all ranks): compute_loss normalises by it. Our labels are shifted inside the loss.
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = model(**inputs)  # llava_loss, through DDP/FSDP/DeepSpeed (see loss_as_forward)
        if num_items_in_batch is not None:
            # mean over this micro-batch -> sum / tokens of the global batch; x processes because
            # DDP averages gradients over ranks. One process, no accumulation: the plain mean.
            local = (inputs["labels"][:, 1:] != IGNORE).sum()
            loss = loss * local / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = trainer_adamw(self, parameter_groups(self.model, self.stage))
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints of a model with frozen weights hold only what trains (xllava.train.trainable_save)."""
        if _internal_call and output_dir is not None and not self.is_fsdp_enabled \
                and saves_trainable_only(self.model):
            save_trainable(self.model, Path(output_dir), write=self.args.should_save)
            if self.args.should_save:
                torch.save(self.args, Path(output_dir) / "training_args.bin")
            return
        super().save_model(output_dir, _internal_call)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self.is_deepspeed_enabled and saves_trainable_only(self.model):
            self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
            return
        super()._save_optimizer_and_scheduler(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Trainer reads a checkpoint's model.safetensors verbatim, but save_pretrained writes LLaVA in
        the legacy key layout (transformers 5 renames on save and on from_pretrained only), so every
        weight came back missing and a resumed run silently restarted from the stage's initial
        weights. Read full-model checkpoints back through from_pretrained; the engines' own formats
        (DeepSpeed, FSDP) and LoRA adapters keep Trainer's path."""
        model = self.model if model is None else model
        if load_trainable(model, Path(resume_from_checkpoint)):
            return
        plain = not (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config"))
        if not (plain and isinstance(model, LlavaForConditionalGeneration)):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict(), strict=True)

    def _get_train_sampler(self, train_dataset=None):
        if not self.stage.group_by_length:
            return super()._get_train_sampler(train_dataset)
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return GlobalLengthGroupedSampler(global_batch, self.lengths, seed, self.args.train_batch_size,
                                          self.stage.length_grouping)


def _sharded(trainer: Trainer) -> bool:
    """Whether each rank holds only a slice of the weights (FSDP, ZeRO-3) when training ends."""
    if trainer.is_fsdp_enabled:
        return True
    return zero_stage(trainer.args) == 3


def zero_stage(args: TrainingArguments) -> int | None:
    """The DeepSpeed ZeRO stage these arguments train with; None without DeepSpeed."""
    plugin = getattr(args, "deepspeed_plugin", None)
    if plugin is not None:
        return plugin.zero_stage
    if args.deepspeed:
        return args.hf_deepspeed_config.config.get("zero_optimization", {}).get("stage")
    return None


def training_dtype(args: TrainingArguments) -> torch.dtype:
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32


def trained_model(
    trainer: Trainer, model: torch.nn.Module, cfg: TrainStageConfig, init_dir: Path
) -> LlavaForConditionalGeneration | None:
    """The trained LLaVA with any LoRA merged, in the training precision, on rank 0 (the one writer);
    None on the other ranks."""
    dtype = training_dtype(trainer.args)
    if _sharded(trainer):
        # gather the full weights (a collective: every rank takes part) into a fresh copy on rank 0;
        # ZeRO-3 needs stage3_gather_16bit_weights_on_model_save (set in configs/zero3.json)
        state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        if trainer.is_deepspeed_enabled:
            # While a ZeRO-3 config is registered, transformers builds every model under
            # deepspeed.zero.Init, a collective: the copy below (one rank) and the next stage's
            # load_llava (before its own Trainer) must be plain.
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        if not trainer.is_world_process_zero():
            return None
        fresh, _ = load_llava(init_dir, dtype=dtype)
        model, _ = configure_trainable(fresh, cfg)
        missing, _ = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k in dict(model.named_parameters())]
        if missing:
            raise RuntimeError(f"gathered state dict lacks {len(missing)} weights, e.g. {missing[:3]}")
    elif not trainer.is_world_process_zero():
        return None
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    return merged.to(dtype)  # the trained weights were fp32 masters under autocast


def stage_arguments(cfg: TrainStageConfig, stage_dir: Path, stage_name: str, has_text_only: bool
                    ) -> TrainingArguments:
    """The knobs' TrainingArguments plus what a LLaVA stage adds: its loader workers, the loss averaged
    over the tokens of every device, and DDP's search for unused parameters where text-only batches
    leave the projector without gradient."""
    return training_arguments(
        cfg, stage_dir, stage_name,
        dataloader_num_workers=cfg.dataloader_workers,
        average_tokens_across_devices=True,
        ddp_find_unused_parameters=True if has_text_only else None,
    )


def use_feature_cache(cfg: TrainStageConfig, model_config, n_images: int, zero3: bool, stage_name: str) -> bool:
    """The recipe's choice, or (None) on where the cache is cheap. Under ZeRO-3 the tower's weights
    are partitioned from creation (zero3_init_flag), so no rank can run it outside the engine."""
    if cfg.train_vision_tower or not n_images:
        return False
    if zero3:
        if cfg.feature_cache:
            raise ValueError(f"{stage_name}.feature_cache: true is not available under ZeRO-3 (the vision tower is "
                             "partitioned across ranks); set it to false or leave it unset")
        return False
    if cfg.feature_cache is not None:
        return cfg.feature_cache
    return cache_by_default(model_config, n_images)


def train_stage(
    cfg: TrainStageConfig, init_dir: Path, stage_dir: Path, run_dir: Path, stage_name: str,
    started_from: dict | None = None,
) -> StageResult:
    """Train one stage into stage_dir, resuming from its newest intact checkpoint trained under the
    same config (`started_from`: what else the stage depends on, recorded with each checkpoint)."""
    started = time.time()
    identity = stage_identity(cfg)
    # before anything is loaded: a refused resume or a damaged checkpoint shows at once
    checkpoint = resume_point(stage_dir / "checkpoints", identity, stage_name, started_from)
    check_attention(cfg.llm_attention, f"{stage_name}.llm_attention")
    processor = LlavaProcessor.from_pretrained(init_dir)
    config = LlavaConfig.from_pretrained(init_dir)
    sources = cfg.sources()
    samples = load_samples(
        [run_dir / s.path for s in sources],
        image_roots=[run_dir / s.image_root if s.image_root else None for s in sources],
        languages=cfg.languages,
        tasks=cfg.tasks,
    )
    if not samples:
        raise ValueError(f"{stage_name}: no training samples in {cfg.data} for languages {cfg.languages}")
    check_images(samples)
    # the arguments before the model: under ZeRO-3 with zero3_init_flag the model is then created
    # partitioned (deepspeed.zero.Init) instead of whole on every rank first
    args = stage_arguments(cfg, stage_dir, stage_name, has_text_only=any(s.image is None for s in samples))
    zero = zero_stage(args)
    check_deepspeed(zero, cfg.gradient_checkpointing, f"{stage_name}.gradient_checkpointing")
    dtype = training_dtype(args)
    # FSDP casts from fp32 itself (its mixed-precision policy) and wants one dtype per wrapped unit
    fsdp = bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    model, _ = load_llava(init_dir, dtype=torch.float32 if fsdp else dtype, attention=cfg.llm_attention)
    n_image_tokens = config.image_seq_length
    dataset = LlavaDataset(
        samples, processor.tokenizer, config.image_token_id, n_image_tokens, cfg.max_length, format=cfg.format
    )
    cache = None
    if use_feature_cache(cfg, config, len(dataset.images), zero == 3, stage_name):
        # one writer: rank 0 builds the file while the other ranks wait, then they read it
        with args.main_process_first(local=False, desc="vision feature cache"):
            cache = FeatureCache.build_or_load(
                model, processor.image_processor, dataset.images, run_dir / FEATURES_DIR,
                write=args.process_index == 0, device=args.device, pad=cfg.image_aspect_ratio == "pad",
            )
    collator = LlavaCollator(processor.tokenizer.pad_token_id, dataset.images, processor.image_processor, cache,
                             pad=cfg.image_aspect_ratio == "pad")
    set_seed(cfg.seed)  # LoRA's initial weights: the same on every rank and in every run
    model, trained = configure_trainable(model, cfg)
    if zero is None:  # autocast's fp32 master weights
        upcast_trainable(model)
    else:  # DeepSpeed keeps its own fp32 masters of one-dtype weights
        cast_unpartitioned(model, dtype)
    model.config.text_config.use_cache = False  # no KV cache in training (save_llava turns it back on)

    trainer = LlavaStageTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        stage=cfg,
        lengths=dataset.lengths,
        callbacks=[CompletionMarker(identity, started_from)],
    )
    # sharded weights (FSDP, ZeRO-3) are gathered inside module calls, which the fused LoRA and norms bypass
    fuse = lora_fused(model, enabled=cfg.lora.fused and not _sharded(trainer))
    partial = deepspeed_resume_without_frozen() if zero is not None and saves_trainable_only(model) else nullcontext()
    norms = rms_norm_fused(model, enabled=cfg.fused_norm and not _sharded(trainer))
    with loss_as_forward(model, cfg.supervised_logits_only), fuse as fused, partial, norms, \
            padding_free(model, cfg.padding_free) as packed:
        trainer.train(resume_from_checkpoint=checkpoint)

    final = trained_model(trainer, model, cfg, init_dir)
    model_dir = stage_dir / "model"
    history = trainer.state.log_history
    if final is not None:  # rank 0 writes; checkpoints were written once by Trainer itself
        save_llava(final, processor, model_dir)
        (stage_dir / "log_history.json").write_text(json.dumps(history, indent=1))
    trainer.accelerator.wait_for_everyone()  # no rank returns before the model is on disk
    return StageResult(
        model_dir=model_dir,
        log_history=history,
        trained=trained,
        samples=len(dataset),
        supervised_tokens=dataset.supervised_tokens,
        truncated_turns=dataset.truncated_turns,
        seconds=time.time() - started,
        fused_lora=fused,
        padding_free=packed,
    )
