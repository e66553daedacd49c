"""`xllava scale plan RECIPE`: parameters, memory per GPU, steps, tokens and compute of each training
stage, from configs alone (no weights, no data needed).

Memory per GPU uses the usual mixed-precision accounting (ZeRO paper, Rajbhandari et al. 2020):
bf16 weights 2 B/param, bf16 gradients 2 B per trainable param, and for Adam fp32 master weights,
momentum and variance 4 + 4 + 4 = 12 B per trainable param. Over N data-parallel GPUs:
  ZeRO-0 (DDP)  weights 2*P          grads 2*T     optimizer 12*T
  ZeRO-1        weights 2*P          grads 2*T     optimizer 12*T/N
  ZeRO-2        weights 2*P          grads 2*T/N   optimizer 12*T/N
  ZeRO-3        weights 2*P/N        grads 2*T/N   optimizer 12*T/N   (+ ~2 layers gathered)
with P all parameters and T the trainable ones (projector; + LoRA adapters; or + the whole LLM).
Activations are an estimate (see `activation_bytes`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from xllava.config import LoraConfig, Recipe, TrainStageConfig
from xllava.scale.archs import Counts, count, lora_params
from xllava.scale.flops import PEAK_BF16, FlopShape, sample_flops

GiB = 1024**3
TRAIN_STAGES = ("align", "instruct")

# The paper's data (reference/paper.md sections 5.2, 5.3), used when the recipe's files are not on disk:
# stage 1 LLaVA-CC3M-595K in English + Korean; stage 2 LLaVA-Instruct-158K EN + KO + mvif 91K.
PAPER_SAMPLES = {"align": 1_190_000, "instruct": 407_000}
# Text tokens per sample (prompt + answers) and supervised ones among them: assumptions, not
# measurements (a caption of ~25 words; a multi-turn instruction sample) - override with
# --text-tokens / --supervised-tokens, or measure them on the real data.
ASSUMED_TEXT = {"align": 48, "instruct": 320}
ASSUMED_SUPERVISED = {"align": 32, "instruct": 200}


@dataclass
class MemoryRow:
    mode: str  # frozen / lora / full
    zero: int
    weights: float  # GiB per GPU
    grads: float
    optimizer: float
    activations_ckpt: float
    activations_full: float
    activations_longest: float  # a batch of max_length sequences, with the stage's checkpointing setting

    @property
    def total_ckpt(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations_ckpt

    @property
    def total_full(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations_full

    @property
    def total_longest(self) -> float:
        """The peak: the longest batch, which length grouping puts together, not the mean one."""
        return self.weights + self.grads + self.optimizer + self.activations_longest


@dataclass
class StagePlan:
    stage: str
    llm_mode: str
    trainable: int
    samples: int
    samples_source: str
    tokens_per_sample: int
    supervised_per_sample: int
    global_batch: int
    steps: int
    tokens: int
    pflops: float  # training compute of the stage, 1e15 FLOPs
    gpu_hours: dict[str, float]  # at the assumed MFU, per GPU type
    feature_cache_gib: float  # what the frozen-tower feature cache would take on disk / in memory
    memory: list[MemoryRow]
    host: dict[str, float]  # host RAM per node, GiB, by engine (see host_ram)
    zero3_startup: dict[str, float]  # GPU memory while ZeRO-3 sets up, GiB per GPU, init flag on / off


def trainable_params(c: Counts, mode: str, cfg: TrainStageConfig) -> int:
    """Projector and tower where they train + nothing / the LoRA adapters in c.lora / the whole LLM."""
    tower = c.vision if cfg.train_vision_tower else 0
    projector = c.projector if cfg.train_projector else 0
    return projector + tower + {"frozen": 0, "lora": c.lora, "full": c.llm}[mode]


def activation_bytes(c: Counts, batch: int, seq: int, supervised: int, checkpointing: bool,
                     lora_dropout: bool, lora_rank: int) -> float:
    """Activations kept for backward per GPU, bf16, with fused (flash / SDPA) attention: an estimate.

    Per decoder layer and token, what autograd keeps: the two RMSNorm inputs and outputs (4h),
    q/k/v (h + 2 kv), the attention output (h), gate, up, SiLU(gate) and their product (4i).
    LoRA adds each adapter's low-rank input (7r) and, with dropout, the dropped copies of the
    inputs (q,k,v,gate,up: 5h; o: h; down: i). With checkpointing only each layer's input (h)
    stays, plus one layer recomputed at a time. The LM head adds fp32 logits and their gradient
    at supervised positions (10 B per logit), and a few hidden-size tensors around the LLM (4h)."""
    h, kv, i, L = c.hidden, c.kv_hidden, c.intermediate, c.n_layers
    per_token_layer = 2 * (4 * h + h + 2 * kv + h + 4 * i)
    if c.lora:
        per_token_layer += 2 * 7 * lora_rank + (2 * (6 * h + i) + (6 * h + i) if lora_dropout else 0)
    tokens = batch * seq
    if checkpointing:
        layers = tokens * (2 * h * L + per_token_layer)
    else:
        layers = tokens * per_token_layer * L
    head = batch * supervised * c.vocab * 10
    return layers + head + tokens * 2 * 4 * h


def micro_batch(cfg: TrainStageConfig, gpus: int) -> int:
    """Sequences per forward pass on one GPU: the recipe's split of its global batch over `gpus`,
    or, where the batch does not split evenly over that many, its share rounded up."""
    try:
        return cfg.per_process(gpus)[0]
    except ValueError:
        return max(1, math.ceil(cfg.batch_size / gpus))


def memory_rows(c: Counts, cfg: TrainStageConfig, mode: str, lora: LoraConfig, gpus: int, seq: int,
                supervised: int) -> list[MemoryRow]:
    c = replace(c, lora=lora_params(c.linears, lora) if mode == "lora" else 0)
    total, trainable = c.total + c.lora, trainable_params(c, mode, cfg)
    act = {
        ckpt: activation_bytes(c, micro_batch(cfg, gpus), seq, supervised, ckpt, lora.dropout > 0, lora.r)
        for ckpt in (True, False)
    }
    # the longest batch: max_length tokens in every row, supervised in proportion
    longest_supervised = max(supervised, supervised * cfg.max_length // max(seq, 1))
    longest = activation_bytes(c, micro_batch(cfg, gpus), cfg.max_length, longest_supervised, cfg.gradient_checkpointing,
                               lora.dropout > 0, lora.r)
    rows = []
    for zero in range(4):
        weights = 2 * total / (gpus if zero == 3 else 1)
        if zero == 3:  # the layer being computed and the one being prefetched, gathered in full
            weights += 2 * 2 * c.largest_layer
        grads = 2 * trainable / (gpus if zero >= 2 else 1)
        optimizer = 12 * trainable / (gpus if zero >= 1 else 1)
        rows.append(MemoryRow(mode, zero, weights / GiB, grads / GiB, optimizer / GiB,
                              act[True] / GiB, act[False] / GiB, longest / GiB))
    return rows


# per rank: the Python interpreter, torch, CUDA's host side and the dataloader workers' own copies
# of their imports (an assumption, typical of a torch + transformers training process)
RANK_OVERHEAD = 6 * GiB
TOKEN_BYTES = 5  # int32 id + bool supervised flag (xllava.train.dataset), image runs collapsed


def host_ram(c: Counts, samples: int, text_tokens: int, gpus: int, per_node: int) -> dict[str, float]:
    """Host RAM per node, GiB, for each engine: every rank holds the tokenised dataset and loads the
    model in bf16 (whole, except under ZeRO-3 with zero3_init_flag, where each rank keeps its partition
    and reads one checkpoint shard at a time); rank 0 also holds the export (the merged model, and under
    ZeRO-3 the gathered 16-bit state besides a fresh copy to load it into)."""
    weights = 2 * (c.total + c.lora)
    dataset = samples * ((text_tokens + 1) * TOKEN_BYTES + 8 + 8)  # tokens, offset, image row and position
    shard = 10 * GiB  # the largest safetensors shard of a published 13B checkpoint (the load reads one at a time)
    out = {}
    for engine, per_rank, export in (("ddp/zero2", weights, weights), ("zero3", weights / gpus + shard, 2 * weights)):
        out[engine] = (per_node * (per_rank + dataset + RANK_OVERHEAD) + export) / GiB
    return out


def zero3_startup(c: Counts, gpus: int) -> dict[str, float]:
    """GPU memory while ZeRO-3 is set up, GiB per GPU: with zero3_init_flag each rank receives its
    partition as the model is built (plus one layer gathered); without it the whole bf16 model is
    moved onto every GPU first and partitioned afterwards."""
    weights = 2 * (c.total + c.lora)
    return {"zero3_init_flag on": (weights / gpus + 2 * c.largest_layer) / GiB, "zero3_init_flag off": weights / GiB}


def count_samples(recipe: Recipe, cfg: TrainStageConfig, stage: str) -> tuple[int, str]:
    """Records in the stage's data files (after its language/task filters), or the paper's figure."""
    from xllava.train.data import expand_data_path, read_data_records

    matched = [expand_data_path(recipe.run_dir / s.path) for s in cfg.sources()]
    files = [f for group in matched for f in group]
    if matched and all(matched):
        n = 0
        for f in files:
            n += sum(1 for _, r in read_data_records(f)
                     if (cfg.languages is None or r.get("lang") in cfg.languages)
                     and (cfg.tasks is None or r.get("task") in cfg.tasks))
        return n, "counted in " + ", ".join(str(f) for f in files)
    if stage in PAPER_SAMPLES:
        return PAPER_SAMPLES[stage], "the paper's data size (the recipe's files are not on disk)"
    raise ValueError(f"{stage}: data {[s.path for s in cfg.sources()]} not found and no --samples given")


def plan_stage(recipe: Recipe, stage: str, c: Counts, gpus: int, samples: int | None, text_tokens: int | None,
               supervised_tokens: int | None, mfu: float, per_node: int = 8) -> StagePlan:
    cfg: TrainStageConfig = getattr(recipe, stage)
    # a LoRA stage's own settings; for the what-if LoRA rows of other stages, instruct's
    lora = cfg.lora if cfg.llm_mode == "lora" else recipe.instruct.lora
    c = replace(c, lora=lora_params(c.linears, lora))
    if samples is None:
        samples, source = count_samples(recipe, cfg, stage)
    else:
        source = "--samples"
    text = text_tokens if text_tokens is not None else ASSUMED_TEXT[stage]
    supervised = supervised_tokens if supervised_tokens is not None else ASSUMED_SUPERVISED[stage]
    seq = min(cfg.max_length, c.image_tokens + text)
    global_batch = cfg.batch_size
    steps = math.ceil(samples / global_batch) * cfg.epochs if cfg.max_steps < 0 else cfg.max_steps
    steps = math.ceil(steps)
    trained_samples = min(samples * cfg.epochs, steps * global_batch)
    shape = FlopShape(c.decoder_linear, c.projector, c.lora,
                      c.n_layers, c.hidden, c.vocab)
    flops = trained_samples * sample_flops(shape, seq, c.image_tokens, supervised, cfg.llm_mode)
    modes = list(dict.fromkeys([cfg.llm_mode, "lora", "full"]))
    memory = [row for mode in modes for row in memory_rows(c, cfg, mode, lora, gpus, seq, supervised)]
    # bf16 rows of the frozen tower's features (xllava.train.features); one image per sample is an
    # upper bound (the languages of a sample share its image)
    cache = samples * c.image_tokens * c.vision_hidden * 2 / GiB
    return StagePlan(
        stage=stage, llm_mode=cfg.llm_mode, trainable=trainable_params(c, cfg.llm_mode, cfg), samples=samples,
        samples_source=source, tokens_per_sample=seq, supervised_per_sample=supervised, global_batch=global_batch,
        steps=steps, tokens=int(trained_samples * seq), pflops=flops / 1e15,
        gpu_hours={gpu: flops / (peak * mfu) / 3600 for gpu, peak in PEAK_BF16.items()},
        feature_cache_gib=cache, memory=memory,
        host=host_ram(replace(c, lora=c.lora if cfg.llm_mode == "lora" else 0), samples, text, gpus,
                      min(per_node, gpus)),
        zero3_startup=zero3_startup(c, gpus),
    )


def build_plan(recipe: Recipe, gpus: int, llm_arch: str | None = None, vocab_size: int | None = None,
               samples: dict[str, int] | None = None, text_tokens: dict[str, int] | None = None,
               supervised_tokens: dict[str, int] | None = None, mfu: float = 0.4, per_node: int = 8) -> dict:
    """The whole plan as plain data (what `--json` prints)."""
    stages = [s for s in TRAIN_STAGES if s in recipe.stages]
    counts, sources = count(recipe, llm_arch, vocab_size, recipe.instruct.lora)
    plans = [
        plan_stage(recipe, s, counts, gpus, (samples or {}).get(s), (text_tokens or {}).get(s),
                   (supervised_tokens or {}).get(s), mfu, per_node)
        for s in stages
    ]
    return {
        "recipe": recipe.name,
        "gpus": gpus,
        "mfu": mfu,
        "sources": sources,
        "params": {**{k: v for k, v in asdict(counts).items() if k != "linears"}, "total": counts.total},
        "stages": [
            {**asdict(p), "memory": [{**asdict(m), "total_ckpt": m.total_ckpt, "total_full": m.total_full,
                                      "total_longest": m.total_longest} for m in p.memory]}
            for p in plans
        ],
    }


def render(plan: dict) -> str:
    """The plan as text tables."""
    p = plan["params"]
    out = [
        f"plan for recipe {plan['recipe']} on {plan['gpus']} GPUs (data parallel)",
        f"  LLM config: {plan['sources']['llm']};  vision config: {plan['sources']['vision']}",
        "",
        "parameters (exact, counted on the meta device)",
        f"  LLM            {p['llm']:>15,}  ({p['n_layers']} layers, hidden {p['hidden']}, vocab {p['vocab']}"
        " incl. <image>)",
        f"  vision tower   {p['vision']:>15,}  ({p['image_tokens']} image tokens per image)",
        f"  projector      {p['projector']:>15,}  (mlp2x_gelu)",
        f"  LoRA adapters  {p['lora']:>15,}  (instruct's r and target modules)",
        f"  total          {p['total']:>15,}",
    ]
    for s in plan["stages"]:
        out += [
            "",
            f"stage {s['stage']} ({s['llm_mode']} LLM): trainable {s['trainable']:,} parameters",
            f"  samples {s['samples']:,} ({s['samples_source']})",
            f"  tokens per sample ~{s['tokens_per_sample']} ({p['image_tokens']} image + text, assumed), "
            f"supervised ~{s['supervised_per_sample']}",
            f"  global batch {s['global_batch']}, optimizer steps {s['steps']:,}, tokens {s['tokens']:,}",
            f"  compute {s['pflops']:,.0f} PFLOP; GPU-hours at {plan['mfu']:.0%} MFU: "
            + ", ".join(f"{g} {h:,.0f}" for g, h in s["gpu_hours"].items() if g in ("A100", "H100", "A6000")),
            f"  feature cache (bf16, <= one image per sample): {s['feature_cache_gib']:,.0f} GiB",
            "  host RAM per node, GiB (every rank: dataset + bf16 load + ~6 GiB process; rank 0: the export): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in s["host"].items()),
            "  ZeRO-3 start-up, GiB per GPU: " + ", ".join(f"{k} {v:,.1f}" for k, v in s["zero3_startup"].items()),
            "  memory per GPU, GiB (weights bf16, grads bf16, Adam fp32 master+m+v; activations estimated;",
            "  mean batch with and without checkpointing, and the longest batch of max_length tokens):",
            "    LLM     ZeRO  weights  grads  optim  act(ckpt)  act(none)  act(long)  total(ckpt)  total(none)"
            "  total(long)",
        ]
        for m in s["memory"]:
            out.append(
                f"    {m['mode']:<7} {m['zero']:>4} {m['weights']:>8.1f} {m['grads']:>6.1f} {m['optimizer']:>6.1f}"
                f" {m['activations_ckpt']:>10.1f} {m['activations_full']:>10.1f} {m['activations_longest']:>10.1f}"
                f" {m['total_ckpt']:>12.1f} {m['total_full']:>12.1f} {m['total_longest']:>12.1f}"
            )
    out += [
        "",
        "Add 2-4 GiB per GPU for the CUDA context, NCCL buffers and allocator fragmentation. Weights load in",
        "the training precision on every engine (bf16 as counted); plain DDP (torchrun, configs/ddp.yaml) keeps",
        "fp32 copies of the trainable weights for autocast (16 B per trainable parameter either way).",
        "act(long) is a bound: every row of the batch max_length tokens long (captions stay far below it).",
    ]
    return "\n".join(out)


def parse_stage_ints(items: list[str] | None, option: str) -> dict[str, int]:
    """`--samples align=1190000` style options."""
    out = {}
    for item in items or []:
        stage, _, value = item.partition("=")
        if stage not in TRAIN_STAGES or not value.strip().isdigit():
            raise ValueError(f"{option} {item!r}: expected STAGE=INTEGER with STAGE one of {TRAIN_STAGES}")
        out[stage] = int(value)
    return out
