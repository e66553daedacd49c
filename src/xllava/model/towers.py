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


@dataclass(frozen=True)
class TowerShape:
    """The geometry of a released tower: what fixes the image-token count and where LLaVA reads."""

    tower: str  # key of TOWERS
    image_size: int
    patch_size: int
    feature_layer: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int


# The towers LLaVA-style models are built on, by their hub names: CLIP ViT-L/14 at 336 px
# (LLaVA-1.5: 576 image tokens, second-to-last layer) and SigLIP so400m/14 at 384 px (729 tokens).
TOWER_SHAPES: dict[str, TowerShape] = {
    "clip-vit-large-patch14-336": TowerShape("clip", 336, 14, -2, 1024, 4096, 24, 16),
    "siglip-so400m-patch14-384": TowerShape("siglip", 384, 14, -2, 1152, 4304, 27, 16),
}


def shaped_vision_config(name: str, **smaller: int) -> VisionConfig:
    """A VisionConfig with a released tower's image size, patch size and feature layer (so the
    same image-token count), optionally narrower or shallower (`hidden_size=32, num_hidden_layers=3`)
    for a random-weight stand-in."""
    if name not in TOWER_SHAPES:
        raise ValueError(f"unknown tower shape {name!r}; known: {sorted(TOWER_SHAPES)}")
    shape = TOWER_SHAPES[name]
    fields = {k: getattr(shape, k) for k in ("image_size", "patch_size", "feature_layer", "hidden_size",
                                             "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    unknown = set(smaller) - {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}
    if unknown:
        raise ValueError(f"only the width and depth of a tower shape can change, not {sorted(unknown)}")
    return VisionConfig(tower=shape.tower, **{**fields, **smaller})
