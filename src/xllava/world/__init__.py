"""The embedded synthetic trilingual world: seeded scenes, PNG renders, en/ko/zh ground truth.

`build_world(out_dir, cfg)` writes images, Visual Genome-style scene graphs, stage-1 captions,
stage-2 instructions and the held-out short-answer benchmark.
"""

from xllava.world.build import build_world

__all__ = ["build_world"]
