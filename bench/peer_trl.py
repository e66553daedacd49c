"""Stage 2 against TRL's SFTTrainer, the tool people fine-tune LLaVA-format models with today.

Both sides get the same assembled model (the same weights and the same LoRA initialisation: one copy
of it each), the same stage-2 samples and images of a 200-scene world, the recipe's stage-2 setup
(what trains, LoRA r / alpha / dropout / targets, the projector's own rate), the same global batch,
micro-batch and learning rate (constant here, so every step moves both models alike), fp32 on a CPU.

TRL: `SFTTrainer` on a `datasets.Dataset` of conversational `messages` plus `images` (file paths,
decoded per access by the `Image` feature), the model's `LlavaProcessor` as processing class, so its
`DataCollatorForVisionLanguageModeling` applies the chat template and processes the images of each
batch; `assistant_only_loss=True` (TRL's option for VLMs with a `{% generation %}` template: the
labels are the assistant turns, as xllava's), `max_length` the stage's (TRL keeps the start, where
the image is; xllava cuts after the last whole answer that fits). TRL refuses
packing and padding-free training for vision datasets, so batches are right-padded. Two of
SFTConfig's defaults are changed, both in TRL's favour: `gradient_checkpointing=False` (recomputing
activations saves memory that a CPU has, at the cost of time) and `bf16=False` (fp32, as xllava).
xllava: its stage-2 trainer (`LlavaStageTrainer` with the recipe's levers: cached tower features,
batches grouped by real token length, the supervised-positions-only tail, fused LoRA on a CPU).

Each side runs its own `Trainer.train()` loop in its own thread; a baton passed at every optimizer
step lets exactly one of them run at a time, so the sides take turns batch by batch and a drift in
the machine's speed falls on both alike. A side's time is the wall time it holds the baton: data
loading, collation, forward, backward and the optimizer. Each side first takes one untimed step on
other samples in the thread that then trains (its thread pool and first kernels warm; the weights
put back). Then both train one epoch over the same `batch x steps` samples (a seeded draw from the
world's stage-2 data), each ordering and batching them its own way (TRL: random; xllava: by length,
which over so few samples leaves more padding than over a whole epoch), every step timed: samples/s
are the same samples over the time each side took. After them both models are scored on the same
held-out samples with the same loss (xllava.train.loss, the full forward): they must agree within
5%, i.e. both trained the same thing.

    # the acceptance target (>= 3x): about 10 minutes of 2 idle cores, world and model build included
    python bench/peer_trl.py --recipe recipes/smol.yaml
    python bench/peer_trl.py --recipe recipes/tiny.yaml --steps 4
    python bench/peer_trl.py --smoke      # a shrunk tiny run in seconds (tests/test_bench_scripts.py)
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
from bench_common import cpu_name, prepared_world  # noqa: E402
from torch.utils.data import Subset  # noqa: E402
from transformers import PrinterCallback, Trainer, TrainerCallback  # noqa: E402
from transformers.trainer_utils import SaveStrategy  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from xllava.config import TrainStageConfig  # noqa: E402
from xllava.model.assemble import load_llava  # noqa: E402
from xllava.train.data import Sample, load_samples  # noqa: E402
from xllava.train.dataset import LlavaCollator, LlavaDataset  # noqa: E402
from xllava.train.features import FeatureCache  # noqa: E402
from xllava.train.fused_lora import lora_fused  # noqa: E402
from xllava.train.labels import IGNORE  # noqa: E402
from xllava.train.loss import llava_loss  # noqa: E402
from xllava.train.stage import (  # noqa: E402
    LlavaStageTrainer,
    configure_trainable,
    loss_as_forward,
    stage_arguments,
    trainer_adamw,
    use_feature_cache,
)


class Baton:
    """One holder at a time among named sides; a finished side drops out of the rotation."""

    def __init__(self, names: list[str]):
        self.names = names
        self.turn = names[0]
        self.done: set[str] = set()
        self.cond = threading.Condition()

    def take(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == name)

    def hand_on(self, name: str, finished: bool = False) -> None:
        with self.cond:
            if finished:
                self.done.add(name)
            left = [n for n in self.names if n not in self.done]
            if left:
                after = self.names[(self.names.index(name) + 1) % len(self.names)]
                while after in self.done:
                    after = self.names[(self.names.index(after) + 1) % len(self.names)]
                self.turn = after
            self.cond.notify_all()


@dataclass
class Side:
    name: str
    steps: list[float] = field(default_factory=list)  # seconds of each optimizer step
    batches: list[tuple[int, int, int]] = field(default_factory=list)  # (samples, real, padded) per micro-batch
    error: BaseException | None = None


class Recording:
    """A collator wrapper that counts the samples, real and padded tokens of each micro-batch."""

    def __init__(self, collate: Callable, side: Side):
        self.collate, self.side = collate, side

    def __call__(self, examples):
        batch = self.collate(examples)
        mask = batch["attention_mask"]
        self.side.batches.append((mask.shape[0], int(mask.sum()), mask.numel()))
        return batch


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc). Each side's thread allocates from its own malloc
    arena, which keeps what its step freed: without this the process holds both sides' peaks at once
    (20 GB on smol at micro-batch 4 instead of one side's 9-10)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class TakeTurns(TrainerCallback):
    """Holds the baton from the start of training to the end of each optimizer step, then hands on."""

    def __init__(self, baton: Baton, side: Side):
        self.baton, self.side = baton, side
        self.started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.baton.take(self.side.name)
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.side.steps.append(time.perf_counter() - self.started)
        print(f"{self.side.name} step {state.global_step}/{state.max_steps}: {self.side.steps[-1]:.1f} s", flush=True)
        release_freed_memory()
        # after its last step a side waits for its turn once more, so what Trainer does after the
        # loop never runs beside the other side's step; it hands on for good when train() returns
        self.baton.hand_on(self.side.name)
        self.baton.take(self.side.name)
        self.started = time.perf_counter()


def run_side(baton: Baton, side: Side, warm_up: Callable[[], None], train: Callable[[], None]) -> threading.Thread:
    """The side's thread: an untimed warm-up step, then its timed training, each holding the baton."""

    def target():
        try:
            baton.take(side.name)
            warm_up()
            train()
        except BaseException as err:  # reported by main; the other side must not wait for it
            side.error = err
        finally:
            baton.hand_on(side.name, finished=True)

    thread = threading.Thread(target=target, name=side.name)
    thread.start()
    return thread


def untimed_step(trainer: Trainer) -> Callable[[], None]:
    """One optimizer step that only warms the thread that runs it (its thread pool, allocator arena,
    first kernels); the trained weights are put back, so both sides start the timed epoch alike."""

    def step() -> None:
        saved = [(p, p.detach().clone()) for p in trainer.model.parameters() if p.requires_grad]
        trainer.train()
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)
        trainer.model.zero_grad(set_to_none=True)

    return step


def xllava_trainer(model, cfg: TrainStageConfig, steps: int, data, lengths: list[int], collate: Callable,
                   out: Path, callbacks: list | None = None) -> LlavaStageTrainer:
    """xllava's stage-2 trainer as the instruct stage builds it, for `steps` optimizer steps."""
    cfg = cfg.model_copy(update={"max_steps": steps})
    args = stage_arguments(cfg, out, "instruct", has_text_only=False)  # one process: no DDP to configure
    args.disable_tqdm = True
    args.save_strategy = SaveStrategy.NO
    return LlavaStageTrainer(model=model, args=args, train_dataset=data, data_collator=collate, stage=cfg,
                             lengths=lengths, callbacks=callbacks)


def trl_config(cfg: TrainStageConfig, micro: int, steps: int, out: Path) -> SFTConfig:
    """SFTConfig for the same batch, rate and optimizer settings as the stage."""
    return SFTConfig(
        output_dir=str(out), per_device_train_batch_size=micro, gradient_accumulation_steps=cfg.batch_size // micro,
        max_steps=steps, learning_rate=cfg.lr, lr_scheduler_type="constant", weight_decay=cfg.weight_decay,
        adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1], seed=cfg.seed, data_seed=cfg.seed,
        max_length=cfg.max_length, assistant_only_loss=True, gradient_checkpointing=False, bf16=False,
        use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=cfg.dataloader_workers,
    )


def trl_dataset(samples: list[Sample]) -> datasets.Dataset:
    """TRL's conversational vision format: `messages` with an image placeholder part, `images`."""
    rows = {"messages": [s.messages for s in samples],
            "images": [[str(s.image)] if s.image is not None else [] for s in samples]}
    return datasets.Dataset.from_dict(rows).cast_column("images", datasets.Sequence(datasets.Image()))


def held_out_loss(model, collator: LlavaCollator, items: list[dict], micro_batch: int) -> float:
    """Mean loss per supervised token of `items`, through the tower (no cache), in eval mode."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total, tokens = 0.0, 0
    was_training = base.training
    base.eval()
    with torch.no_grad():
        for start in range(0, len(items), micro_batch):
            batch = collator(items[start : start + micro_batch])
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(llava_loss(base, supervised_logits_only=True, **batch)) * n
            tokens += n
    base.train(was_training)
    return total / tokens


def rate(side: Side) -> tuple[float, str]:
    """Samples/s over all of a side's steps, and a line describing them."""
    seconds = sum(side.steps)
    samples = sum(b[0] for b in side.batches)
    real = sum(b[1] for b in side.batches)
    padded = sum(b[2] for b in side.batches)
    per_second = samples / seconds
    line = (f"{side.name:7s} {per_second:7.3f} samples/s  ({len(side.steps)} steps, {samples} samples in {seconds:.1f} s; "
            f"{real} real tokens, {padded - real} padding ({padded / real:.2f}x))")
    return per_second, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/smol.yaml")
    parser.add_argument("--steps", type=int, default=3,
                        help="optimizer steps per side, all timed: one epoch over the same batch x steps samples")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="samples per forward (default: 4 for an LLM over 50M parameters, else the whole "
                             "batch); the global batch stays the recipe's")
    parser.add_argument("--held-out", type=int, default=16, help="samples scored after training, on both sides")
    parser.add_argument("--run-dir", default=None, help="reuse a run directory (world + base model)")
    parser.add_argument("--smoke", action="store_true", help="the tiny recipe shrunk to seconds (for tests)")
    args = parser.parse_args()

    recipe_path, run_dir, recipe, init = prepared_world(args.recipe, args.smoke, args.run_dir, "xllava-peer-trl-")
    cfg = recipe.instruct.model_copy(update={"train_vision_tower": False, "scheduler": "constant",
                                             "warmup_ratio": 0.0, "save_steps": 10**9, "logging_steps": 1})
    model, processor = load_llava(init)
    samples = load_samples([run_dir / p for p in cfg.data], languages=cfg.languages, tasks=cfg.tasks)
    random.Random(0).shuffle(samples)
    held, rest = samples[: args.held_out], samples[args.held_out :]
    params = sum(p.numel() for p in model.parameters())
    micro = args.micro_batch or (4 if params > 50e6 else cfg.batch_size)
    if cfg.batch_size % micro:
        parser.error(f"--micro-batch {micro} does not divide the batch size {cfg.batch_size}")
    accum = cfg.batch_size // micro
    steps = args.steps
    if cfg.batch_size * (1 + steps) > len(rest):
        parser.error(f"--steps {steps} needs {cfg.batch_size * (1 + steps)} samples; the world has {len(rest)}")
    cfg = cfg.model_copy(update={"micro_batch": micro})

    tokenizer = processor.tokenizer
    epoch = LlavaDataset(rest, tokenizer, model.config.image_token_id, model.config.image_seq_length, cfg.max_length)
    # the samples both sides train (a seeded draw), after a warm-up batch of others
    warm_ids, timed_ids = list(range(cfg.batch_size)), list(range(cfg.batch_size, cfg.batch_size * (1 + steps)))
    samples = [rest[j] for j in timed_ids]
    held_set = LlavaDataset(held, tokenizer, model.config.image_token_id, model.config.image_seq_length,
                            cfg.max_length)
    held_items = [held_set[i] for i in range(len(held_set))]
    torch.manual_seed(cfg.seed)
    model, trained = configure_trainable(model, cfg)
    model.config.text_config.use_cache = False
    theirs = copy.deepcopy(model)  # the same weights and LoRA init on both sides
    ours_base = model.get_base_model() if hasattr(model, "get_base_model") else model

    print(f"recipe {recipe_path}: {params / 1e6:.1f}M params, trained {trained}, {len(samples)} of {len(epoch)} "
          f"samples (a seeded draw), "
          f"batch {micro} x {accum} = {micro * accum}, lr {cfg.lr} (projector {cfg.projector_lr}), max length "
          f"{cfg.max_length}, 1 untimed + {steps} timed steps on both sides, torch threads {torch.get_num_threads()}")
    print(f"machine: {cpu_name()}")
    pixels = LlavaCollator(tokenizer.pad_token_id, epoch.images, processor.image_processor)
    before = held_out_loss(model, pixels, held_items, micro)

    work = Path(tempfile.mkdtemp(prefix="trainers-", dir=run_dir))
    started = time.perf_counter()
    cache = None
    if epoch.images and use_feature_cache(cfg, ours_base.config, len(epoch.images), False, "instruct"):
        cache = FeatureCache.build_or_load(ours_base, processor.image_processor, epoch.images, work / "features")
    cache_seconds = time.perf_counter() - started  # the epoch's images, once
    if cfg.llm_attention is not None:
        ours_base.set_attn_implementation({"text_config": cfg.llm_attention})

    sides = {"xllava": Side("xllava"), "trl": Side("trl")}
    baton = Baton(list(sides))
    collate = LlavaCollator(tokenizer.pad_token_id, epoch.images, processor.image_processor, cache)
    ours = xllava_trainer(model, cfg, steps, Subset(epoch, timed_ids), [epoch.lengths[j] for j in timed_ids],
                          Recording(collate, sides["xllava"]), work / "xllava", callbacks=[TakeTurns(baton, sides["xllava"])])
    ours_warm = xllava_trainer(model, cfg, 1, Subset(epoch, warm_ids), [epoch.lengths[j] for j in warm_ids],
                               collate, work / "xllava-warm")
    # the same per-module rates and AdamW as xllava's (a projector rate of its own is not a TRL
    # option, but Trainer takes an optimizer): the parameter groups of xllava's, by name
    ours.create_optimizer()
    by_name = dict(theirs.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [{"params": [by_name[names[id(p)]] for p in g["params"]], "lr": g["lr"]}
              for g in ours.optimizer.param_groups]
    peer = SFTTrainer(model=theirs, args=trl_config(cfg, micro, steps, work / "trl"), train_dataset=trl_dataset(samples),
                      processing_class=processor, optimizers=(trainer_adamw(ours, groups), None),
                      callbacks=[TakeTurns(baton, sides["trl"])])
    peer.data_collator = Recording(peer.data_collator, sides["trl"])
    peer_warm = SFTTrainer(model=theirs, args=trl_config(cfg, micro, 1, work / "trl-warm"),
                           train_dataset=trl_dataset([rest[j] for j in warm_ids]), processing_class=processor)
    for trainer in (ours, peer, ours_warm, peer_warm):
        trainer.remove_callback(PrinterCallback)  # the per-step dicts: the summary below has them

    with ExitStack() as stack:
        stack.enter_context(loss_as_forward(model, cfg.supervised_logits_only))
        fused = stack.enter_context(lora_fused(model, enabled=cfg.lora.fused))
        threads = [run_side(baton, sides["xllava"], untimed_step(ours_warm), ours.train),
                   run_side(baton, sides["trl"], untimed_step(peer_warm), peer.train)]
        for thread in threads:
            thread.join()
    for side in sides.values():
        if side.error is not None:
            raise RuntimeError(f"the {side.name} side failed") from side.error

    print(f"xllava: {fused} LoRA projections fused; feature cache {cache_seconds:.1f} s for {len(epoch.images)} images")
    ours_rate, ours_line = rate(sides["xllava"])
    trl_rate, trl_line = rate(sides["trl"])
    print(ours_line)
    print(trl_line)
    # the cache's cost over a whole epoch: the tower once per image, its records reuse the features
    with_cache = len(epoch) / (len(epoch) / ours_rate + cache_seconds)
    last = {name: [h["loss"] for h in trainer.state.log_history if "loss" in h]
            for name, trainer in (("xllava", ours), ("trl", peer))}
    after = {"xllava": held_out_loss(model, pixels, held_items, micro),
             "trl": held_out_loss(peer.model, pixels, held_items, micro)}
    gap = abs(after["xllava"] - after["trl"]) / after["trl"]
    print(f"training loss per step: xllava {', '.join(f'{x:.4f}' for x in last['xllava'])}; "
          f"trl {', '.join(f'{x:.4f}' for x in last['trl'])}")
    print(f"held-out loss ({len(held_items)} samples): before {before:.4f}; after xllava {after['xllava']:.4f}, "
          f"trl {after['trl']:.4f} ({100 * gap:.1f}% apart: {'same' if gap <= 0.05 else 'DIFFERENT'} training)")
    print(f"ratio xllava/trl: {ours_rate / trl_rate:.2f}x  (incl. the feature cache over an epoch of "
          f"{len(epoch)} samples: {with_cache / trl_rate:.2f}x)")


if __name__ == "__main__":
    main()
