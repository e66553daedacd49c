"""The tower stage's targets: what each cell holds and the scene graph's relationships of its object."""

from __future__ import annotations

import random

import torch

from xllava.world.config import WorldConfig
from xllava.world.scene import Scene, direction, generate_scene
from xllava.world.tower import RELATION_BITS, extra_scenes, scene_labels


def test_relationship_bits_follow_the_scene_graph() -> None:
    rng = random.Random(5)
    scenes = [generate_scene(rng, WorldConfig(), f"w{i:06d}") for i in range(40)]
    labels = scene_labels([s.to_dict() for s in scenes], grid=3)
    checked = 0
    for i, scene in enumerate(scenes):
        for a in scene.objects:
            bits = labels.relations[i, a.row * 3 + a.col]
            for b in scene.objects:
                d = direction(a, b) if a is not b else None
                if d:  # "a is left of a kite" sets (left of, kite) on a's cell
                    predicate = {"left": "left of", "right": "right of"}.get(d, d)
                    assert bits[RELATION_BITS.index((predicate, b.kind))] == 1
                    checked += 1
            # a bit set only where some object of that kind stands in that predicate to a
            for bit in torch.nonzero(bits).flatten().tolist():
                predicate, kind = RELATION_BITS[bit]
                assert any(r.subject == a.object_id and r.predicate == predicate and scene.by_id(r.object).kind == kind
                           for r in scene.relations)
        empty = {(r, c) for r in range(3) for c in range(3)} - {(o.row, o.col) for o in scene.objects}
        assert all(labels.relations[i, r * 3 + c].sum() == 0 for r, c in empty)
    assert checked > 50


def test_extra_scenes_are_fresh_and_never_held_out() -> None:
    world = WorldConfig(n_train_scenes=10, n_eval_scenes=10)
    rng = random.Random(0)
    held = [generate_scene(rng, world, f"e{i:06d}", "eval").to_dict() for i in range(200)]
    extra = extra_scenes(world, 300, held)
    assert len(extra) == 300 and len({s.scene_id for s in extra}) == 300
    forbidden = {Scene.from_dict(g).signature() for g in held}
    assert not any(s.signature() in forbidden for s in extra)
    assert [s.to_dict() for s in extra] == [s.to_dict() for s in extra_scenes(world, 300, held)]  # seeded
