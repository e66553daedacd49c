"""Build the whole world on disk: images, scene graphs, stage-1 captions, stage-2 instructions, benchmark.

Every random choice comes from a `random.Random` seeded by a string derived from `cfg.seed` and
what is being drawn (string seeds hash with SHA-512, independent of PYTHONHASHSEED), so a re-run
writes the same bytes. Train and eval scenes use different seed streams, and an eval scene whose
content equals any train scene is redrawn.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

from xllava.world.annotations import scene_graphs, vg_objects, vg_relationships
from xllava.world.benchmarks import write_world_benchmarks
from xllava.world.captions import caption_record
from xllava.world.config import WorldConfig
from xllava.world.instructions import mvif_records, short_answer_packing, short_answer_records
from xllava.world.questions import CATEGORIES, Question, render_question, sample_balanced
from xllava.world.render import render
from xllava.world.scene import Scene, generate_scene

IMAGE_DIR = "images"
# Every train scene gets an `object` record plus one of these in rotation (~2 mvif records per
# scene and language, plus ~1.3 packed short-answer records: about 3 records per scene and language).
_ROTATING_TASKS = ("location", "atmosphere", "conversation")


def seeded_rng(cfg: WorldConfig, *parts: object) -> random.Random:
    return random.Random("/".join(["xllava-world", str(cfg.seed), *map(str, parts)]))


def generate_scenes(cfg: WorldConfig) -> tuple[list[Scene], list[Scene]]:
    train_rng = seeded_rng(cfg, "train")
    train = [generate_scene(train_rng, cfg, f"w{i:06d}", "train") for i in range(cfg.n_train_scenes)]
    seen = {s.signature() for s in train}
    eval_rng = seeded_rng(cfg, "eval")
    evals: list[Scene] = []
    while len(evals) < cfg.n_eval_scenes:
        scene = generate_scene(eval_rng, cfg, f"e{len(evals):06d}", "eval")
        if scene.signature() not in seen:  # held-out means unseen content, not only unseen ids
            seen.add(scene.signature())
            evals.append(scene)
    return train, evals


def _image(scene: Scene) -> str:
    return f"{IMAGE_DIR}/{scene.scene_id}.png"


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def bench_records(scenes: list[Scene], cfg: WorldConfig) -> dict[str, list[dict]]:
    """The held-out questions: the same questions (same id suffix) in every language."""
    by_id = {s.scene_id: s for s in scenes}
    questions = sample_balanced(scenes, cfg.eval_questions_per_type, seeded_rng(cfg, "bench"))
    index: Counter[str] = Counter()
    numbered: list[tuple[str, Question]] = []
    for q in questions:
        numbered.append((f"{q.category}-{index[q.category]:03d}", q))
        index[q.category] += 1
    out: dict[str, list[dict]] = {}
    for lang in cfg.languages:
        rows = []
        for suffix, q in numbered:
            scene = by_id[q.scene_id]
            text, answer = render_question(q, scene, lang)
            rows.append({
                "question_id": f"{lang}-{suffix}",
                "image": _image(scene),
                "text": text,
                "answer": answer,
                "category": q.category,
                "lang": lang,
                "scene_id": q.scene_id,
                "query": q.query,
            })
        out[lang] = rows
    return out


def instruct_records(scenes: list[Scene], cfg: WorldConfig, mvif: bool = True) -> list[dict]:
    """The four mvif task types and the short answers of every scene; mvif=False: the short answers
    alone (the same ones: every task type draws from its own seeded stream)."""
    weights = cfg.question_weights()
    total = cfg.n_train_scenes * cfg.train_questions_per_scene
    # rounded first so that equal weights give exactly ceil(total / types), as before the mix existed
    per_category = {c: math.ceil(round(total * w / sum(weights.values()), 6)) for c, w in weights.items()}
    by_scene: dict[str, list[Question]] = {}
    if total > 0:
        seen: set[tuple[str, str, str]] = set()
        for q in sample_balanced(scenes, per_category, seeded_rng(cfg, "train-questions"),
                                  spread=cfg.spread_questions_over_scenes):
            key = (q.scene_id, q.category, json.dumps(q.query, sort_keys=True))
            if key not in seen:  # a reused question never appears twice in one scene's records
                seen.add(key)
                by_scene.setdefault(q.scene_id, []).append(q)
    records: list[dict] = []
    for i, scene in enumerate(scenes):
        image = _image(scene)
        for task in ("object", _ROTATING_TASKS[i % len(_ROTATING_TASKS)]) if mvif else ():
            records += mvif_records(scene, task, image, cfg.languages, seeded_rng(cfg, scene.scene_id, task))
        if scene.scene_id in by_scene:
            rng = seeded_rng(cfg, scene.scene_id, "short_answer")
            records += short_answer_records(scene, by_scene[scene.scene_id], image, cfg.languages, rng,
                                            **short_answer_packing(cfg))
    return records


def _answer_stats(bench: dict[str, list[dict]]) -> dict:
    stats: dict[str, dict] = {}
    for lang, rows in bench.items():
        stats[lang] = {}
        for category in CATEGORIES:
            answers = Counter(r["answer"] for r in rows if r["category"] == category)
            total = sum(answers.values())
            stats[lang][category] = {
                "n": total,
                "answers": dict(sorted(answers.items())),
                "majority_baseline": round(max(answers.values()) / total, 4) if total else None,
            }
    return stats


def build_world(out_dir: Path, cfg: WorldConfig | None = None) -> dict:
    """Write the world under out_dir and return the summary (also written to world.json)."""
    cfg = cfg or WorldConfig()
    out_dir = Path(out_dir)
    (out_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    train, evals = generate_scenes(cfg)
    scenes = train + evals
    for scene in scenes:
        render(scene, cfg.image_size, cfg.grid_size).save(out_dir / _image(scene), format="PNG")

    _write_json(out_dir / "objects.json", vg_objects(scenes, cfg.image_size, cfg.grid_size, IMAGE_DIR))
    _write_json(out_dir / "relationships.json", vg_relationships(scenes, cfg.image_size, cfg.grid_size))
    _write_json(out_dir / "scene_graphs.json", scene_graphs(scenes, IMAGE_DIR))

    captions = [
        caption_record(s, lang, seeded_rng(cfg, s.scene_id, "caption", lang), _image(s), cfg.caption_style)
        for s in train
        for lang in cfg.languages
    ]
    _write_jsonl(out_dir / "captions.jsonl", captions)
    instruct = instruct_records(train, cfg)
    _write_jsonl(out_dir / "instruct.jsonl", instruct)
    bench = bench_records(evals, cfg)
    for lang, rows in bench.items():
        _write_jsonl(out_dir / "bench" / f"{lang}.jsonl", rows)
    # datagen sends only these to a teacher (selection.image_ids_file): no benchmark image leaks
    (out_dir / "train_image_ids.txt").write_text("".join(f"{s.scene_id}\n" for s in train), encoding="utf-8")
    # the held-out scenes once more, in each public benchmark format (what a recipe's eval lists)
    write_world_benchmarks(out_dir, out_dir / "benchmarks", cfg.languages)

    summary = {
        "config": cfg.model_dump(mode="json"),
        "counts": {
            "train_scenes": len(train),
            "eval_scenes": len(evals),
            "images": len(scenes),
            "objects": sum(len(s.objects) for s in scenes),
            "captions.jsonl": len(captions),
            "instruct.jsonl": len(instruct),
            "instruct_by_task": dict(sorted(Counter(r["task"] for r in instruct).items())),
            "instruct_turns": sum(len(r["conversations"]) // 2 for r in instruct),
            "bench": {lang: len(rows) for lang, rows in bench.items()},
        },
        "bench_answers": _answer_stats(bench),
    }
    _write_json_pretty(out_dir / "world.json", summary)
    return summary


def _write_json_pretty(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
