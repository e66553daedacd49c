"""GPU throughput of xllava's stage-2 step: samples/s, tokens/s and MFU, on a randomly initialised
LLaVA with a Llama-2-7B text config and a CLIP ViT-L/14-336 vision config. No download, no data.

xllava:   the stage-2 step train_stage runs (xllava.train.loss.llava_loss on the model that
          xllava.train.stage.configure_trainable returns: LoRA r128/alpha 256 on every LLM linear,
          projector trained in full), with the vision features precomputed (the feature cache)
          and the LM head only at supervised positions.
stage:    the same step through the real stage machinery: xllava.train.stage's Trainer subclass
          (LlavaStageTrainer, its optimizer groups and token-normalised loss), training_arguments of the
          stage config, loss_as_forward and the fused LoRA where train_stage uses it, under whichever
          engine the launcher configured (one process as written; not yet tried under DeepSpeed).
          Trainer's data loading and logging count.
baseline: the same model and batches through LlavaForConditionalGeneration.forward with pixels
          and labels: the frozen tower every step, the LM head over the full vocabulary everywhere.
Both: bf16 autocast, frozen weights in bf16, trainable ones in fp32 with AdamW (fused on CUDA),
one process, equal-length samples (no padding), untimed warm-up steps.

MFU = (model FLOPs per step / step time) / the GPU's dense bf16 peak. Model FLOPs are the training
FLOPs the stage needs (xllava.scale.flops.sample_flops: decoder and LoRA matmuls, causal attention,
projector on image tokens, LM head on supervised tokens; x2 backward for what trains, x1 for frozen
parts the gradient crosses; no tower, no recomputation). The baseline's MFU uses the same count, so
it is an effective figure: its extra work (tower, full-vocabulary head) is not credited.

    python bench/gpu_train.py                      # on an H100/H200
    python bench/gpu_train.py --cpu                # shrunk model on the CPU, under a minute (a test)
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration  # noqa: E402

from xllava.config import LoraConfig, TrainStageConfig  # noqa: E402
from xllava.scale.flops import FlopShape, peak_flops, sample_flops  # noqa: E402
from xllava.train.fused_lora import lora_fused  # noqa: E402
from xllava.train.labels import IGNORE  # noqa: E402
from xllava.train.loss import llava_loss  # noqa: E402
from xllava.train.stage import (  # noqa: E402
    LlavaStageTrainer,
    _sharded,
    configure_trainable,
    loss_as_forward,
    stage_arguments,
)

# Llama-2-7B and CLIP ViT-L/14-336 (their released config.json files); the CPU mode shrinks both
FULL = {
    "text": dict(vocab_size=32001, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "vision": dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                   num_hidden_layers=24, num_attention_heads=16),
}
SHRUNK = {
    "text": dict(vocab_size=1025, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024),
    "vision": dict(image_size=56, patch_size=14, hidden_size=64, intermediate_size=128,
                   num_hidden_layers=2, num_attention_heads=2),
}


def build(sizes: dict, device: torch.device, dtype: torch.dtype) -> LlavaForConditionalGeneration:
    text, vision = LlamaConfig(**sizes["text"]), CLIPVisionConfig(**sizes["vision"])
    image_tokens = (vision.image_size // vision.patch_size) ** 2
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=text.vocab_size - 1,
                         projector_hidden_act="gelu", vision_feature_select_strategy="default",
                         vision_feature_layer=-2, image_seq_length=image_tokens)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in the training dtype: no fp32 copy of 7B
    try:
        with device:
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.text_config.use_cache = False
    return model


def make_batches(model, n: int, batch: int, text: int, supervised: int, device) -> list[dict]:
    """Equal-length samples: <bos>, the image tokens, prompt text, then `supervised` answer tokens."""
    cfg = model.config
    n_img = cfg.image_seq_length
    vocab = cfg.text_config.vocab_size - 1  # the last id is <image>
    vision = cfg.vision_config
    out = []
    for _ in range(n):
        ids = torch.randint(2, vocab, (batch, 1 + n_img + text), device=device)
        ids[:, 0] = 1
        ids[:, 1 : 1 + n_img] = cfg.image_token_index
        labels = torch.full_like(ids, IGNORE)
        labels[:, -supervised:] = ids[:, -supervised:]
        out.append({
            "input_ids": ids,
            "labels": labels,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(batch, 3, vision.image_size, vision.image_size, device=device),
            "image_rows": torch.randint(0, 64, (batch,), device=device),
        })
    return out


def rate(flops_per_second: float) -> str:
    return f"{flops_per_second / 1e12:.1f} TFLOP/s" if flops_per_second >= 1e11 else f"{flops_per_second / 1e9:.2f} GFLOP/s"


def run(name, model, batches, step, warmup, autocast, params, on_gpu) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=on_gpu)
    model.train()
    for i, b in enumerate(batches):
        if i == warmup:
            if on_gpu:
                torch.cuda.synchronize()
            started = time.perf_counter()
        with autocast:
            loss = step(b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if on_gpu:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / (len(batches) - warmup)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{name}: loss is {loss.item()}")
    return seconds


class _FeatureRows(torch.utils.data.Dataset):
    """The bench's batches as Trainer data: one sample per item, features in place of pixels."""

    def __init__(self, batches: list[dict], features: torch.Tensor):
        self.items = []
        for b in batches:
            for row in range(b["input_ids"].shape[0]):
                self.items.append({k: b[k][row].cpu() for k in ("input_ids", "labels", "attention_mask")}
                                  | {"image_features": features[b["image_rows"][row]].cpu()})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _stack(samples: list[dict]) -> dict:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def run_stage(model, stage: TrainStageConfig, batches, features, warmup: int, on_gpu: bool, out: str) -> float:
    """Seconds per optimizer step through LlavaStageTrainer, after `warmup` untimed steps."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        started = ended = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                if on_gpu:
                    torch.cuda.synchronize()
                Clock.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            Clock.ended = time.perf_counter()

    cfg = stage.model_copy(update={"max_steps": len(batches), "save_steps": 10**9, "logging_steps": 10**9,
                                   "group_by_length": False, "warmup_ratio": 0.0})
    args = stage_arguments(cfg, __import__("pathlib").Path(out), "bench", has_text_only=False)
    trainer = LlavaStageTrainer(model=model, args=args, train_dataset=_FeatureRows(batches, features),
                                data_collator=_stack, stage=cfg, lengths=[0] * (len(batches) * len(batches[0]["labels"])),
                                callbacks=[Clock()])
    with loss_as_forward(model, cfg.supervised_logits_only), lora_fused(
            model, enabled=cfg.lora.fused and not _sharded(trainer)):
        trainer.train()
    return (Clock.ended - Clock.started) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="shrunk model on the CPU (automatic without CUDA)")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (GPU 4, CPU 2)")
    parser.add_argument("--text-tokens", type=int, default=None, help="text tokens per sample (GPU 256, CPU 32)")
    parser.add_argument("--supervised", type=int, default=None, help="answer tokens per sample (GPU 128, CPU 16)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path (GPU 10, CPU 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 3, CPU 1)")
    parser.add_argument("--lora-r", type=int, default=128)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--full", action="store_true", help="train the whole LLM instead of LoRA")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (recompute not credited)")
    parser.add_argument("--no-baseline", action="store_true", help="measure xllava only")
    parser.add_argument("--no-stage", action="store_true", help="skip the run through the real stage (Trainer)")
    parser.add_argument("--out", default="runs/bench-gpu-train", help="the stage run's (unsaved) output folder")
    args = parser.parse_args()

    on_gpu = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if on_gpu else "cpu")
    gpu = dict(batch=4, text=256, supervised=128, steps=10, warmup=3)
    cpu = dict(batch=2, text=32, supervised=16, steps=2, warmup=1)
    d = gpu if on_gpu else cpu
    batch, text = args.batch or d["batch"], args.text_tokens or d["text"]
    supervised, steps, warmup = args.supervised or d["supervised"], args.steps or d["steps"], args.warmup or d["warmup"]
    sizes = FULL if on_gpu else SHRUNK
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    started = time.perf_counter()
    torch.manual_seed(0)
    model = build(sizes, device, torch.bfloat16 if on_gpu else torch.float32)
    # the decoder's own linears, counted before LoRA wraps them: the adapters' lora_A/lora_B are
    # linears too, and are counted once, as LoRA FLOPs (sample_flops)
    lm = model.model.language_model
    linear_params = sum(m.weight.numel() for m in lm.layers.modules() if isinstance(m, torch.nn.Linear))
    # and the projector before peft's modules_to_save keeps a second (trained) copy of it
    projector_params = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    stage = TrainStageConfig(llm_mode="full" if args.full else "lora", batch_size=args.batch or (4 if on_gpu else 2),
                             precision="bf16" if on_gpu else "fp32", device="cuda" if on_gpu else "cpu",
                             gradient_checkpointing=args.checkpointing, lr=1e-5, projector_lr=1e-5,
                             lora=LoraConfig(r=args.lora_r, alpha=2 * args.lora_r, dropout=args.lora_dropout))
    model, _ = configure_trainable(model, stage)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # fp32 master copies of what trains; autocast computes in bf16
        p.data = p.data.float()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if args.checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else nullcontext()

    cfg = base.config
    n_img = cfg.image_seq_length
    tokens = 1 + n_img + text
    batches = make_batches(base, warmup + steps, batch, text, supervised, device)
    # the feature cache: projector inputs precomputed once per image (random here: only speed counts)
    feature_width = base.model.multi_modal_projector.linear_1.in_features
    features = torch.randn(64, n_img, feature_width, device=device, dtype=torch.float32)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    shape = FlopShape(linear_params, projector_params, lora_params, cfg.text_config.num_hidden_layers, cfg.text_config.hidden_size,
                      cfg.text_config.vocab_size)
    step_flops = batch * sample_flops(shape, tokens, n_img, supervised, stage.llm_mode)
    name, peak = peak_flops(None if on_gpu else "cpu")
    setup = time.perf_counter() - started
    print(f"device: {name}; text {'Llama-2-7B' if on_gpu else 'shrunk Llama'} config, "
          f"vision {'CLIP ViT-L/14-336' if on_gpu else 'shrunk CLIP'} config, random weights "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:,.1f} M params, {lora_params / 1e6:,.1f} M LoRA); "
          f"setup {setup:.0f} s")
    print(f"stage 2 ({stage.llm_mode}), batch {batch} x {tokens} tokens ({n_img} image, {supervised} supervised), "
          f"{steps} timed steps after {warmup}; model FLOPs per step {step_flops / 1e9:,.6f} G")

    def xllava_step(b: dict) -> torch.Tensor:
        return llava_loss(base, b["input_ids"], b["labels"], b["attention_mask"],
                          image_features=features[b["image_rows"]], supervised_logits_only=True)

    def baseline_step(b: dict) -> torch.Tensor:
        out = model(input_ids=b["input_ids"], pixel_values=b["pixel_values"].to(model.dtype if on_gpu else torch.float32),
                    attention_mask=b["attention_mask"], labels=b["labels"])
        return out.loss

    paths = [("xllava", xllava_step)] + ([] if args.no_stage else [("stage", None)]) \
        + ([] if args.no_baseline else [("baseline", baseline_step)])
    results = {}
    for path, step in paths:
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        if step is None:
            seconds = run_stage(model, stage, batches, features, warmup, on_gpu, args.out)
        else:
            seconds = run(path, model, batches, step, warmup, autocast, params, on_gpu)
        results[path] = seconds
        mfu = f"{step_flops / seconds / peak:.1%}" if peak else "n/a (no GPU peak known)"
        memory = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if on_gpu else ""
        print(f"{path:8s} {batch / seconds:8.2f} samples/s {batch * tokens / seconds:10.0f} tokens/s "
              f"{rate(step_flops / seconds):>15}  MFU {mfu}{memory}")
    if "baseline" in results:
        print(f"xllava / baseline: {results['baseline'] / results['xllava']:.2f}x samples/s")
    if "stage" in results:
        print(f"stage / bare loop: {results['xllava'] / results['stage']:.2f}x samples/s (below 1: what Trainer adds)")


if __name__ == "__main__":
    main()
