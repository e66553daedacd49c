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
batches grouped by real token length, each micro-batch packed into one row without padding, the
supervised-positions-only tail, fused LoRA and frozen norms on a CPU).

Each side runs its own `Trainer.train()` loop in the main thread of its own process, as a user runs
either tool: its own allocator state, nothing freed or kept on the other's behalf. A baton passed at
every optimizer step lets exactly one of them run at a time, so the sides take turns batch by batch
and a drift in the machine's speed falls on both alike. A side's time is the wall time it holds the
baton: data loading, collation, forward, backward and the optimizer. Each side first takes one
untimed step on other samples (its thread pool, allocator and first kernels warm; the weights put
back). Then both train one epoch over the same `batch x steps` samples (a seeded draw from the
world's stage-2 data), each ordering and batching them its own way (TRL: random and right-padded;
xllava: by length, each micro-batch packed into one row), every step timed: samples/s
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
import math
import multiprocessing
import os
import random
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
from bench_common import cpu_name, prepared_world  # noqa: E402
from safetensors import safe_open  # noqa: E402
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
from xllava.train.fused_norm import rms_norm_fused  # noqa: E402
from xllava.train.labels import IGNORE  # noqa: E402
from xllava.train.loss import llava_loss  # noqa: E402
from xllava.train.padding_free import padding_free  # noqa: E402
from xllava.train.stage import (  # noqa: E402
    LlavaStageTrainer,
    adamw,
    configure_trainable,
    loss_as_forward,
    parameter_groups,
    stage_arguments,
    use_feature_cache,
)

SIDES = ("xllava", "trl")


class Baton:
    """One holder at a time among the sides, across processes; a finished side drops out of the
    rotation."""

    def __init__(self, context):
        self.turn = context.Value("i", 0, lock=False)
        self.done = context.Array("b", len(SIDES), lock=False)
        self.cond = context.Condition()

    def take(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn.value == SIDES.index(name))

    def hand_on(self, name: str, finished: bool = False) -> None:
        with self.cond:
            me = SIDES.index(name)
            if finished:
                self.done[me] = 1
            for step in range(1, len(SIDES) + 1):
                after = (me + step) % len(SIDES)
                if not self.done[after]:
                    self.turn.value = after
                    break
            self.cond.notify_all()


@dataclass
class Side:
    """What one side measured and scored, sent back to the parent process."""

    name: str
    steps: list[float] = field(default_factory=list)  # seconds of each optimizer step
    batches: list[tuple[int, int, int]] = field(default_factory=list)  # (samples, real, run) per micro-batch
    losses: list[float] = field(default_factory=list)  # training loss per step
    held_out: dict[str, float] = field(default_factory=dict)  # "before" / "after" training
    notes: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class Setup:
    """What both sides start from, picklable for their processes."""

    run_dir: Path
    init: Path
    cfg: TrainStageConfig
    steps: int
    held_out: int


class Recording:
    """A collator wrapper that counts the samples, real tokens and tokens run of each micro-batch
    (the real ones alone where the side packs its micro-batches, the padded width otherwise)."""

    def __init__(self, collate: Callable, side: Side):
        self.collate, self.side = collate, side
        self.packed = False

    def __call__(self, examples):
        batch = self.collate(examples)
        mask = batch["attention_mask"]
        real = int(mask.sum())
        self.side.batches.append((mask.shape[0], real, real if self.packed else mask.numel()))
        return batch


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
        # after its last step a side waits for its turn once more, so what Trainer does after the
        # loop never runs beside the other side's step; it hands on for good when its work is done
        self.baton.hand_on(self.side.name)
        self.baton.take(self.side.name)
        self.started = time.perf_counter()


def untimed_step(trainer: Trainer) -> None:
    """One optimizer step that only warms the process (its thread pool, allocator, first kernels);
    the trained weights are put back, so both sides start the timed epoch alike."""
    saved = [(p, p.detach().clone()) for p in trainer.model.parameters() if p.requires_grad]
    trainer.train()
    with torch.no_grad():
        for p, value in saved:
            p.copy_(value)
    trainer.model.zero_grad(set_to_none=True)


def xllava_trainer(model, cfg: TrainStageConfig, steps: int, data, lengths: list[int], collate: Callable,
                   out: Path, callbacks: list | None = None) -> LlavaStageTrainer:
    """xllava's stage-2 trainer as the instruct stage builds it, for `steps` optimizer steps."""
    cfg = cfg.model_copy(update={"max_steps": steps})
    args = stage_arguments(cfg, out, "instruct", has_text_only=False)  # one process: no DDP to configure
    args.disable_tqdm = True
    args.save_strategy = SaveStrategy.NO
    trainer = LlavaStageTrainer(model=model, args=args, train_dataset=data, data_collator=collate, stage=cfg,
                                lengths=lengths, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the per-step dicts: the summary has them
    return trainer


def trl_config(cfg: TrainStageConfig, steps: int, out: Path) -> SFTConfig:
    """SFTConfig for the same batch, rate and optimizer settings as the stage."""
    return SFTConfig(
        output_dir=str(out), per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=cfg.batch_size // cfg.micro_batch,
        max_steps=steps, learning_rate=cfg.lr, lr_scheduler_type="constant", weight_decay=cfg.weight_decay,
        adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1], seed=cfg.seed, data_seed=cfg.seed,
        max_length=cfg.max_length, assistant_only_loss=True, gradient_checkpointing=False, bf16=False,
        use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=cfg.dataloader_workers,
    )


def trl_trainer(model, processor, cfg: TrainStageConfig, steps: int, samples: list[Sample], out: Path,
                callbacks: list | None = None) -> SFTTrainer:
    """TRL's SFTTrainer for `samples`, with xllava's parameter groups (a projector rate of its own is
    not a TRL option, but Trainer takes an optimizer) and the same AdamW settings."""
    args = trl_config(cfg, steps, out)
    rows = {"messages": [s.messages for s in samples],
            "images": [[str(s.image)] if s.image is not None else [] for s in samples]}
    data = datasets.Dataset.from_dict(rows).cast_column("images", datasets.Sequence(datasets.Image()))
    optimizer = adamw(parameter_groups(model, cfg), args)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor,
                         optimizers=(optimizer, None), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    return trainer


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


@dataclass
class Draw:
    """The seeded draw both sides train and score: a warm-up batch, the timed samples, the held-out
    ones, and the epoch they come from."""

    epoch: list[Sample]
    warm: list[int]
    timed: list[int]
    held: list[Sample]


def draw(setup: Setup) -> Draw:
    cfg = setup.cfg
    samples = load_samples([setup.run_dir / p for p in cfg.data], languages=cfg.languages, tasks=cfg.tasks)
    random.Random(0).shuffle(samples)
    held, rest = samples[: setup.held_out], samples[setup.held_out :]
    batch = cfg.batch_size
    return Draw(rest, list(range(batch)), list(range(batch, batch * (1 + setup.steps))), held)


def run_side(name: str, setup: Setup, baton: Baton, ready, results) -> None:
    """One side, in its own process: build, warm up, train the timed samples taking turns, score."""
    side = Side(name)
    try:
        ready.wait()  # both processes have imported their libraries: nothing runs beside a turn
        baton.take(name)  # building the model and trainers is not timed, but one side at a time
        cfg = setup.cfg
        plan = draw(setup)
        model, processor = load_llava(setup.init)
        tokenizer = processor.tokenizer
        image_token, n_image = model.config.image_token_id, model.config.image_seq_length
        epoch = LlavaDataset(plan.epoch, tokenizer, image_token, n_image, cfg.max_length)
        held = LlavaDataset(plan.held, tokenizer, image_token, n_image, cfg.max_length)
        held_items = [held[i] for i in range(len(held))]
        pixels = LlavaCollator(tokenizer.pad_token_id, epoch.images, processor.image_processor)
        torch.manual_seed(cfg.seed)  # the same LoRA initialisation on both sides
        model, side.notes["trained"] = configure_trainable(model, cfg)
        model.config.text_config.use_cache = False
        if name == "xllava":
            side.held_out["before"] = held_out_loss(model, pixels, held_items, cfg.micro_batch)
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=setup.run_dir))
        with ExitStack() as stack:
            if name == "xllava":
                trainer, warm = xllava_side(model, processor, cfg, setup.steps, epoch, plan, side, baton, work,
                                            stack)
            else:
                timed = [plan.epoch[j] for j in plan.timed]
                trainer = trl_trainer(model, processor, cfg, setup.steps, timed, work / "trl",
                                      callbacks=[TakeTurns(baton, side)])
                trainer.data_collator = Recording(trainer.data_collator, side)
                warm = trl_trainer(model, processor, cfg, 1, [plan.epoch[j] for j in plan.warm], work / "warm")
            untimed_step(warm)
            trainer.train()
        side.losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        side.held_out["after"] = held_out_loss(model, pixels, held_items, cfg.micro_batch)
        side.notes["epoch"] = len(epoch)
    except BaseException:  # reported by the parent; the other side must not wait for this one
        side.error = traceback.format_exc()
    finally:
        baton.hand_on(name, finished=True)
        results.put(side)


def xllava_side(model, processor, cfg: TrainStageConfig, steps: int, epoch: LlavaDataset, plan: Draw, side: Side,
                baton: Baton, work: Path, stack: ExitStack) -> tuple[LlavaStageTrainer, LlavaStageTrainer]:
    """xllava's timed and warm-up trainers, with the stage's levers entered on `stack`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    started = time.perf_counter()
    cache = None
    if epoch.images and use_feature_cache(cfg, base.config, len(epoch.images), False, "instruct"):
        cache = FeatureCache.build_or_load(base, processor.image_processor, epoch.images, work / "features")
    side.notes["cache_seconds"] = time.perf_counter() - started  # the epoch's images, once
    side.notes["images"] = len(epoch.images)
    if cfg.llm_attention is not None:
        base.set_attn_implementation({"text_config": cfg.llm_attention})
    collate = LlavaCollator(processor.tokenizer.pad_token_id, epoch.images, processor.image_processor, cache)
    recording = Recording(collate, side)
    timed = xllava_trainer(model, cfg, steps, Subset(epoch, plan.timed), [epoch.lengths[j] for j in plan.timed],
                           recording, work / "xllava", callbacks=[TakeTurns(baton, side)])
    warm = xllava_trainer(model, cfg, 1, Subset(epoch, plan.warm), [epoch.lengths[j] for j in plan.warm], collate,
                          work / "warm")
    stack.enter_context(loss_as_forward(model, cfg.supervised_logits_only))
    side.notes["fused"] = stack.enter_context(lora_fused(model, enabled=cfg.lora.fused))
    side.notes["norms"] = stack.enter_context(rms_norm_fused(model, enabled=cfg.fused_norm))
    recording.packed = side.notes["packed"] = stack.enter_context(padding_free(model, cfg.padding_free))
    return timed, warm


def rate(side: Side) -> tuple[float, str]:
    """Samples/s over all of a side's steps, and a line describing them."""
    seconds = sum(side.steps)
    samples = sum(b[0] for b in side.batches)
    real = sum(b[1] for b in side.batches)
    run = sum(b[2] for b in side.batches)
    per_second = samples / seconds
    line = (f"{side.name:7s} {per_second:7.3f} samples/s  ({len(side.steps)} steps, {samples} samples in {seconds:.1f} s; "
            f"{real} real tokens, {run - real} padding ({run / real:.2f}x))")
    return per_second, line


def parameter_count(model_dir: Path) -> int:
    """The weights of a saved model, from its safetensors headers (the parent loads no model)."""
    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


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
    params = parameter_count(init)
    micro = args.micro_batch or (4 if params > 50e6 else cfg.batch_size)
    if cfg.batch_size % micro:
        parser.error(f"--micro-batch {micro} does not divide the batch size {cfg.batch_size}")
    cfg = cfg.model_copy(update={"micro_batch": micro})
    setup = Setup(run_dir, init, cfg, args.steps, args.held_out)
    plan = draw(setup)
    if len(plan.timed) + len(plan.warm) > len(plan.epoch):
        parser.error(f"--steps {args.steps} needs {len(plan.timed) + len(plan.warm)} samples; "
                     f"the world has {len(plan.epoch)}")
    print(f"recipe {recipe_path}: {params / 1e6:.1f}M params, {len(plan.timed)} of {len(plan.epoch)} samples "
          f"(a seeded draw), batch {micro} x {cfg.batch_size // micro} = {cfg.batch_size}, lr {cfg.lr} "
          f"(projector {cfg.projector_lr}), max length {cfg.max_length}, 1 untimed + {args.steps} timed steps on "
          f"both sides, each side in its own process, torch threads {torch.get_num_threads()}")
    print(f"machine: {cpu_name()}", flush=True)

    context = multiprocessing.get_context("spawn")
    baton, ready, results = Baton(context), context.Barrier(len(SIDES)), context.Queue()
    processes = [context.Process(target=run_side, args=(name, setup, baton, ready, results), name=name)
                 for name in SIDES]
    for process in processes:
        process.start()
    sides = {}
    for _ in processes:
        side = results.get()
        sides[side.name] = side
    for process in processes:
        process.join()
    for side in sides.values():
        if side.error is not None:
            raise RuntimeError(f"the {side.name} side failed:\n{side.error}")

    ours, peer = sides["xllava"], sides["trl"]
    print(f"trained {ours.notes['trained']}; xllava: {ours.notes['fused']} LoRA projections and {ours.notes['norms']} norms fused; micro-batches "
          f"{'packed' if ours.notes['packed'] else 'padded'}; feature cache {ours.notes['cache_seconds']:.1f} s for "
          f"{ours.notes['images']} images")
    ours_rate, ours_line = rate(ours)
    trl_rate, trl_line = rate(peer)
    print(ours_line)
    print(trl_line)
    # the cache's cost over a whole epoch: the tower once per image, its records reuse the features
    epoch = ours.notes["epoch"]
    with_cache = epoch / (epoch / ours_rate + ours.notes["cache_seconds"])
    before, after = ours.held_out["before"], {s.name: s.held_out["after"] for s in (ours, peer)}
    gap = abs(after["xllava"] - after["trl"]) / after["trl"]
    print(f"training loss per step: xllava {', '.join(f'{x:.4f}' for x in ours.losses)}; "
          f"trl {', '.join(f'{x:.4f}' for x in peer.losses)}")
    print(f"held-out loss ({args.held_out} samples): before {before:.4f}; after xllava {after['xllava']:.4f}, "
          f"trl {after['trl']:.4f} ({100 * gap:.1f}% apart: {'same' if gap <= 0.05 else 'DIFFERENT'} training)")
    print(f"ratio xllava/trl: {ours_rate / trl_rate:.2f}x  (incl. the feature cache over an epoch of "
          f"{epoch} samples: {with_cache / trl_rate:.2f}x)")


if __name__ == "__main__":
    main()
