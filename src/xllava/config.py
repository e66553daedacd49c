"""Typed configs: one model per stage, a recipe is the stages' configs plus their order.

A recipe is YAML; any field can be overridden from the command line with a dotted path
(`instruct.lr=1e-4`). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from xllava.datagen.config import DatagenConfig
from xllava.eval.suite_config import EvalSuiteConfig
from xllava.lm.config import LmConfig, LoraConfig
from xllava.strict import Strict
from xllava.vocab.config import VocabConfig

# ---------------------------------------------------------------- world


class WorldConfig(Strict):
    """The embedded synthetic trilingual world (xllava.world)."""

    seed: int = 0
    n_train_scenes: int = 1200
    n_eval_scenes: int = 120
    image_size: int = 96
    grid_size: int = 3
    min_objects: int = 2
    max_objects: int = 5
    languages: list[str] = ["en", "ko", "zh"]
    # stage-1 captions: objects in reading order (`listing`), or each object named first and its
    # attributes and relations after it (`object_first`), which asks for lookups by kind
    caption_style: Literal["listing", "object_first"] = "listing"
    # held-out short-answer questions per question type per language
    eval_questions_per_type: int = 60
    # short-answer training questions per train scene per language (the VQA part of the stage-2 mix)
    train_questions_per_scene: int = 6
    # turns per short-answer training record (min, max): more turns share one image's tokens
    short_answer_turns: tuple[int, int] = (3, 6)
    # the one-word instruction on every question (LLaVA-1.5's VQA data) or on each record's first
    # question only: the answer style is set once, and the turns after it cost ~40% fewer tokens
    short_answer_instruction: Literal["every_turn", "first_turn"] = "every_turn"
    # no two turns of a record about the same object kind: otherwise answers can be copied from the
    # turns before them ("Is there a red ball?" ... "What colour is the ball?"), and a small model
    # learns that instead of looking (held-out colour stayed at chance; README, "Measured figures")
    short_answer_independent_turns: bool = True
    # "<image>\nquestion" (LLaVA's usual order) or "question\n<image>" in short-answer records: after
    # the question, the image tokens can see what is asked (the eval's `image_first` must match)
    short_answer_image_first: bool = True
    # about the same number of training questions per scene (so records of about the same length
    # and little padding in random batches) instead of questions drawn uniformly from the pools
    spread_questions_over_scenes: bool = True
    # relative share of each question type among the training questions (types left out weigh 1):
    # a type learned in a few hundred steps (atmosphere) can give its share to a slow one (relation)
    train_question_mix: dict[str, float] = {}

    @model_validator(mode="after")
    def _turns_in_order(self) -> WorldConfig:
        low, high = self.short_answer_turns
        if not 1 <= low <= high:
            raise ValueError(f"short_answer_turns must be (min, max) with 1 <= min <= max, got {self.short_answer_turns}")
        return self

    @model_validator(mode="after")
    def _mix_known(self) -> WorldConfig:
        from xllava.world.questions import CATEGORIES  # the world imports this module

        unknown = sorted(set(self.train_question_mix) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"train_question_mix: unknown question types {unknown}; known: {list(CATEGORIES)}")
        if any(w < 0 for w in self.train_question_mix.values()) or not any(self.question_weights().values()):
            raise ValueError(f"train_question_mix: weights must be >= 0 and not all 0, got {self.train_question_mix}")
        return self

    def question_weights(self) -> dict[str, float]:
        from xllava.world.questions import CATEGORIES

        return {c: float(self.train_question_mix.get(c, 1.0)) for c in CATEGORIES}


# ---------------------------------------------------------------- model


class ScratchLLMConfig(Strict):
    """A randomly initialised Llama-architecture LM with a byte-level BPE learned on the world's text.
    Used by the tiny recipe, where no pretrained LM fits the time budget."""

    vocab_size: int = 2048
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    # std of the random init. HF's 0.02 suits wide models; at width 128 it leaves attention scores
    # near zero for hundreds of steps, and the image lookups the world asks for start late
    initializer_range: float = 0.02
    # seed of the random init (was unseeded: two runs of one recipe started from different weights,
    # and held-out colour came out 100% in one and at chance in the other)
    seed: int = 0
    # languages whose training text the tokenizer is learned on (None: all). [en] gives an
    # English-centric base whose Korean falls back to bytes, as in the paper's starting point
    tokenizer_languages: list[str] | None = None


class LLMConfig(Strict):
    source: Literal["hf", "smollm2_gguf", "scratch"] = "hf"
    path: str | None = None  # HF causal-LM directory for source=hf
    family: str = "chatml"  # key of xllava.model.families.FAMILIES
    scratch: ScratchLLMConfig = ScratchLLMConfig()

    @model_validator(mode="after")
    def _path_needed(self) -> LLMConfig:
        if self.source == "hf" and not self.path:
            raise ValueError("model.llm.path is required when model.llm.source is 'hf'")
        return self


class VisionConfig(Strict):
    tower: Literal["clip", "siglip"] = "clip"  # key of xllava.model.towers.TOWERS
    path: str | None = None  # pretrained tower directory; None builds the tower from the fields below
    image_size: int = 96
    patch_size: int = 16
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    feature_layer: int = -1


class ModelConfig(Strict):
    llm: LLMConfig = LLMConfig(source="scratch")
    vision: VisionConfig = VisionConfig()
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    # The projector's first layer starts random, or (`tower_readout`, for a tower the `tower` stage
    # pretrained) with the tower's readout probes as its first rows, so every image token enters the
    # LLM saying its kind, colour, size, place and relationships. A random start kept colour poorly:
    # read linearly from the projector's output it was right for 84% of objects (kind 99.5%), and
    # after training 56%, and the LLM never learned to answer it.
    projector_init: Literal["random", "tower_readout"] = "random"


# ---------------------------------------------------------------- training


class TowerConfig(Strict):
    """Pretraining a from-scratch vision tower on the world's scene graphs (xllava.train.tower):
    the offline stand-in for a pretrained CLIP."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    # scenes generated and rendered in memory for this stage only, on top of the world's train
    # scenes (CLIP saw millions of images; a tower that learns relationships from 1,200 memorises
    # them). Drawn from their own seed stream; none has the content of an eval scene.
    extra_scenes: int = 0


class TrainStageConfig(Strict):
    """One LLaVA training stage. Stage 1 (align) and stage 2 (instruct) differ only in defaults."""

    data: list[str] = Field(default_factory=list)  # LLaVA JSON/JSONL files, relative to the run dir
    languages: list[str] | None = None  # keep only these `lang` values; None keeps all
    tasks: list[str] | None = None  # keep only these `task` values (e.g. drop the mvif types); None keeps all
    image_root: str | None = None  # images are resolved against this (default: the data file's folder)
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3  # LLM (or LoRA) learning rate
    projector_lr: float | None = None  # default: lr
    # False keeps the projector as it comes in: one started from the tower's readout probes
    # (model.projector_init) then keeps every fact it reads, where training it wiped out most
    # (bench/projector_probe.py)
    train_projector: bool = True
    vision_lr: float | None = None  # default: lr
    weight_decay: float = 0.0
    adam_beta2: float = Field(0.999, gt=0, lt=1)  # AdamW's second-moment decay (LLM pretraining often takes 0.95)
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    llm_mode: Literal["frozen", "lora", "full"] = "frozen"
    lora: LoraConfig = LoraConfig()
    train_vision_tower: bool = False
    max_length: int = 512
    seed: int = 42
    save_steps: int = 50
    logging_steps: int = 5
    # speed levers (each can be switched off to measure it)
    feature_cache: bool = True  # cache frozen vision features per image
    group_by_length: bool = True  # batches of similar real token length
    supervised_logits_only: bool = True  # LM head (and a Llama-layout last layer) only where a label is
    # the LLM's attention kernel in training; None keeps the model's (sdpa). On CPU, eager is faster
    # for short sequences of small heads (tiny recipe: 0.19 -> 0.16 s a step, 128 x 34 tokens, 16-dim heads)
    llm_attention: Literal["sdpa", "eager"] | None = None
    dataloader_workers: int = 0
    # memory levers for large models (xllava.scale plans them)
    gradient_checkpointing: bool = False  # recompute each decoder layer in backward: activations of ~1 layer
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the GPU supports it, else fp32


class EvalConfig(Strict):
    benchmark: str = "world/bench"  # folder of {lang}.jsonl files, relative to the run dir
    languages: list[str] = ["en", "ko"]
    batch_size: int = 32
    max_new_tokens: int = 8
    limit: int | None = None
    image_first: bool = True  # "<image>\nquestion" (LLaVA's usual order) or "question\n<image>"
    # every public benchmark format on the world's instances, judges and preference (xllava.eval.suite);
    # null skips it
    suite: EvalSuiteConfig | None = EvalSuiteConfig()


# ---------------------------------------------------------------- recipe

STAGES = ("world", "datagen", "vocab", "lm", "tower", "align", "instruct", "eval", "report")


class Recipe(Strict):
    name: str
    output_dir: str = "runs/${name}"
    stages: list[str] = list(STAGES)
    world: WorldConfig = WorldConfig()
    datagen: DatagenConfig = DatagenConfig()
    vocab: VocabConfig = VocabConfig()
    lm: LmConfig = LmConfig()
    model: ModelConfig = ModelConfig()
    tower: TowerConfig = TowerConfig()
    align: TrainStageConfig = TrainStageConfig(
        data=["world/captions.jsonl"], lr=1e-3, llm_mode="frozen", epochs=1.0
    )
    instruct: TrainStageConfig = TrainStageConfig(
        data=["world/instruct.jsonl"], lr=2e-4, projector_lr=2e-5, llm_mode="lora", epochs=1.0
    )
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _known_stages(self) -> Recipe:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.replace("${name}", self.name))


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML and apply `a.b.c=value` overrides (values parsed as YAML scalars)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recipe {path} does not exist")
    tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return Recipe.model_validate(tree)
    except Exception as err:  # pydantic's message names the field; add the file
        raise ValueError(f"{path}: {err}") from err


def dump_config(config: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
