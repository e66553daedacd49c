"""Scenes: a few objects in distinct cells of a 3x3 grid, plus the atmosphere (time, weather, light).

Everything a question can ask is a field of the scene or is derived from grid positions, so the
ground truth is exact. Generation deliberately repeats kinds (pairs, triples) so that counting
answers 1, 2 and 3 are all common.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from xllava.world.config import WorldConfig
from xllava.world.lexicon import COLOURS, GRID_SIZE, KINDS, SIZES, TIMES, WEATHERS


@dataclass(frozen=True)
class SceneObject:
    object_id: int
    kind: str
    colour: str
    size: str
    row: int
    col: int


@dataclass(frozen=True)
class Atmosphere:
    time_of_day: str
    weather: str
    light: str  # derived from the time of day: morning/day bright, evening/night dim


@dataclass(frozen=True)
class Relation:
    subject: int  # object_id
    predicate: str  # "left of", "right of", "above", "below", "next to", "bigger than"
    object: int  # object_id


@dataclass
class Scene:
    scene_id: str
    objects: list[SceneObject]
    atmosphere: Atmosphere
    split: str  # "train" or "eval"
    relations: list[Relation] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.relations:
            self.relations = derive_relations(self.objects)

    # ---- lookups used by questions, captions and instructions

    def by_id(self, object_id: int) -> SceneObject:
        return next(o for o in self.objects if o.object_id == object_id)

    def at(self, row: int, col: int) -> SceneObject | None:
        return next((o for o in self.objects if o.row == row and o.col == col), None)

    def count(self, kind: str) -> int:
        return sum(o.kind == kind for o in self.objects)

    def unique_of_kind(self, kind: str) -> SceneObject | None:
        found = [o for o in self.objects if o.kind == kind]
        return found[0] if len(found) == 1 else None

    def reading_order(self) -> list[SceneObject]:
        return sorted(self.objects, key=lambda o: (o.row, o.col))

    def signature(self) -> tuple:
        """Content identity (ignores ids), used to keep eval scenes distinct from train scenes."""
        objs = tuple(sorted((o.row, o.col, o.kind, o.colour, o.size) for o in self.objects))
        return objs, self.atmosphere.time_of_day, self.atmosphere.weather

    def to_dict(self) -> dict:
        return {
            "scene_id": self.scene_id,
            "split": self.split,
            "objects": [asdict(o) for o in self.objects],
            "relations": [asdict(r) for r in self.relations],
            "atmosphere": asdict(self.atmosphere),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(
            scene_id=data["scene_id"],
            objects=[SceneObject(**o) for o in data["objects"]],
            atmosphere=Atmosphere(**data["atmosphere"]),
            split=data["split"],
            relations=[Relation(**r) for r in data.get("relations", [])],
        )


def direction(a: SceneObject, b: SceneObject) -> str | None:
    """Where a is relative to b, only when they share a row or a column (never ambiguous)."""
    if a.row == b.row and a.col != b.col:
        return "left" if a.col < b.col else "right"
    if a.col == b.col and a.row != b.row:
        return "above" if a.row < b.row else "below"
    return None


_PREDICATE = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
# every predicate a scene graph holds, in a fixed order (the tower's relationship probe indexes it)
PREDICATES = (*_PREDICATE.values(), "next to", "bigger than")


def derive_relations(objects: list[SceneObject]) -> list[Relation]:
    relations = []
    for a in objects:
        for b in objects:
            if a is b:
                continue
            d = direction(a, b)
            if d:
                relations.append(Relation(a.object_id, _PREDICATE[d], b.object_id))
            if abs(a.row - b.row) + abs(a.col - b.col) == 1:  # cells sharing an edge
                relations.append(Relation(a.object_id, "next to", b.object_id))
            if a.size == "big" and b.size == "small":
                relations.append(Relation(a.object_id, "bigger than", b.object_id))
    return relations


def _object_id_base(scene_id: str) -> int:
    # Globally unique integer ids as in Visual Genome: split letter block + scene number * 10 + index.
    block = {"w": 0, "e": 1}.get(scene_id[0], 2)
    return block * 10_000_000 + int(scene_id[1:]) * 10


def _pick_kinds(rng: random.Random, n: int) -> list[str]:
    """n kinds with a repeated kind in ~60% of scenes: a triple (count 3), a pair, or none."""
    kinds = list(KINDS)
    rng.shuffle(kinds)
    mode = rng.random()
    if n >= 3 and mode < 0.3:
        repeats = [kinds[0]] * 3
    elif n >= 2 and mode < 0.65:
        repeats = [kinds[0]] * 2
    else:
        repeats = [kinds[0]]
    rest = kinds[1 : 1 + n - len(repeats)]
    chosen = repeats + rest
    rng.shuffle(chosen)
    return chosen


def generate_scene(rng: random.Random, cfg: WorldConfig, scene_id: str = "w000000",
                   split: str = "train") -> Scene:
    if cfg.grid_size != GRID_SIZE:
        raise ValueError(f"the world's position names are for a {GRID_SIZE}x{GRID_SIZE} grid")
    n = rng.randint(cfg.min_objects, min(cfg.max_objects, GRID_SIZE * GRID_SIZE))
    cells = rng.sample(range(GRID_SIZE * GRID_SIZE), n)
    base = _object_id_base(scene_id)
    objects = [
        SceneObject(
            object_id=base + i,
            kind=kind,
            colour=rng.choice(list(COLOURS)),
            size=rng.choice(list(SIZES)),
            row=cell // GRID_SIZE,
            col=cell % GRID_SIZE,
        )
        for i, (kind, cell) in enumerate(zip(_pick_kinds(rng, n), cells, strict=True))
    ]
    objects.sort(key=lambda o: (o.row, o.col))
    objects = [SceneObject(base + i, o.kind, o.colour, o.size, o.row, o.col) for i, o in enumerate(objects)]
    time_of_day = rng.choice(list(TIMES))
    # No "sunny night": the word would be odd in every language. Sunny stays common enough
    # (3 of 16 combinations); the question sampler balances the answers anyway.
    weathers = [w for w in WEATHERS if not (time_of_day == "night" and w == "sunny")]
    weather = rng.choice(weathers)
    light = "bright" if TIMES[time_of_day].bright else "dim"
    return Scene(scene_id, objects, Atmosphere(time_of_day, weather, light), split)
