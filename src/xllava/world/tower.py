"""Stage 0 for the embedded world: pretrain a from-scratch vision tower on the scene graphs.

LLaVA starts from a pretrained CLIP and keeps it frozen. No CLIP weights install offline, and a
randomly initialised tower trained only through the LLM's caption loss learns nothing in a CPU budget
(the LLM learns to ignore the image first). This stage is the stand-in for CLIP pretraining: the tower
learns, with linear probes on its patch tokens, what each grid cell holds (kind, colour, size), the
scene graph's relationships of that cell's object (which kinds it is left of, above, next to, bigger
than, ...) and the scene's time of day and weather. The probes are thrown away; the tower is saved as a plain HF
vision model directory, which stage 1 then uses like any pretrained tower. Held-out probe accuracy
goes into the manifest, so the report shows what the tower can see.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from xllava.config import VisionConfig
from xllava.io import atomic_directory
from xllava.model.towers import READOUT_FILE, load_tower
from xllava.train.features import load_pixels
from xllava.train.patch_matmul import patches_as_matmul
from xllava.world.config import TowerConfig, WorldConfig
from xllava.world.lexicon import COLOURS, KINDS, SIZES, TIMES, WEATHERS
from xllava.world.render import render
from xllava.world.scene import PREDICATES, Scene, generate_scene

# label spaces; index 0 of the per-cell ones means "empty cell"
CELL_FIELDS = {"kind": ["-", *KINDS], "colour": ["-", *COLOURS], "size": ["-", *SIZES]}
# Every patch token is also asked which cell it lies in: the probes are shared across cells, so
# without this the features need not say *where* they are, and "what is at the top left" needs it.
POSITION = "cell"
SCENE_FIELDS = {"time_of_day": list(TIMES), "weather": list(WEATHERS)}
# Relationships, multi-label per cell: bit (predicate, kind) is set when the cell's object stands in
# that predicate to an object of that kind. A patch then carries its place among the others, as
# CLIP patches carry context; "where is A relative to B" becomes one lookup of A and a read of B's
# bit. Without it a 2-layer LM must compose two lookups and a comparison, and even with oracle cell
# features it stayed at chance (25%) through 1,000 steps of relation questions alone.
RELATIONS = "relations"
RELATION_BITS = [(predicate, kind) for predicate in PREDICATES for kind in KINDS]
_RELATION_BIT = {bit: i for i, bit in enumerate(RELATION_BITS)}


@dataclass
class Labels:
    cells: dict[str, torch.Tensor]  # field -> (n_images, grid*grid)
    scene: dict[str, torch.Tensor]  # field -> (n_images,)
    relations: torch.Tensor  # (n_images, grid*grid, len(RELATION_BITS)), 0/1


def scene_labels(graphs: list[dict], grid: int) -> Labels:
    cells = {f: torch.zeros(len(graphs), grid * grid, dtype=torch.long) for f in CELL_FIELDS}
    scene = {f: torch.zeros(len(graphs), dtype=torch.long) for f in SCENE_FIELDS}
    relations = torch.zeros(len(graphs), grid * grid, len(RELATION_BITS))
    for i, g in enumerate(graphs):
        objects = {obj["object_id"]: obj for obj in g["objects"]}
        for obj in g["objects"]:
            cell = obj["row"] * grid + obj["col"]
            for f, values in CELL_FIELDS.items():
                cells[f][i, cell] = values.index(obj[f])
        for rel in g["relations"]:
            subject, other = objects[rel["subject"]], objects[rel["object"]]
            bit = _RELATION_BIT[rel["predicate"], other["kind"]]
            relations[i, subject["row"] * grid + subject["col"], bit] = 1.0
        for f, values in SCENE_FIELDS.items():
            scene[f][i] = values.index(g["atmosphere"][f])
    return Labels(cells, scene, relations)


class Probes(nn.Module):
    def __init__(self, hidden: int, grid: int):
        super().__init__()
        self.grid = grid
        self.cell = nn.ModuleDict({f: nn.Linear(hidden, len(v)) for f, v in CELL_FIELDS.items()})
        self.scene = nn.ModuleDict({f: nn.Linear(hidden, len(v)) for f, v in SCENE_FIELDS.items()})
        self.position = nn.Linear(hidden, grid * grid)
        self.relations = nn.Linear(hidden, len(RELATION_BITS))

    def forward(self, tokens: torch.Tensor) -> tuple[dict, dict, torch.Tensor]:
        n, length, hidden = tokens.shape
        side = int(length**0.5)
        square = tokens.transpose(1, 2).reshape(n, hidden, side, side)
        cells = F.adaptive_avg_pool2d(square, self.grid).flatten(2).transpose(1, 2)  # (n, grid*grid, hidden)
        pooled = tokens.mean(1)
        cell_out = {f: head(cells) for f, head in self.cell.items()}
        cell_out[POSITION] = self.position(cells)
        return cell_out, {f: head(pooled) for f, head in self.scene.items()}, self.relations(cells)


def save_readout(probes: Probes, path: Path) -> None:
    """One row per probe output (cell fields, cell position, relationship bits, scene fields), each
    field centred over its classes: the right class then reads positive and the others negative, so
    the projector's GELU keeps which class won."""
    heads = [*probes.cell.values(), probes.position, probes.relations, *probes.scene.values()]
    weights, biases = [], []
    for head in heads:
        w, b = head.weight.detach(), head.bias.detach()
        if head is not probes.relations:  # relationship bits are independent yes/no outputs, not classes
            w, b = w - w.mean(0), b - b.mean()
        weights.append(w)
        biases.append(b)
    save_file({"weight": torch.cat(weights).contiguous(), "bias": torch.cat(biases).contiguous()}, str(path))


def _cell_targets(labels: Labels, rows: torch.Tensor, field: str) -> torch.Tensor:
    if field == POSITION:
        n, cells = labels.cells["kind"][rows].shape
        return torch.arange(cells).expand(n, cells)
    return labels.cells[field][rows]


def _loss(out: tuple[dict, dict, torch.Tensor], labels: Labels, rows: torch.Tensor) -> torch.Tensor:
    cell_out, scene_out, relation_out = out
    loss = sum(F.cross_entropy(cell_out[f].flatten(0, 1), _cell_targets(labels, rows, f).flatten()) for f in cell_out)
    loss = loss + sum(F.cross_entropy(scene_out[f], labels.scene[f][rows]) for f in scene_out)
    # summed over the bits, so the relationships weigh like one more categorical field per cell
    bits = F.binary_cross_entropy_with_logits(relation_out, labels.relations[rows], reduction="none")
    return loss + bits.sum(-1).mean()


def _accuracy(out: tuple[dict, dict, torch.Tensor], labels: Labels, rows: torch.Tensor) -> dict[str, float]:
    cell_out, scene_out, relation_out = out
    acc = {f: float((cell_out[f].argmax(-1) == _cell_targets(labels, rows, f)).float().mean()) for f in cell_out}
    acc.update({f: float((scene_out[f].argmax(-1) == labels.scene[f][rows]).float().mean()) for f in scene_out})
    # a cell counts as right only when every one of its relationship bits is
    exact = ((relation_out > 0).float() == labels.relations[rows]).all(-1)
    acc[RELATIONS] = float(exact.float().mean())
    return acc


def extra_scenes(world: WorldConfig, n: int, held_out: list[dict]) -> list[Scene]:
    """n fresh scenes for tower pretraining; a scene with the content of a held-out one is redrawn."""
    rng = random.Random(f"xllava-tower/{world.seed}")
    forbidden = {Scene.from_dict(g).signature() for g in held_out}
    scenes: list[Scene] = []
    while len(scenes) < n:
        scene = generate_scene(rng, world, f"t{len(scenes):06d}", "tower")
        if scene.signature() not in forbidden:
            scenes.append(scene)
    return scenes


def _rendered_pixels(processor, scenes: list[Scene], world: WorldConfig, chunk: int = 512) -> torch.Tensor:
    parts = []
    for start in tqdm(range(0, len(scenes), chunk), desc="rendering tower scenes", unit="chunk"):
        images = [render(s, world.image_size, world.grid_size) for s in scenes[start : start + chunk]]
        parts.append(processor(images=images, return_tensors="pt")["pixel_values"])
    return torch.cat(parts)


def pretrain_tower(vision: VisionConfig, cfg: TowerConfig, world_dir: Path, out_dir: Path, world: WorldConfig) -> dict:
    torch.manual_seed(cfg.seed)
    grid = world.grid_size
    graphs = json.loads((world_dir / "scene_graphs.json").read_text(encoding="utf-8"))
    train = [g for g in graphs if g["split"] == "train"]
    held_out = [g for g in graphs if g["split"] != "train"]
    tower = load_tower(vision.model_copy(update={"path": None}))
    model, processor = tower.model, tower.image_processor

    def pixels_of(gs: list[dict]) -> torch.Tensor:
        return load_pixels(processor, [world_dir / "images" / f"{g['scene_id']}.png" for g in gs])

    train_pixels, held_pixels = pixels_of(train), pixels_of(held_out)
    if cfg.extra_scenes:
        extra = extra_scenes(world, cfg.extra_scenes, held_out)
        train_pixels = torch.cat([train_pixels, _rendered_pixels(processor, extra, world)])
        train = train + [s.to_dict() for s in extra]
    train_labels, held_labels = scene_labels(train, grid), scene_labels(held_out, grid)
    probes = Probes(model.config.hidden_size, grid)
    params = [*model.parameters(), *probes.parameters()]
    # fused: one kernel for all parameters (the default on a CPU is a Python loop over them); with
    # the patch matmul it took a tower step from ~106 to ~80 ms on 2 CPU cores
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, fused=True)
    steps = cfg.epochs * ((len(train) + cfg.batch_size - 1) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)

    def tokens(px: torch.Tensor) -> torch.Tensor:
        hidden = model(px, output_hidden_states=True).hidden_states[vision.feature_layer]
        return hidden[:, 1:] if tower.spec.select_strategy == "default" else hidden

    order = list(range(len(train)))
    rng = random.Random(cfg.seed)
    losses = []
    with patches_as_matmul(model):
        bar = tqdm(total=steps, desc="tower pretraining", unit="step")
        model.train()
        for _ in range(cfg.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                rows = torch.tensor(order[start : start + cfg.batch_size])
                loss = _loss(probes(tokens(train_pixels[rows])), train_labels, rows)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.close()
    model.eval()  # the probe reads the tower as it is saved, convolution and all
    with torch.no_grad():
        rows = torch.arange(len(held_out))
        probe_acc = _accuracy(probes(tokens(held_pixels)), held_labels, rows)
    with atomic_directory(out_dir / "model") as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        save_readout(probes, tmp / READOUT_FILE)
    (out_dir / "loss.json").write_text(json.dumps(losses))
    return {"model_dir": str(out_dir / "model"), "steps": steps, "train_images": len(train), "first_loss": losses[0],
            "final_loss": losses[-1], "held_out_probe_accuracy": probe_acc}
