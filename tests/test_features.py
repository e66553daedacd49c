"""The vision-feature cache: one file per tower, rows keyed by image content, shared by stages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from xllava.model.assemble import load_llava
from xllava.train import features
from xllava.train.features import FeatureCache, load_pixels, select_features


def test_cache_computes_each_image_once_and_follows_content(fast_run: Path, tmp_path: Path, monkeypatch) -> None:
    model, processor = load_llava(fast_run / "align" / "model")
    images = sorted((fast_run / "world" / "images").glob("*.png"))[:7]
    with torch.no_grad():
        direct = select_features(model, load_pixels(processor.image_processor, images))

    computed: list[Path] = []
    real = features._features

    def counting(model, image_processor, paths, batch_size, pad):
        computed.extend(paths)
        return real(model, image_processor, paths, batch_size, pad)

    monkeypatch.setattr(features, "_features", counting)
    folder = tmp_path / "features"
    first = FeatureCache.build_or_load(model, processor.image_processor, images[:4], folder)
    assert computed == images[:4]
    torch.testing.assert_close(first.rows([0, 1, 2, 3]), direct[:4])

    # a later stage over more images runs the tower on the new ones only, in its own image order
    later = FeatureCache.build_or_load(model, processor.image_processor, images[:6][::-1], folder)
    assert computed == images[:4] + images[4:6][::-1]
    torch.testing.assert_close(later.rows(list(range(6))), direct[:6].flip(0))
    assert len(list(folder.iterdir())) == 1  # one file for this tower, rewritten whole

    # keyed by content: a copy at another path is not recomputed, changed bytes at a known path are
    copy = tmp_path / "copy.png"
    shutil.copy(images[2], copy)
    FeatureCache.build_or_load(model, processor.image_processor, [copy], folder)
    assert len(computed) == 6
    changed = tmp_path / "changed.png"
    shutil.copy(images[5], changed)
    FeatureCache.build_or_load(model, processor.image_processor, [changed], folder)
    assert len(computed) == 6
    shutil.copy(images[6], changed)  # the same path, now another picture
    again = FeatureCache.build_or_load(model, processor.image_processor, [changed], folder)
    assert computed[6:] == [changed]
    torch.testing.assert_close(again.rows([0]), direct[6:7])

    # another tower gets its own file; a reader (not rank 0) never writes
    with torch.no_grad():
        next(model.model.vision_tower.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="lacks 1 images"):
        FeatureCache.build_or_load(model, processor.image_processor, images[:1], folder, write=False)
    FeatureCache.build_or_load(model, processor.image_processor, images[:1], folder)
    assert len(list(folder.iterdir())) == 2


def test_a_damaged_cache_file_is_rebuilt_with_a_warning(fast_run: Path, tmp_path: Path) -> None:
    model, processor = load_llava(fast_run / "align" / "model")
    images = sorted((fast_run / "world" / "images").glob("*.png"))[:3]
    with torch.no_grad():
        direct = select_features(model, load_pixels(processor.image_processor, images))
    folder = tmp_path / "features"
    FeatureCache.build_or_load(model, processor.image_processor, images, folder)
    (path,) = folder.iterdir()  # no temporary file left behind
    assert path.suffix == ".safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a write cut short
    with pytest.warns(UserWarning, match=f"feature cache {path} is unreadable"):
        rebuilt = FeatureCache.build_or_load(model, processor.image_processor, images, folder)
    torch.testing.assert_close(rebuilt.rows([0, 1, 2]), direct)
    assert [p.name for p in folder.iterdir()] == [path.name]
    torch.testing.assert_close(FeatureCache.build_or_load(model, processor.image_processor, images, folder).rows([2]),
                               direct[2:])
