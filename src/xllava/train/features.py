"""Vision features: the exact selection LlavaModel makes, and a per-image cache of them.

When the tower is frozen, its output for an image never changes, yet each image serves many samples
(task types x languages). The cache runs the tower once per image and stores the selected features
(before the projector, which still trains) in a safetensors file per tower, rows keyed by image content.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration


def select_features(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """Tower hidden states at `vision_feature_layer`, CLS dropped for the "default" strategy."""
    out = model.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
    picked = [out.hidden_states[i] for i in _feature_layers(model)]
    if model.config.vision_feature_select_strategy == "default":
        picked = [h[:, 1:] for h in picked]
    return torch.cat(picked, dim=-1)


def _feature_layers(model: LlavaForConditionalGeneration) -> list[int]:
    layers = model.config.vision_feature_layer
    return [layers] if isinstance(layers, int) else list(layers)


def pad_to_square(image: Image.Image, mean: list[float]) -> Image.Image:
    """LLaVA-1.5's `image_aspect_ratio: pad`: the image centred on a square of the processor's mean
    colour, so the processor's centre crop then cuts nothing off."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), tuple(int(round(255 * m)) for m in mean))
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def load_pixels(image_processor, paths: list[Path], pad: bool = False) -> torch.Tensor:
    images = []
    for path in paths:
        with Image.open(path) as im:
            image = im.convert("RGB")
        images.append(pad_to_square(image, image_processor.image_mean) if pad else image)
    return image_processor(images=images, return_tensors="pt")["pixel_values"]


def tower_fingerprint(model: LlavaForConditionalGeneration) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def image_digest(path: Path) -> str:
    """Cache key of an image: its bytes, not its path (a regenerated world reuses the paths)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]


# Past these the cache stops paying: a large tower is a small share of a large model's FLOPs (CLIP-L
# is ~1% at 13B), and a large file is loaded whole by every rank (LLaVA-558K at 576 x 1024 in bf16
# is 0.6 TiB). Either one turns the default (feature_cache unset) off.
LARGE_TOWER_PARAMS = 100_000_000
LARGE_CACHE_BYTES = 8 * 2**30


def cache_bytes(model_config, n_images: int, bytes_per_value: int = 2) -> int:
    """What the cache of n_images would hold: tokens x feature width per image."""
    vision = model_config.vision_config
    layers = model_config.vision_feature_layer
    width = vision.hidden_size * (1 if isinstance(layers, int) else len(layers))
    return n_images * model_config.image_seq_length * width * bytes_per_value


def tower_params(model_config) -> int:
    """A ViT's weights from its shape: attention (4 h^2) and MLP (2 h i) per layer."""
    v = model_config.vision_config
    return v.num_hidden_layers * (4 * v.hidden_size**2 + 2 * v.hidden_size * v.intermediate_size)


def cache_by_default(model_config, n_images: int) -> bool:
    return tower_params(model_config) < LARGE_TOWER_PARAMS and cache_bytes(model_config, n_images) < LARGE_CACHE_BYTES


class FeatureCache:
    """Features of a fixed list of images, row i = image i."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    def rows(self, images: list[int]) -> torch.Tensor:
        return self.features[images]

    @classmethod
    @torch.no_grad()
    def build_or_load(
        cls,
        model: LlavaForConditionalGeneration,
        image_processor,
        images: list[Path],
        folder: Path,
        batch_size: int = 64,
        write: bool = True,
        device: torch.device | str | None = None,
        pad: bool = False,
    ) -> FeatureCache:
        """The features of `images`, from this tower's cache file in `folder` where it has them.

        One file per tower (and feature selection), keyed by image content, shared by the stages of a
        run: stage 1 and stage 2 over the same images (the embedded world's) run the tower once.
        Images the file lacks are computed and the file is rewritten with them (atomically). Under
        several processes only rank 0 writes (write=True) and the others load after it
        (write=False); a reader that finds rows missing fails rather than write a second copy.
        The tower runs on `device` (the accelerator: the tower moves there, as training would move it)
        in the model's dtype, and the features are stored in that dtype."""
        layers = "_".join(str(x) for x in _feature_layers(model))
        selection = f"{tower_fingerprint(model)}-{model.config.vision_feature_select_strategy}-{layers}"
        selection += "-pad" if pad else ""  # padded images give other features
        path = Path(folder) / f"vision-{selection}.safetensors"
        digests = [image_digest(p) for p in images]
        stored, row_of = _read(path, selection)
        missing = list(dict.fromkeys(d for d in digests if d not in row_of))  # identical images: once
        if missing:
            if not write:
                raise RuntimeError(
                    f"feature cache {path} lacks {len(missing)} images after rank 0 built it: "
                    "the run directory must be on a filesystem that every node shares"
                )
            path_of = dict(zip(digests, images, strict=True))  # any path of the same bytes will do
            if device is not None:
                model.model.vision_tower.to(device)
            new = _features(model, image_processor, [path_of[d] for d in missing], batch_size, pad)
            stored = torch.cat([stored, new]) if row_of else new
            row_of.update({d: len(row_of) + i for i, d in enumerate(missing)})
            path.parent.mkdir(parents=True, exist_ok=True)
            # a name of this process's own: two runs sharing the folder never write into one file,
            # and the last rename wins whole (the loser's images are computed again when next asked)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            order = sorted(row_of, key=row_of.get)
            save_file({"features": stored.contiguous()}, str(tmp),
                      metadata={"selection": selection, "images": json.dumps(order)})
            tmp.rename(path)
        return cls(stored[torch.tensor([row_of[d] for d in digests], dtype=torch.long)])


def _read(path: Path, selection: str) -> tuple[torch.Tensor, dict[str, int]]:
    """The cached features and each image digest's row; none where the file is absent, of another
    selection, or unreadable (a cache is derived data: a damaged one is rebuilt, with a warning)."""
    if not path.exists():
        return torch.empty(0), {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("selection") != selection:
                return torch.empty(0), {}
            stored = f.get_tensor("features")
            order = json.loads(meta["images"])
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        warnings.warn(f"feature cache {path} is unreadable ({error}); computing its images again", stacklevel=3)
        return torch.empty(0), {}
    if len(order) != len(stored):
        warnings.warn(f"feature cache {path} has {len(stored)} rows for {len(order)} images; computing them again",
                      stacklevel=3)
        return torch.empty(0), {}
    return stored, {d: i for i, d in enumerate(order)}


def _features(
    model: LlavaForConditionalGeneration, image_processor, images: list[Path], batch_size: int, pad: bool
) -> torch.Tensor:
    was_training = model.training
    model.eval()
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="vision feature cache", unit="batch"):
        pixels = load_pixels(image_processor, images[start : start + batch_size], pad)
        tower = model.model.vision_tower
        pixels = pixels.to(device=next(tower.parameters()).device, dtype=model.dtype)
        chunks.append(select_features(model, pixels).cpu())
    model.train(was_training)
    return torch.cat(chunks)
