"""Vision features: the exact selection LlavaModel makes, and a per-image cache of them.

When the tower is frozen, its output for an image never changes, yet each image serves many samples
(task types x languages). The cache runs the tower once per image and stores the selected features
(before the projector, which still trains) in a safetensors file keyed by a fingerprint of the tower.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration


def select_features(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """Tower hidden states at `vision_feature_layer`, CLS dropped for the "default" strategy."""
    inner = model.model
    config = model.config
    out = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
    layers = config.vision_feature_layer
    if isinstance(layers, int):
        layers = [layers]
    picked = [out.hidden_states[i] for i in layers]
    if config.vision_feature_select_strategy == "default":
        picked = [h[:, 1:] for h in picked]
    return torch.cat(picked, dim=-1)


def load_pixels(image_processor, paths: list[Path]) -> torch.Tensor:
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return image_processor(images=images, return_tensors="pt")["pixel_values"]


def tower_fingerprint(model: LlavaForConditionalGeneration) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Features of a fixed list of images, row i = image i."""

    def __init__(self, features: torch.Tensor, index: dict[str, int]):
        self.features = features
        self.index = index

    def rows(self, images: list[int]) -> torch.Tensor:
        return self.features[images]

    @classmethod
    @torch.no_grad()
    def build_or_load(
        cls,
        model: LlavaForConditionalGeneration,
        image_processor,
        images: list[Path],
        path: Path,
        batch_size: int = 64,
        write: bool = True,
    ) -> FeatureCache:
        """Load the cache at `path` if it matches this tower and image list, else build and write it.

        Under several processes only rank 0 writes (write=True) and the others load after it
        (write=False); a reader that finds no valid file fails rather than write a second copy."""
        keys = [str(p) for p in images]
        index = {k: i for i, k in enumerate(keys)}
        meta = {"tower": tower_fingerprint(model), "images": hashlib.sha256("\n".join(keys).encode()).hexdigest()}
        if path.exists():
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}) == meta:
                    return cls(f.get_tensor("features"), index)
        if not write:
            raise RuntimeError(
                f"feature cache {path} is missing or stale after rank 0 built it: "
                "the run directory must be on a filesystem that every node shares"
            )
        was_training = model.training
        model.eval()
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="vision feature cache", unit="batch"):
            pixels = load_pixels(image_processor, images[start : start + batch_size])
            chunks.append(select_features(model, pixels.to(model.dtype)).float())
        model.train(was_training)
        features = torch.cat(chunks) if chunks else torch.empty(0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"features": features.contiguous()}, str(tmp), metadata=meta)
        tmp.rename(path)
        return cls(features, index)
