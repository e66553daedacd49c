"""Causal-LM training of the `lm` stage on HF Trainer: LoRA (+ embedding rows) or full.

LoRA alone would leave the rows that vocabulary expansion added at their initialisation, so in
lora mode peft's trainable tokens train those rows too (or every row): on a model with tied
embeddings (SmolLM2, the scratch LLMs) the same delta serves the output layer; an untied output
layer is trained whole through modules_to_save. The result is always merged into plain full
weights (vLLM cannot serve LoRA on resized embeddings).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback, TrainerState

from xllava.io import atomic_directory
from xllava.lm.config import LmConfig
from xllava.train.arguments import training_arguments
from xllava.train.checkpoints import CompletionMarker, resume_point, stage_identity
from xllava.train.fused_lora import lora_fused
from xllava.train.precision import cast_unpartitioned, upcast_trainable
from xllava.train.stage import trainer_adamw


def base_vocab_size(llm_dir: Path) -> int | None:
    """Rows before this id existed in the unexpanded LLM (from the vocab stage's record)."""
    info = Path(llm_dir) / "xllava_vocab.json"
    if not info.exists():
        return None
    return int(json.loads(info.read_text())["n_base"])


def trainable_rows(cfg: LmConfig, n_rows: int, n_base: int | None) -> list[int]:
    if cfg.embeddings == "none":
        return []
    if cfg.embeddings == "all":
        return list(range(n_rows))
    return list(range(n_base, n_rows)) if n_base is not None else []


def prepare_model(model, cfg: LmConfig, n_base: int | None):
    """Wrap for training: peft LoRA with trainable embedding rows, or every weight trainable."""
    if cfg.mode == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    n_rows = model.get_input_embeddings().weight.shape[0]
    rows = trainable_rows(cfg, n_rows, n_base)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    embed_name = next(n.split(".")[-1] for n, m in model.named_modules() if m is model.get_input_embeddings())
    lora = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
        trainable_token_indices={embed_name: rows} if rows else None,
        # an untied output layer cannot share the embedding delta: it trains whole
        modules_to_save=["lm_head"] if rows and not tied else None,
    )
    return get_peft_model(model, lora)


def _embedding_param(name: str) -> bool:
    return "trainable_tokens" in name or "modules_to_save" in name or "embed_tokens" in name or "lm_head" in name


class LmTrainer(Trainer):
    def __init__(self, *args, embedding_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.embedding_lr = embedding_lr

    def create_optimizer(self, model=None):
        """AdamW with the embedding rows at their own rate (they start far from trained)."""
        if self.optimizer is not None or self.embedding_lr is None:
            return super().create_optimizer(model) if self.optimizer is None else self.optimizer
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if not _embedding_param(n)], "lr": self.args.learning_rate},
            {"params": [p for n, p in params if _embedding_param(n)], "lr": self.embedding_lr},
        ]
        self.optimizer = trainer_adamw(self, [g for g in groups if g["params"]])
        return self.optimizer


class TokensPerSecond(TrainerCallback):
    """tokens/s on the progress bar (tqdm gives the ETA) and in the logged history."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.start: float | None = None
        self.first_step = 0
        self.bar_owner: ProgressCallback | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def rate(self, state) -> float:
        elapsed = time.perf_counter() - (self.start or time.perf_counter())
        return (state.global_step - self.first_step) * self.tokens_per_step / max(elapsed, 1e-9)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar_owner is not None and getattr(self.bar_owner, "training_bar", None) is not None:
            self.bar_owner.training_bar.set_postfix(tok_s=f"{self.rate(state):.0f}", refresh=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            logs["tokens_per_second"] = round(self.rate(state), 1)


@dataclass
class LmTrainResult:
    model_dir: Path
    log_history: list[dict]
    steps: int
    seconds: float
    tokens: int
    tokens_per_second: float
    trainable_parameters: int
    trained_rows: int
    fused_lora: int = 0  # LoRA projections trained as one autograd function (xllava.train.fused_lora)


def _finished_state(checkpoint: str | None) -> TrainerState | None:
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if state.max_steps > 0 and state.global_step >= state.max_steps else None


def train_lm(cfg: LmConfig, llm_dir: Path, out_dir: Path, dataset, tokenizer) -> LmTrainResult:
    """Train on the packed dataset, resuming from out_dir/checkpoints, and write the merged model
    (weights, tokenizer, the resolved config) to out_dir/model."""
    from xllava.lm.data import collate

    llm_dir, out_dir = Path(llm_dir), Path(out_dir)
    torch.manual_seed(cfg.seed)
    # the arguments first (they join the launcher's process group and, under ZeRO-3 with
    # zero3_init_flag, make the load partitioned), then the model in the training precision
    args = training_arguments(cfg, out_dir, "lm")
    if getattr(getattr(args, "deepspeed_plugin", None), "zero_stage", None) == 3:
        # its merge and export would need the gathered weights (as xllava.train.stage gathers them)
        raise NotImplementedError("lm: ZeRO-3 is not supported for this stage; launch it with ZeRO-2 or DDP")
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype)
    model.config.use_cache = False
    n_base = base_vocab_size(llm_dir)
    rows = len(trainable_rows(cfg, model.get_input_embeddings().weight.shape[0], n_base)) if cfg.mode == "lora" \
        else model.get_input_embeddings().weight.shape[0]
    model = prepare_model(model, cfg, n_base)
    if getattr(args, "deepspeed_plugin", None) is None and not args.deepspeed:
        upcast_trainable(model)  # autocast's fp32 master weights; DeepSpeed keeps its own
    else:
        cast_unpartitioned(model, dtype)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the newest intact checkpoint trained under this config (a changed one refuses, naming the fields)
    identity = stage_identity(cfg)
    checkpoint = resume_point(Path(args.output_dir), identity, "lm")
    seq_len = max(len(b) for b in dataset.packed.blocks)
    speed = TokensPerSecond(cfg.batch_size * seq_len)
    trainer = LmTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                        callbacks=[speed, CompletionMarker(identity)],
                        embedding_lr=cfg.embedding_lr if cfg.mode == "lora" else None)
    speed.bar_owner = next((c for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)), None)
    t0 = time.perf_counter()
    done = _finished_state(checkpoint)
    fused = 0
    if done is not None:
        # a finished run: Trainer would take one step past max_steps on resume, so load and stop
        trainer._load_from_checkpoint(checkpoint)
        trainer.state = done
    else:
        with lora_fused(model, enabled=cfg.lora.fused) as fused:  # full mode has no LoRA layers to fuse
            trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - t0
    steps = trainer.state.global_step
    history = list(trainer.state.log_history)
    model_dir = out_dir / "model"
    merged = model.merge_and_unload() if cfg.mode == "lora" else model
    merged = merged.to(dtype)  # the export in the training precision
    merged.config.use_cache = True
    if not trainer.is_world_process_zero():  # one writer; the others wait for the file below
        trainer.accelerator.wait_for_everyone()
        return LmTrainResult(model_dir, list(trainer.state.log_history), trainer.state.global_step,
                             time.perf_counter() - t0, 0, 0.0, n_trainable, rows, fused)
    with atomic_directory(model_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "xllava_lm.json").write_text(json.dumps({"base": str(llm_dir), **cfg.model_dump(mode="json")},
                                                       indent=1))
        vocab_info = llm_dir / "xllava_vocab.json"
        if vocab_info.exists():  # later stages still need to know which rows are new
            (tmp / "xllava_vocab.json").write_text(vocab_info.read_text())
    trainer.accelerator.wait_for_everyone()
    tokens = (steps - (int(checkpoint.split("-")[-1]) if checkpoint else 0)) * speed.tokens_per_step
    return LmTrainResult(model_dir, history, steps, seconds, tokens, tokens / max(seconds, 1e-9), n_trainable, rows,
                         fused)
