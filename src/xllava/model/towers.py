"""Vision towers, as an explicit table: the HF classes of each tower and how LLaVA reads its features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    PretrainedConfig,
    PreTrainedModel,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from xllava.config import VisionConfig

# A tower pretrained by the `tower` stage keeps its linear readout probes (kind, colour, size, place,
# relationships, atmosphere of each patch) here, one row per output: the projector can start from them
READOUT_FILE = "readout_probes.safetensors"

@dataclass(frozen=True)
class Tower:
    name: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    image_processor_class: type
    # CLIP prepends a CLS token that LLaVA drops ("default"); SigLIP has none ("full").
    select_strategy: str
    additional_tokens: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


TOWERS: dict[str, Tower] = {
    "clip": Tower(
        "clip",
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPImageProcessor,
        select_strategy="default",
        additional_tokens=1,
        image_mean=(0.48145466, 0.4578275, 0.40821073),
        image_std=(0.26862954, 0.26130258, 0.27577711),
    ),
    "siglip": Tower(
        "siglip",
        SiglipVisionConfig,
        SiglipVisionModel,
        SiglipImageProcessor,
        select_strategy="full",
        additional_tokens=0,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
    ),
}


def get_tower(name: str) -> Tower:
    try:
        return TOWERS[name]
    except KeyError:
        raise ValueError(f"unknown vision tower {name!r}; known: {sorted(TOWERS)}") from None


@dataclass
class LoadedTower:
    spec: Tower
    model: PreTrainedModel  # the *VisionModel; its .config is the LLaVA vision_config
    image_processor: object
    pretrained: bool  # False: randomly initialised here, and must be trained


def load_tower(cfg: VisionConfig) -> LoadedTower:
    """A pretrained tower from a directory, or a fresh one built from the recipe's dimensions."""
    spec = get_tower(cfg.tower)
    if cfg.path:
        path = Path(cfg.path)
        if not path.is_dir():
            raise FileNotFoundError(f"model.vision.path {path} is not a directory")
        model = spec.model_class.from_pretrained(path)
        processor = spec.image_processor_class.from_pretrained(path)
        return LoadedTower(spec, model, processor, pretrained=True)
    config = spec.config_class(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
    )
    if cfg.tower == "siglip":
        config.vision_use_head = False
    model = spec.model_class(config)
    size_kw = {"height": cfg.image_size, "width": cfg.image_size}
    if cfg.tower == "clip":
        processor = spec.image_processor_class(
            size={"shortest_edge": cfg.image_size},
            crop_size=size_kw,
            image_mean=list(spec.image_mean),
            image_std=list(spec.image_std),
        )
    else:
        processor = spec.image_processor_class(
            size=size_kw, image_mean=list(spec.image_mean), image_std=list(spec.image_std)
        )
    return LoadedTower(spec, model, processor, pretrained=False)


def num_image_tokens(config: PretrainedConfig, spec: Tower) -> int:
    """Tokens one image occupies in the LLM sequence (what LlavaProcessor expands `<image>` to)."""
    patches = (config.image_size // config.patch_size) ** 2
    return patches + spec.additional_tokens - (1 if spec.select_strategy == "default" else 0)
